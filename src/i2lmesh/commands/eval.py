"""``i2lmesh eval``: score a checkpoint on a dataset folder; writes results.json (and FreiHAND's pred.json)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "Evaluate a checkpoint: MPJPE, PA-MPJPE, MPVPE, PA-MPVPE (F@5/F@15 for hands)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path)
    parser.add_argument("--data", required=True, type=Path, help="dataset folder (our format)")
    parser.add_argument("--out", type=Path, default=Path("results.json"))
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--body-model-path", help="folder with SMPL/MANO files (when the data use them)")
    parser.add_argument("--freihand-pred", type=Path, help="also write FreiHAND's pred.json here")


def _check_arguments(args: argparse.Namespace) -> None:
    """Refuse, before any work, outputs that name a folder and a batch size below 1 (one line, exit code 2)."""
    for flag, path, name in (("--out", args.out, "results.json"), ("--freihand-pred", args.freihand_pred, "pred.json")):
        if path is not None and path.is_dir():
            raise ValueError(f"{flag} {path}: is a folder; give a file name, e.g. {path / name}")
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1; got {args.batch_size}")


def run(args: argparse.Namespace) -> int:
    from ..engine.datasets import check_network, open_datasets
    from ..engine.distributed import init_distributed, shutdown
    from ..engine.evaluate import evaluate, write_freihand_pred
    from ..nets.factory import body_model_for, load_network

    _check_arguments(args)
    env = init_distributed(args.device)
    net, config = load_network(args.checkpoint, device=env.device)
    check_network(net, str(args.checkpoint))
    body = body_model_for(config, args.body_model_path)
    dataset = open_datasets([args.data], net, train=False, body_model=body, model_path=args.body_model_path)
    result = evaluate(net, dataset, batch_size=args.batch_size, device=env.device, env=env,
                      keep_predictions=args.freihand_pred is not None, body_model=body)
    if env.is_main:
        predictions = result.pop("predictions", None)
        if args.freihand_pred is not None and predictions is not None:
            write_freihand_pred(args.freihand_pred, predictions["joints_m"], predictions["vertices_m"])
        result.update({"checkpoint": str(args.checkpoint), "data": str(args.data)})
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
        print(json.dumps({k: v for k, v in result.items() if k != "per_joint_mpjpe_mm"}, indent=1))
    shutdown(env)
    return 0
