"""Training: the config (:class:`TrainConfig`) and :func:`train`, the one call that runs a stage.

``train(cfg, train_set, ...)`` builds the stage's :class:`~i2lmesh.engine.trainer.Trainer` (the lixel stage) or
:class:`~i2lmesh.engine.param_stage.ParamStageTrainer` (``stage: param``), registers
:func:`~i2lmesh.engine.hooks.default_hooks` and runs it. The loop, exact resume, DDP and faults are described in
``engine/trainer.py``; the hooks (progress bar, metrics log, checkpoints, validation, time budget and signals) in
``engine/hooks.py``; the files in ``engine/checkpoint.py``.

Two stages, as the reference (docs/training.md, "Two stages"): ``stage: lixel`` trains the whole network with the
lixel losses; ``stage: param`` starts from a lixel-stage network (``init_from``), freezes it and trains only the
parameter regressor with the body-model losses of ``param_stage``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import yaml
from torch.utils.data import Dataset

from ..bodymodels.base import BodyModel
from ..config import ModelConfig, get_preset
from ..nets.i2l import I2LMeshNet
from .distributed import DistEnv
from .hooks import default_hooks
from .param_stage import ParamStageTrainer
from .trainer import HookBase, RunFolderInUse, Trainer, TrainingDiverged, TrainingInterrupted


@dataclass
class TrainConfig:
    """Everything a run needs; saved (resolved) in every checkpoint. Defaults follow the paper/reference."""

    preset: str = "cpu-small"
    model: dict[str, Any] = field(default_factory=dict)  # ModelConfig field overrides
    data: list[str] = field(default_factory=list)
    val: str | None = None
    out: str = "runs/train"
    epochs: int = 13
    max_steps: int | None = None
    max_minutes: float | None = None  # stop (and checkpoint) after this much wall time
    max_cpu_minutes: float | None = None  # ... or this much CPU time of the training process (all its threads):
    # a budget that other work on a shared machine does not eat into (the ablation study's equal budget)
    batch_size: int = 16  # per process, as the reference (16 per GPU)
    lr: float = 1e-4
    lr_decay_epochs: list[int] = field(default_factory=lambda: [10, 12])
    lr_decay_factor: float = 10.0
    grad_accum_steps: int = 1
    amp: bool = True  # CUDA only
    sync_bn: bool = False  # CUDA only (PyTorch's SyncBatchNorm has no CPU kernel)
    freeze_bn: bool = False  # BatchNorm uses running statistics (tiny per-process batches; exact DDP == 1 process)
    num_workers: int = 2
    seed: int = 0
    device: str = "auto"
    checkpoint_every_steps: int = 0  # 0: at the end of every epoch only
    keep_epoch_checkpoints: bool = True  # checkpoints/epoch_NNN.pt besides last.pt
    log_every_steps: int = 10
    val_every_steps: int = 0  # 0: validate at epoch ends only; N: also before training and every N steps
    imagenet_weights: str = "none"  # "none", "torchvision" (downloads once) or a path to a state-dict file
    fit_orig_split: bool = False
    augment: bool = True
    # "lixel": the whole network, lixel losses. "param": the lixel part frozen, only the parameter regressor
    # trained ("+ SMPL regress"), for param_epochs epochs after the lixel stage's ``epochs``.
    stage: str = "lixel"
    init_from: str | None = None  # network file or checkpoint whose weights start the run (not with --resume)
    param_epochs: int = 5  # the reference trains the param stage 5 epochs, its lr decay epochs shifted by 5
    # Not in the paper (all off by default; the CPU quickstart turns them on, docs/training.md "Learning fast"):
    lr_warmup_steps: int = 0  # lr rises linearly from lr / warm-up steps to lr over the first steps
    lr_schedule: str = "step"  # "step": the reference's decay at lr_decay_epochs; "cosine": lr -> lr x
    # lr_min_factor along a half cosine over the run's steps (max_steps, or all epochs' steps), after the warm-up
    lr_min_factor: float = 0.0
    channels_last: bool = False  # channels_last memory format for the network and images (faster CPU convolutions)
    prior_samples: int = 128  # training samples whose targets set a head_prior network's prior (fresh runs)

    def __post_init__(self) -> None:
        for name, value in self.check(dataclasses.asdict(self)).items():
            setattr(self, name, value)  # coerced (e.g. lr "3e-4" -> 0.0003)

    @staticmethod
    def check(values: dict[str, Any], source: str = "training config") -> dict[str, Any]:
        """The schema check of a whole config (``config.TRAIN_FIELDS``, and ``config.MODEL_FIELDS`` for the network
        its preset and ``model`` overrides give): the values coerced, or ConfigError naming ``source`` and the field."""
        from ..config import MODEL_FIELDS, PRESETS, TRAIN_FIELDS, check_fields

        values = check_fields(values, TRAIN_FIELDS, source)
        network = {**PRESETS[values["preset"]].to_dict(), **values["model"]}
        check_fields(network, MODEL_FIELDS, source, prefix="model.")
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "training config") -> "TrainConfig":
        """A config from some of its fields (the others default); errors name ``source`` (a file, a flag)."""
        from ..config import ConfigError

        if not isinstance(values, dict):
            raise ConfigError(f"{source}: expected a mapping of training config fields (FIELD: VALUE), got "
                              f"{type(values).__name__}")
        return cls(**cls.check({**dataclasses.asdict(cls()), **values}, source))

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> "TrainConfig":
        """A config from a YAML file of its fields, ``overrides`` (None: not given) on top."""
        from ..config import ConfigError

        path = Path(path)
        if path.is_dir():
            raise ConfigError(f"{path}: is a folder, not a training config YAML file")
        if not path.is_file():
            raise FileNotFoundError(f"{path}: training config file not found")
        try:
            data = yaml.safe_load(path.read_text())
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not a text (YAML) file") from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
            raise ConfigError(f"{path}: not valid YAML{where}: {problem}") from None
        data = {} if data is None else data
        if isinstance(data, dict):
            data.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(data, str(path))

    def model_config(self) -> ModelConfig:
        """The network's config; the param stage always has the parameter regressor."""
        overrides = {**self.model, "param_regressor": True} if self.stage == "param" else self.model
        return get_preset(self.preset, **overrides)

    def stage_epochs(self) -> tuple[int, int]:
        """(first, end) epoch of this stage. The param stage continues the lixel stage's count as the reference
        (body: lixel epochs 0-12, param 13-17), so checkpoints and the lr schedule keep the reference's numbers."""
        return (self.epochs, self.epochs + self.param_epochs) if self.stage == "param" else (0, self.epochs)

    def lr_at_epoch(self, epoch: int) -> float:
        """Step decay as the reference: lr / factor^(number of decay epochs reached); in the param stage every
        decay epoch is shifted by ``param_epochs`` (the reference adds 5: body decays at 15 and 17 of 18)."""
        shift = self.param_epochs if self.stage == "param" else 0
        return self.lr / self.lr_decay_factor ** sum(epoch >= e + shift for e in self.lr_decay_epochs)

    def lr_at(self, epoch: int, step: int, total_steps: int) -> float:
        """The learning rate of optimizer step ``step`` (0-based, counted in this stage) in ``epoch`` of a run of
        ``total_steps`` steps: the step schedule (:meth:`lr_at_epoch`) or the cosine, times the linear warm-up.
        With the defaults (no warm-up, "step") this is exactly :meth:`lr_at_epoch`, as the reference."""
        if self.lr_schedule == "cosine":
            import math

            span = max(total_steps - self.lr_warmup_steps, 1)
            t = min(max(step - self.lr_warmup_steps, 0) / span, 1.0)
            lr = self.lr * (self.lr_min_factor + (1 - self.lr_min_factor) * 0.5 * (1 + math.cos(math.pi * t)))
        else:
            lr = self.lr_at_epoch(epoch)
        if step < self.lr_warmup_steps:
            lr *= (step + 1) / self.lr_warmup_steps
        return lr


def train(cfg: TrainConfig, train_set: Dataset, val_set: Dataset | None = None, net: I2LMeshNet | None = None,
          resume: bool = False, env: DistEnv | None = None,
          on_step: Callable[[dict[str, int]], None] | None = None, body_model: BodyModel | None = None,
          hooks: Iterable[HookBase] = ()) -> Path:
    """Train one stage of ``cfg``; returns the path of the last checkpoint (``OUT/checkpoints/last.pt``).

    ``train_set`` items are (image (3,S,S) in [0, 1], target arrays named as the ``LossTargets`` fields, meta) as
    ``i2lmesh.data``'s datasets give them; a ``set_epoch(epoch)`` method, if present, seeds its augmentation.
    ``val_set``: scored at epoch ends (and every ``val_every_steps``). ``on_step(progress)`` is called after every
    optimizer step and its checkpoint (progress {"epoch", "batch", "step"}). ``body_model``: the network's body
    model for the param stage (default: the one its config names; SMPL/MANO need their files, so pass them).
    ``hooks``: extra ``HookBase`` objects, run after the logger and before the checkpoint (``default_hooks``).

    Seeding: every global generator is seeded from ``cfg.seed`` here; ``net=None`` builds the network after that.
    A network you pass should be built right after ``seed_everything(cfg.seed)`` (as ``i2lmesh train`` does), so
    the seed fixes its initial weights too.
    Faults: rank 0 holds ``OUT/.lock`` for the run (``RunFolderInUse`` if another run holds it) and first removes
    temporary files that interrupted checkpoint writes left in ``OUT/checkpoints``. SIGTERM or SIGINT (main thread)
    saves ``last.pt`` at the next step boundary and raises ``TrainingInterrupted``; ``resume=True`` continues
    exactly from there (CheckpointError when there is no ``last.pt``). A NaN/inf loss raises ``TrainingDiverged``.
    """
    stage = ParamStageTrainer if cfg.stage == "param" else Trainer
    trainer = stage(cfg, train_set, val_set, net=net, env=env, body_model=body_model)
    trainer.register_hooks(default_hooks(cfg, on_step=on_step, extra=hooks))
    return trainer.train(resume)


# What train() raises, importable with it.
__all__ = ["TrainConfig", "train", "TrainingDiverged", "TrainingInterrupted", "RunFolderInUse"]
