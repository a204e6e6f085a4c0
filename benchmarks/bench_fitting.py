"""Accuracy and speed of fitting Anny to exact keypoints of held-out synthetic people; prints one JSON object.

    python benchmarks/bench_fitting.py [--num 50] [--seed 1000] [--kinds body,hand] [--modes 2d,3d,warm]
                                       [--threads 1] [--joint] [--config JSON] [--out FILE]

People: ``fitting.synthetic.synthetic_targets`` (the body model's pose/shape sampler and the synthetic generator's
cameras: any yaw, pitch -10..25 deg, FOV 30-65 deg, 15% truncated; hands on all of SO(3)), seed 1000 by default,
which the fitter's priors never saw (they use the samplers' statistics at seed 0). Keypoints: COCO-17 for bodies,
MANO-21 for hands, projected with the true K; no noise.

Modes: "2d" fits the 2D keypoints alone (with the true K); "3d" adds the exact 3D keypoints in the camera frame;
"h36m3d" fits bodies to their exact H36M-17 3D joints (+ their 2D projections), as SMPLify-X fits Human3.6M's;
"warm" fits a second frame (every bone rotation, the root's included, composed with a random rotation of up to 3
degrees per axis, the person moved by up to 2 cm, the shape unchanged) starting from the first frame's fit.
Errors (mm, medians over people): PA-MPJPE on the 14 H36M evaluation joints (bodies) or the 21 MANO joints
(hands), PA-MPVPE, MPJPE after root alignment, camera-frame MPJPE; "mean_pose" is
the same metrics for the rest pose with the mean shape placed with the true orientation and translation. Seconds
per person: wall time of ``fit_to_keypoints`` over all people / people (each person is its own problem unless
--joint), after one warm-up fit.
"""
import argparse
import json
import os
import platform
import time

import numpy as np
import torch

from i2lmesh.bodymodels import create_body_model
from i2lmesh.fitting import FitConfig, fit_to_keypoints
from i2lmesh.fitting.synthetic import fit_errors, mean_pose_result, synthetic_targets


def medians(errors: dict) -> dict:
    return {k: round(float(np.median(v)), 1) for k, v in errors.items()}


def next_frame(body_model, target: dict, seed: int) -> dict:
    """The same people a moment later: rotations turned by up to 3 degrees per axis, translations by up to 2 cm."""
    import roma

    g = torch.Generator().manual_seed(seed)
    num = target["pose"].shape[0]
    pose = target["pose"].clone()
    step = (torch.rand(pose.shape, generator=g) * 2 - 1) * np.radians(3.0)
    pose = roma.rotvec_composition([pose, step])
    trans = target["trans"] + (torch.rand(num, 3, generator=g) * 2 - 1) * 0.02
    out = body_model(pose=pose.reshape(num, -1), shape=target["shape"], trans=trans)
    from i2lmesh.fitting import keypoint_regressor
    from i2lmesh.geometry.camera import project

    _, regressor = keypoint_regressor(body_model, "coco17" if body_model.kind == "body" else "mano21")
    kp3d = regressor @ out.vertices_m
    return {**target, "pose": pose, "trans": trans, "vertices_m": out.vertices_m, "joints_m": out.joints_m,
            "keypoints_3d": kp3d, "keypoints_2d": project(kp3d, target["K"])}


def run(body_model, target, keypoint_set, config, **kwargs):
    start = time.perf_counter()
    result = fit_to_keypoints(body_model, target["keypoints_2d"], None, target["K"], keypoint_set=keypoint_set,
                              config=config, **kwargs)
    seconds = time.perf_counter() - start
    return result, seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--kinds", default="body,hand")
    parser.add_argument("--modes", default="2d,3d,h36m3d,warm")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for this workload)")
    parser.add_argument("--joint", action="store_true", help="optimise each batch as one problem")
    parser.add_argument("--config", default="{}", help='FitConfig overrides as JSON, e.g. \'{"rigid_iters": 15}\'')
    parser.add_argument("--out", default=None, help="also write the JSON here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    overrides = json.loads(args.config)
    if "stages" in overrides:
        overrides["stages"] = tuple(tuple(s) for s in overrides["stages"])
    config = FitConfig(joint=args.joint, **overrides)
    report = {"num_people": args.num, "seed": args.seed, "threads": args.threads, "joint": args.joint,
              "cpu_count": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
              "config": {k: v for k, v in vars(config).items()}}
    for kind in args.kinds.split(","):
        model = create_body_model("anny", kind)
        keypoint_set = "coco17" if kind == "body" else "mano21"
        target = synthetic_targets(model, args.num, args.seed, keypoint_set)
        fit_to_keypoints(model, target["keypoints_2d"][:1], None, target["K"][:1], keypoint_set=keypoint_set)
        entry = {"keypoints": keypoint_set, "mean_pose": medians(fit_errors(mean_pose_result(model, target), target,
                                                                            model))}
        first = None
        for mode in args.modes.split(","):
            if mode == "h36m3d" and kind != "body":
                continue
            if mode == "2d":
                result, seconds = run(model, target, keypoint_set, config)
                first = result
            elif mode == "3d":
                result, seconds = run(model, target, keypoint_set, config, keypoints_3d=target["keypoints_3d"])
            elif mode == "h36m3d":
                h36m = synthetic_targets(model, args.num, args.seed, "h36m17")
                result, seconds = run(model, h36m, "h36m17", config, keypoints_3d=h36m["keypoints_3d"])
            elif mode == "warm":
                if first is None:
                    first, _ = run(model, target, keypoint_set, config)
                frame = next_frame(model, target, args.seed + 1)
                result, seconds = run(model, frame, keypoint_set, config, init=first.params)
            else:
                raise SystemExit(f"unknown mode {mode!r}")
            scored = frame if mode == "warm" else (h36m if mode == "h36m3d" else target)
            errors = fit_errors(result, scored, model)
            entry[mode] = {**medians(errors),
                           "reprojection_px_median": round(float(result.residual_px.nanmedian()), 2),
                           "evaluations_median": int(result.evaluations.float().median()),
                           "seconds_per_person": round(seconds / args.num, 3),
                           "pa_mpjpe_p90": round(float(np.percentile(errors["pa_mpjpe"], 90)), 1)}
        report[kind] = entry
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
