"""``i2lmesh reproduce``: the paper's ablation tables, each variant trained with the same budget and data.

    i2lmesh reproduce table1 --budget-minutes 3 --out repro/              # synthesises data if none is given
    i2lmesh reproduce all --data synth-train/ --val synth-val/ --budget-steps 80 --out repro/
    i2lmesh reproduce table2 --preset paper-body --data h36m/ --val h36m-test/ --wall-clock --budget-minutes 600

Writes OUT/TABLE.md (ours beside the paper's numbers), OUT/TABLE.png and OUT/runs/KEY/result.json per variant;
rerunning skips finished variants. See docs/reproduction.md.
"""
from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

HELP = "Re-run the paper's ablation tables (table1, table2, table3, marginalisation or all) at a set budget."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..config import TRAINING_PRESETS

    parser.add_argument("tables", nargs="+", metavar="TABLE", help="table1, table2, table3, marginalisation, all")
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument("--budget-minutes", type=float,
                        help="training budget per variant: CPU time of the training process / its threads "
                             "(minutes of an idle machine), or wall time with --wall-clock")
    budget.add_argument("--budget-steps", type=int,
                        help="training budget per variant in optimizer steps (equal data for all; the paper's way)")
    parser.add_argument("--wall-clock", action="store_true", help="budget in wall-clock minutes (GPUs)")
    parser.add_argument("--out", type=Path, default=Path("i2lmesh-reproduce"))
    parser.add_argument("--data", nargs="+", help="training dataset folders (default: synthesise into OUT/data)")
    parser.add_argument("--val", help="held-out dataset folder (default: synthesise into OUT/data)")
    parser.add_argument("--num-train", type=int, default=4000, help="synthetic training images when synthesising")
    parser.add_argument("--num-val", type=int, default=200, help="synthetic held-out images when synthesising")
    parser.add_argument("--preset", default="cpu-small", help="network preset (paper-body for the paper's scale)")
    parser.add_argument("--lr", type=float, help=f"learning rate (default: the training preset budget's, "
                        f"{TRAINING_PRESETS['budget']['lr']:g})")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--imagenet-weights", default="none", help="none, torchvision, or a state-dict file")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--keep-checkpoints", action="store_true", help="keep each variant's checkpoints")


def run(args: argparse.Namespace) -> int:
    from ..device import resolve_device
    from ..reproduce import TABLES, run_table, table_names

    resolve_device(args.device)  # a device this machine lacks stops the run before any synthesis or training
    names = table_names(args.tables)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if (args.data is None) != (args.val is None):
        raise ValueError("give both --data and --val, or neither (then both are synthesised)")
    data, val = args.data, args.val
    if data is None:
        from ..data.synth.generate import SynthConfig, generate

        kind = "hand" if "hand" in args.preset else "body"
        folders = {"train": (out / "data" / "train", args.num_train, 2 * args.seed + 1),
                   "val": (out / "data" / "val", args.num_val, 2 * args.seed + 2)}
        for folder, num, seed in folders.values():
            if not (folder / "annotations.json").is_file():
                generate(SynthConfig(kind=kind, num=num, seed=seed, size=256), folder, workers=args.workers)
        data, val = [str(folders["train"][0])], str(folders["val"][0])
    summary = {}
    for name in names:
        results = run_table(TABLES[name], out, data=data, val=val, budget_minutes=args.budget_minutes,
                            preset=args.preset, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
                            workers=args.workers, device=args.device, wall_clock=args.wall_clock,
                            imagenet_weights=args.imagenet_weights, keep_checkpoints=args.keep_checkpoints,
                            max_steps=args.budget_steps)
        summary[name] = [{k: r.get(k) for k in ("label", "mpjpe_mm", "pa_mpjpe_mm", "mpvpe_mm", "steps")}
                         for r in results]
        logging.getLogger(__name__).info("reproduce: wrote %s and %s", out / f"{name}.md", out / f"{name}.png")
    print(json.dumps(summary, indent=1))
    return 0
