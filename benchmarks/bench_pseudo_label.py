"""Pseudo-label accuracy, rejection precision and throughput on synthetic Anny bodies with exact ground truth.

    python benchmarks/bench_pseudo_label.py [--num 64] [--seed 1000] [--batch-size 32]
                                            [--configs joint,fast,independent] [--noise 0.05] [--out FILE]

People: ``fitting.synthetic.synthetic_targets`` (the project's pose/shape sampler and the synthetic generator's
cameras, 512 px images, 15% truncated), seed 1000 (unseen by the fitter's priors). Records are what our loaders
give: "2d" = MSCOCO-like (COCO-18: the 17 COCO keypoints from Anny's own regressor + the Pelvis, 2D only, box from
the projected mesh) judged by the 2D rule (3 heatmap bins); "3d" = Human3.6M-like (H36M-17 2D + camera 3D) judged
by the 3D rule (25 mm). Each goes through ``pseudo_label.label_records`` exactly as ``i2lmesh pseudo-label`` runs
it. Errors (mm, medians and 90th percentiles over people) of the fitted mesh against the true one: MPVPE after
aligning the pelvis (H36M root), PA-MPVPE after Procrustes. fits/s: people / wall time of ``label_records``
(fitting + rules), one torch thread, batch ``--batch-size``.

Rejection: the same people with noisy keypoints, a noise level per person drawn uniformly in [0, 2 ``--noise``]
(2D: Gaussian, sigma = level x the box size; 3D: sigma = level x 1 m on the 3D joints, the 2D ones projected from
them) so that some fits fail; precision = share of
rejected fits whose PA-MPVPE is above the median of all fits, and the mean PA-MPVPE of rejected vs kept fits.
"""
import argparse
import json
import os
import platform
import time

import numpy as np
import torch

from i2lmesh.bodymodels import create_body_model
from i2lmesh.data.record import COCO_18, SampleRecord
from i2lmesh.fitting.synthetic import synthetic_targets
from i2lmesh.geometry.camera import project
from i2lmesh.metrics import pa_errors, point_errors_mm
from i2lmesh.pseudo_label import LabelOptions, ModelBank, label_records

CONFIGS = {"joint": dict(joint=True), "fast": dict(joint=True, stages=((10.0, 10.0, 10, 10.0), (1.0, 1.0, 5, 1.0))),
           "independent": dict(joint=False)}
SIZE = 512


def make_records(body, num, seed, mode, noise=0.0):
    """Records as the loaders give them (see the module docstring), and the ground truth."""
    from i2lmesh.bodymodels.joint_sets import H36M_17

    name = "coco17" if mode == "2d" else "h36m17"
    t = synthetic_targets(body, num, seed, name, image_size=SIZE)
    rng = np.random.default_rng(seed + 7)
    records = []
    for i in range(num):
        K = t["K"][i].numpy().astype(np.float64)
        verts_px = project(t["vertices_m"][i].numpy().astype(np.float64), K)
        lo, hi = np.clip(verts_px.min(0), 0, SIZE - 1), np.clip(verts_px.max(0), 0, SIZE - 1)
        box = np.r_[lo, np.maximum(hi - lo, 1.0)]
        cam = t["keypoints_3d"][i].numpy().astype(np.float64)
        uv = t["keypoints_2d"][i].numpy().astype(np.float64)
        level = rng.uniform(0.0, 2.0 * noise)  # per person: some fits get far worse keypoints than others
        if mode == "2d":
            uv = uv + rng.normal(scale=level * box[2:].max(), size=uv.shape)
            joints = np.concatenate([uv, uv[11:13].mean(0, keepdims=True)])
            records.append(SampleRecord(image_path=f"{i}.jpg", image_size=(SIZE, SIZE), bbox_xywh=box, K=K,
                                        joint_set=COCO_18, joints_img_px=joints, joints_valid=np.ones(18),
                                        has_3d=False, sample_id=str(i)))
        else:
            cam = cam + rng.normal(scale=level, size=cam.shape)
            records.append(SampleRecord(image_path=f"{i}.jpg", image_size=(SIZE, SIZE), bbox_xywh=box, K=K,
                                        joint_set=H36M_17, joints_img_px=project(cam, K), joints_cam_m=cam,
                                        joints_valid=np.ones(17), has_3d=True, sample_id=str(i)))
    return records, t


def errors(body, records, target):
    params = {k: torch.as_tensor(np.stack([np.asarray(r.body_params[k], np.float32) for r in records]))
              for k in ("pose", "shape", "trans")}
    with torch.no_grad():
        pred = body(**params).vertices_m
    gt = target["vertices_m"][[int(r.sample_id) for r in records]]
    pelvis_p = body.regress_joints(pred, "h36m17")[:, :1]
    pelvis_g = body.regress_joints(gt, "h36m17")[:, :1]
    mpvpe = point_errors_mm(pred - pelvis_p, gt - pelvis_g).mean(1)
    pa = pa_errors(pred, gt).mean(1)
    return mpvpe, pa


def stats(values):
    return {"median": round(float(np.median(values)), 1), "p90": round(float(np.percentile(values, 90)), 1)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--modes", default="2d,3d")
    parser.add_argument("--configs", default="joint,fast,independent")
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)
    body = create_body_model("anny", "body")
    bank = ModelBank({("body", ""): body})
    report = {"num_people": args.num, "seed": args.seed, "batch_size": args.batch_size, "threads": 1,
              "cpu_count": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__}
    warm, _ = make_records(body, 2, 1, "3d")
    label_records(warm, LabelOptions(), bank)  # builds the keypoint models once
    label_records(make_records(body, 2, 1, "2d")[0], LabelOptions(), bank)
    for mode in args.modes.split(","):
        records, target = make_records(body, args.num, args.seed, mode)
        entry = {}
        for name in args.configs.split(","):
            options = LabelOptions(batch_size=args.batch_size, **CONFIGS[name])
            start = time.perf_counter()
            out = label_records(records, options, bank)
            seconds = time.perf_counter() - start
            mpvpe, pa = errors(body, out, target)
            valid = np.array([r.fit_valid for r in out])
            entry[name] = {"mpvpe_mm": stats(mpvpe), "pa_mpvpe_mm": stats(pa),
                           "fits_per_s": round(len(out) / seconds, 2),
                           "rejected": int((~valid).sum()),
                           "pa_mpvpe_valid_median": round(float(np.median(pa[valid])), 1) if valid.any() else None,
                           "hours_per_10k_on_2_processes": round(10000 / (2 * len(out) / seconds) / 3600, 2)}
        noisy, _ = make_records(body, args.num, args.seed, mode, args.noise)
        out = label_records(noisy, LabelOptions(batch_size=args.batch_size), bank)
        mpvpe, pa = errors(body, out, target)
        rejected = np.array([not r.fit_valid for r in out])
        key = "fit_error_mm" if mode == "3d" else "fit_error_hm"
        rule = {"noise_up_to": 2 * args.noise, "rejected": int(rejected.sum()), "of": len(out),
                "fit_error_median": round(float(np.median([r.extra[key] for r in out])), 2)}
        if rejected.any():
            rule["precision_above_median"] = round(float((pa[rejected] > np.median(pa)).mean()), 3)
            rule["pa_mpvpe_rejected_mean"] = round(float(pa[rejected].mean()), 1)
        if (~rejected).any():
            rule["pa_mpvpe_kept_mean"] = round(float(pa[~rejected].mean()), 1)
        entry["rejection_noisy"] = rule
        report[mode] = entry
        print(json.dumps({mode: entry}), flush=True)
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
