"""``i2lmesh train``: train a preset or a YAML config on dataset folders; DDP under ``torchrun``.

    i2lmesh train --preset cpu-small --data synth/ --val synth-val/ --out runs/a --max-steps 2000
    i2lmesh train --config runs/a/train_config.yaml --out runs/a-param --stage param \
        --init-from runs/a/checkpoints/last.pt
    torchrun --nproc_per_node=4 -m i2lmesh.cli train --config body.yaml --data h36m/ coco/ --out runs/b
"""
from __future__ import annotations

import argparse
import json
import logging

HELP = "Train I2L-MeshNet on dataset folders (one process, or many under torchrun)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--preset", help="network preset (paper-body, paper-hand, cpu-small, cpu-small-hand)")
    src.add_argument("--config", help="training config YAML (fields of TrainConfig)")
    parser.add_argument("--data", nargs="+", help="training dataset folders (our format; see docs/datasets.md)")
    parser.add_argument("--val", help="validation dataset folder, evaluated after every epoch")
    parser.add_argument("--out", help="run folder (checkpoints/, metrics.jsonl, tensorboard/)")
    steps = parser.add_mutually_exclusive_group()
    steps.add_argument("--epochs", type=int)
    steps.add_argument("--max-steps", type=int)
    parser.add_argument("--device", help="auto (a GPU when there is one), cpu, cuda, cuda:N (default: the config's)")
    parser.add_argument("--body-model-path", help="folder with SMPL/MANO files (when the preset or data use them)")
    parser.add_argument("--resume", action="store_true", help="continue exactly from OUT/checkpoints/last.pt")
    parser.add_argument("--stage", choices=("lixel", "param"),
                        help="lixel: the whole network (default); param: freeze it, train the parameter regressor")
    parser.add_argument("--init-from", help="network file or checkpoint to start from (e.g. the lixel run's last.pt)")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="override config fields, e.g. batch_size=8 lr=3e-4 model.backbone_depth=34")


def _parse_overrides(pairs: list[str]) -> tuple[dict, dict]:
    import yaml

    top, model = {}, {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--set expects FIELD=VALUE, got {pair!r}")
        key, value = pair.split("=", 1)
        parsed = yaml.safe_load(value)
        if isinstance(parsed, str):  # YAML 1.1 reads "3e-4" as a string
            try:
                parsed = float(parsed)
            except ValueError:
                pass
        (model if key.startswith("model.") else top)[key.removeprefix("model.")] = parsed
    return top, model


def run(args: argparse.Namespace) -> int:
    from ..engine.datasets import open_datasets
    from ..engine.distributed import init_distributed, shutdown
    from ..engine.train import TrainConfig, train
    from ..nets.factory import body_model_for, build_network

    top, model = _parse_overrides(args.set)
    fields = {"data": args.data, "val": args.val, "out": args.out, "epochs": args.epochs, "max_steps": args.max_steps,
              "stage": args.stage, "init_from": args.init_from, "device": args.device, **top}
    if args.preset:
        fields["preset"] = args.preset
    cfg = (TrainConfig.from_yaml(args.config, **fields) if args.config
           else TrainConfig(**{k: v for k, v in fields.items() if v is not None}))
    if model:
        cfg.model = {**cfg.model, **model}
    if cfg.stage == "param" and not cfg.init_from and not args.resume:
        raise ValueError("stage param trains the parameter regressor on a trained lixel network: give "
                         "--init-from LIXEL_RUN/checkpoints/last.pt (or --resume a param-stage run)")
    env = init_distributed(cfg.device)
    model_cfg = cfg.model_config()
    body = body_model_for(model_cfg, args.body_model_path)
    net = build_network(model_cfg, body)
    kwargs = dict(body_model=body, model_path=args.body_model_path)
    train_set = open_datasets(cfg.data, net, train=cfg.augment, seed=cfg.seed, **kwargs)
    val_set = open_datasets([cfg.val], net, train=False, **kwargs) if cfg.val else None
    logging.getLogger(__name__).info("train: %d training samples%s, %d process(es) on %s", len(train_set),
                                     f", {len(val_set)} validation" if val_set else "", env.world_size, env.device)
    last = train(cfg, train_set, val_set, net=net, resume=args.resume, env=env, body_model=body)
    if env.is_main:
        print(json.dumps({"last_checkpoint": str(last)}))
    shutdown(env)
    return 0
