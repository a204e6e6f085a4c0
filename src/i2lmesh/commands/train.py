"""``i2lmesh train``: train a preset or a YAML config on dataset folders; DDP under ``torchrun``.

    i2lmesh train --preset cpu-small --data synth/ --val synth-val/ --out runs/a --max-steps 2000
    i2lmesh train --preset cpu-small --training-preset cpu-fast --data synth/ --out runs/f --max-steps 300
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
    from ..config import TRAINING_PRESETS

    src = parser.add_mutually_exclusive_group()
    src.add_argument("--preset", help="network preset (paper-body, paper-hand, cpu-small, cpu-small-hand)")
    src.add_argument("--config", help="training config YAML (fields of TrainConfig)")
    parser.add_argument("--training-preset", choices=list(TRAINING_PRESETS),
                        help="named training settings to start from instead of a --config file (paper: the "
                             "reference's schedule, the default; budget: constant lr for a step/time budget; "
                             "cpu-fast: budget + the CPU fast start; cpu-fast-body: that at 64 px, 32 images a "
                             "step, no augmentation); the flags and --set go on top")
    parser.add_argument("--data", nargs="+", help="training dataset folders (our format; see docs/datasets.md); required unless "
                        "--config names them")
    parser.add_argument("--val", help="validation dataset folder, evaluated after every epoch")
    parser.add_argument("--out", help="run folder (checkpoints/, metrics.jsonl, tensorboard/)")
    steps = parser.add_mutually_exclusive_group()
    steps.add_argument("--epochs", type=int, help="train this many epochs (default: the config's; the paper: 13)")
    steps.add_argument("--max-steps", type=int, help="stop after this many optimizer steps instead of epochs (the "
                       "cosine lr schedule spans them)")
    parser.add_argument("--device", help="auto (a GPU when there is one), cpu, cuda, cuda:N (default: the config's)")
    parser.add_argument("--body-model-path", help="folder with SMPL/MANO files (when the preset or data use them)")
    parser.add_argument("--resume", action="store_true", help="continue exactly from OUT/checkpoints/last.pt")
    parser.add_argument("--stage", choices=("lixel", "param"),
                        help="lixel: the whole network (default); param: freeze it, train the parameter regressor")
    parser.add_argument("--init-from", help="network file or checkpoint to start from (e.g. the lixel run's last.pt)")
    parser.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                        help="override config fields, e.g. batch_size=8 lr=3e-4 model.backbone_depth=34")


def _parse_overrides(pairs: list[str]) -> tuple[dict, dict]:
    """``--set FIELD=VALUE ...`` -> (training fields, network fields), checked against the config schema
    (``config.TRAIN_FIELDS`` / ``MODEL_FIELDS``; ConfigError names the field). Values are YAML (``null`` clears an
    optional field); string fields keep the text as given."""
    import yaml

    from ..config import MODEL_FIELDS, TRAIN_FIELDS, ConfigError, check_fields

    top, model = {}, {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects FIELD=VALUE, got {pair!r}")
        name = key.removeprefix("model.")
        rule = (MODEL_FIELDS if key.startswith("model.") else TRAIN_FIELDS).get(name)
        try:
            parsed = yaml.safe_load(text)
        except yaml.YAMLError:
            parsed = text
        textual = rule is not None and rule.type in ("str", "str-list")
        if textual and parsed is not None and not isinstance(parsed, list):
            parsed = text  # a folder named 2024 or "yes" stays a string
        (model if key.startswith("model.") else top)[name] = parsed
    return (check_fields(top, TRAIN_FIELDS, "--set", partial=True),
            check_fields(model, MODEL_FIELDS, "--set", partial=True, prefix="model."))


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from ..cli import UserError
    from ..config import TRAIN_FIELDS, ConfigError, check_fields, training_preset
    from ..engine.checkpoint import seed_everything
    from ..engine.datasets import training_inputs
    from ..engine.distributed import init_distributed, shutdown
    from ..engine.train import RunFolderInUse, TrainConfig, TrainingInterrupted, train

    top, model = _parse_overrides(args.set)
    flags = {"preset": args.preset, "data": args.data, "val": args.val, "out": args.out, "epochs": args.epochs,
             "max_steps": args.max_steps, "stage": args.stage, "init_from": args.init_from, "device": args.device}
    flags = check_fields({k: v for k, v in flags.items() if v is not None}, TRAIN_FIELDS, "command line", partial=True)
    if args.config and args.training_preset:
        raise ConfigError("--config and --training-preset both give the training settings: use one (a config file "
                          "holds every field it sets)")
    base = (TrainConfig.from_yaml(args.config) if args.config else
            TrainConfig.from_dict(training_preset(args.training_preset), f"training preset {args.training_preset}")
            if args.training_preset else TrainConfig())
    values = {**dataclasses.asdict(base), **flags, **top}
    values["model"] = {**values["model"], **model}
    cfg = TrainConfig.from_dict(values, f"{args.config} with the command line" if args.config else "command line")
    if cfg.stage == "param" and not cfg.init_from and not args.resume:
        raise ValueError("stage param trains the parameter regressor on a trained lixel network: give "
                         "--init-from LIXEL_RUN/checkpoints/last.pt (or --resume a param-stage run)")
    env = init_distributed(cfg.device)
    seed_everything(cfg.seed)  # before anything random: the seed fixes the initial weights too
    inputs = training_inputs(cfg, args.body_model_path)
    train_set, val_set = inputs.train_set, inputs.val_set
    logging.getLogger(__name__).info("train: %d training samples%s, %d process(es) on %s", len(train_set),
                                     f", {len(val_set)} validation" if val_set else "", env.world_size, env.device)
    try:
        last = train(cfg, train_set, val_set, net=inputs.net, resume=args.resume, env=env, body_model=inputs.body_model)
    except TrainingInterrupted as exc:  # SIGTERM/SIGINT: last.pt saved and the message logged; 143 / 130
        shutdown(env)
        return exc.exit_code
    except RunFolderInUse as exc:
        raise UserError(str(exc)) from None
    if env.is_main:
        print(json.dumps({"last_checkpoint": str(last)}))
    shutdown(env)
    return 0
