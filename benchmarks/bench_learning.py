"""Learning curves on the standard synthetic distribution against the mean-pose baseline; prints JSON.

Trains one configuration for a budget in optimizer steps (so that a busy machine does not decide the result),
scoring the held-out set every ``--eval-every`` steps, and reports each point as a multiple of the mean-pose
baseline (always answering the training set's mean pose and mesh; per point in camera space, so for bodies facing
every way a thin, yaw-averaged one) and, for PA-MPJPE / PA-MPVPE, as a multiple of one body in the training poses'
Procrustes mean (``*_x_procrustes_mean``: below 1 only when the limbs' pose is read from the image). Data:
``i2lmesh synth`` defaults (256 px, occluders, procedural backgrounds), generated once into ``--data`` if missing.

    # today's quickstart setting (the reference's initialisation and a constant lr 3e-4), then the fast start
    python benchmarks/bench_learning.py --steps 300 --set lr=3e-4 --out runs/learn-ref > ref.json
    python benchmarks/bench_learning.py --steps 300 --fast --out runs/learn-fast > fast.json
    # hands
    python benchmarks/bench_learning.py --kind hand --steps 300 --fast --out runs/learn-hand > hand.json

``--fast`` is the CPU quickstart's setting (``i2lmesh.commands.quickstart.FAST_TRAINING``); ``--set`` overrides
any training config field (``model.FIELD=VALUE`` for the network). One torch thread and no loader workers by
default, so that two runs can share two cores without disturbing each other's step counts.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import yaml


def parse_sets(items: list[str]) -> dict:
    """``FIELD=VALUE`` strings (YAML values) -> TrainConfig overrides, ``model.FIELD`` into ``model``."""
    out: dict = {"model": {}}
    for item in items:
        key, _, value = item.partition("=")
        parsed = yaml.safe_load(value)
        if key.startswith("model."):
            out["model"][key[len("model."):]] = parsed
        else:
            out[key] = parsed
    return out


def ensure_data(folder: Path, kind: str, num: int, seed: int, workers: int) -> Path:
    """A synthetic dataset with ``i2lmesh synth``'s defaults (made once, reused)."""
    from i2lmesh.data.synth.generate import SynthConfig, generate

    if not (folder / "annotations.json").is_file():
        generate(SynthConfig(kind=kind, num=num, seed=seed), folder, workers=workers, progress=False)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kind", choices=("body", "hand"), default="body")
    parser.add_argument("--data", type=Path, default=Path("synth-learning"), help="folder for the datasets")
    parser.add_argument("--num-train", type=int, default=2000)
    parser.add_argument("--num-val", type=int, default=200)
    parser.add_argument("--steps", type=int, default=300, help="training budget in optimizer steps (batch 16)")
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--fast", action="store_true", help="the CPU quickstart's fast-start setting")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers (0: in the training process)")
    parser.add_argument("--out", type=Path, default=Path("runs/learning"))
    args = parser.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from i2lmesh.commands.quickstart import FAST_TRAINING, preset_for
    from i2lmesh.engine.datasets import open_datasets, training_inputs
    from i2lmesh.engine.evaluate import sides_and_width
    from i2lmesh.engine.prior import mean_pose_baseline
    from i2lmesh.engine.train import TrainConfig, train
    from i2lmesh.engine.checkpoint import seed_everything

    data_train = ensure_data(args.data / f"{args.kind}-train", args.kind, args.num_train, 1, max(args.workers, 1))
    data_val = ensure_data(args.data / f"{args.kind}-val", args.kind, args.num_val, 2, max(args.workers, 1))
    fields = {"preset": preset_for(args.kind), "epochs": 1000, "lr_decay_epochs": [1000], "batch_size": 16,
              "lr": 3e-4, "num_workers": args.workers, "seed": args.seed, "device": "cpu", "log_every_steps": 10,
              "val_every_steps": args.eval_every, "max_steps": args.steps, "keep_epoch_checkpoints": False}
    sets = parse_sets(args.set)
    if args.fast:
        fields.update({k: v for k, v in FAST_TRAINING.items() if k != "model"})
    model = {**(FAST_TRAINING["model"] if args.fast else {}), **sets.pop("model")}
    fields.update(sets)
    cfg = TrainConfig.from_dict({**fields, "model": model, "data": [str(data_train)], "val": str(data_val),
                                 "out": str(args.out)})
    if (args.out / "metrics.jsonl").exists():
        sys.exit(f"{args.out} holds a previous run; choose another --out")
    seed_everything(cfg.seed)
    # The quickstart's path: augmentation as cfg.augment says (before 2026-12-01 this script augmented always, so
    # its "augment=false" runs were augmented).
    inputs = training_inputs(cfg)
    body, net, train_set, val_set = inputs.body_model, inputs.net, inputs.train_set, inputs.val_set
    started = time.perf_counter()
    train(cfg, train_set, val_set, net=net)
    seconds = time.perf_counter() - started
    # Always the unaugmented training set's mean: the stronger reference, the same for every setting.
    plain = open_datasets(cfg.data, net, train=False, body_model=body) if cfg.augment else train_set
    baseline = mean_pose_baseline(plain, val_set, net.joint_regressor.double().numpy(),
                                  net.topology.get("root_index", 0))
    records = [json.loads(line) for line in (args.out / "metrics.jsonl").read_text().splitlines()]
    curve = []
    for r in records:
        if "val_mpjpe_mm" not in r:
            continue
        point = {"step": r["step"], **{k[4:]: round(v, 1) for k, v in r.items() if k.endswith("_mm")}}
        point.update({f"{k}_x_baseline": round(point[k] / baseline[k], 3) for k in baseline if k in point})
        # the limbs' pose: against one body in the training poses' Procrustes mean (engine.prior.mean_pose_baseline)
        point.update({f"{k}_x_procrustes_mean": round(point[k] / baseline[f"procrustes_mean_{k}"], 3)
                      for k in ("pa_mpjpe_mm", "pa_mpvpe_mm") if k in point and f"procrustes_mean_{k}" in baseline})
        curve.append(point)
    train_s = [r["images_per_s"] for r in records if "images_per_s" in r]
    report = {"kind": args.kind, "steps": args.steps, "seed": args.seed, "fast": args.fast, "set": args.set,
              "threads": args.threads, "workers": args.workers, "torch": torch.__version__,
              "config": {k: v for k, v in cfg.__dict__.items() if k not in ("data", "val", "out")},
              "mean_pose_baseline": {k: round(v, 1) for k, v in baseline.items()}, "curve": curve,
              "sides_at_end": {k: round(v, 3) if isinstance(v, float) else v for k, v in
                               (sides_and_width(net, val_set, list(body.joint_set.names)) or {}).items()},
              "wall_s": round(seconds, 1), "median_images_per_s": sorted(train_s)[len(train_s) // 2] if train_s
              else None, "load_avg_end": os.getloadavg()[0]}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
