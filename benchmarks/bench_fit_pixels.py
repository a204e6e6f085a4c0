"""From pixels to a fitted mesh: the built-in keypoint detector + Anny fitting (``Predictor.for_fitting``, what
``i2lmesh demo --method fit`` runs) on synthetic renders with exact ground truth; prints one JSON object.

    python benchmarks/bench_fit_pixels.py [--num 24] [--seed 16016] [--kinds body,hand] [--size 256] [--out FILE]

Renders: ``i2lmesh synth``'s generator (random poses and cameras, textured procedural backgrounds, occluders on a
quarter of the bodies / a fifth of the hands), held-out seed. Each image goes through the Predictor with its true K;
the person whose box overlaps the true silhouette box most is matched (recall: IoU >= 0.5). Errors (mm, medians
over matched people): PA-MPJPE on the 14 H36M evaluation joints regressed from both meshes (bodies) or the 21
MANO joints (hands), PA-MPVPE, and the fit's median keypoint residual (px). Seconds per image: detector + fit,
one torch thread, after one warm-up image.
"""
import argparse
import json
import os
import platform
import time

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=24)
    parser.add_argument("--seed", type=int, default=16016)
    parser.add_argument("--kinds", default="body,hand")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)

    from i2lmesh.data.synth.generate import CHUNK_SIZE, SynthConfig, SynthRenderer
    from i2lmesh.fitting.synthetic import H36M_EVAL_INDICES
    from i2lmesh.inference.detect import box_iou
    from i2lmesh.inference.predictor import Predictor
    from i2lmesh.metrics import pa_errors

    report = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__},
              "num": args.num, "seed": args.seed, "size": args.size}
    for kind in args.kinds.split(","):
        renderer = SynthRenderer(SynthConfig(kind=kind, num=args.num, seed=args.seed, size=args.size))
        samples = [s for c in range(-(-args.num // CHUNK_SIZE)) for s in renderer.render_chunk(c)]
        model = renderer.model
        predictor = Predictor.for_fitting(kind, body_model=model)
        predictor.predict(samples[0].image, intrinsics=samples[0].record.K)  # warm-up (detector graphs, caches)
        matched, pa_j, pa_v, residual, seconds = 0, [], [], [], []
        for sample in samples:
            start = time.perf_counter()
            people = predictor.predict(sample.image, intrinsics=sample.record.K)
            seconds.append(time.perf_counter() - start)
            if not people:
                continue
            ious = box_iou(np.stack([p.box_xywh for p in people]), sample.record.bbox_xywh[None])[:, 0]
            best = int(np.argmax(ious))
            if ious[best] < 0.5:
                continue
            matched += 1
            person = people[best]
            pred_v = torch.as_tensor(person.vertices_m, dtype=torch.float32)[None]
            gt_v = torch.as_tensor(sample.vertices_cam_m, dtype=torch.float32)[None]
            if kind == "body":
                idx = list(H36M_EVAL_INDICES)
                pj, gj = model.regress_joints(pred_v, "h36m17")[:, idx], model.regress_joints(gt_v, "h36m17")[:, idx]
            else:
                pj, gj = model.regress_joints(pred_v), model.regress_joints(gt_v)
            pa_j.append(float(pa_errors(pj, gj).mean()))
            pa_v.append(float(pa_errors(pred_v, gt_v).mean()))
            residual.append(person.fit["median_residual_px"])
        report[kind] = {
            "recall_iou50": round(matched / len(samples), 3), "matched": matched,
            "pa_mpjpe_mm": round(float(np.median(pa_j)), 1) if pa_j else None,
            "pa_mpjpe_p90_mm": round(float(np.percentile(pa_j, 90)), 1) if pa_j else None,
            "pa_mpvpe_mm": round(float(np.median(pa_v)), 1) if pa_v else None,
            "residual_px_median": round(float(np.median(residual)), 2) if residual else None,
            "seconds_per_image_median": round(float(np.median(seconds)), 3),
        }
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as fh:
            fh.write(text + "\n")


if __name__ == "__main__":
    main()
