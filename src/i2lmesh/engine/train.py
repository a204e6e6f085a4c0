"""The training loop: the same code on one CPU process and on N GPUs under ``torchrun`` (DDP).

Exact resume: the data order is a seeded permutation per epoch (split across ranks like DistributedSampler),
each sample's augmentation is seeded by (seed, epoch, index) in the dataset, and checkpoints carry the model,
optimizer, AMP scaler, RNG states and the position inside the epoch. A run killed at any moment and resumed
from ``last.pt`` therefore reaches the same weights as an uninterrupted run (tested on CPU).

Faults (docs/training.md, "Faults and preemption"): the seed governs everything (``seed_everything`` before the
network is built; data order, augmentation and DataLoader workers are seeded from it), so two runs with the same
config are bit-identical on CPU. SIGTERM/SIGINT during training save ``last.pt`` at the next step boundary and raise
``TrainingInterrupted``; a lock on ``OUT/.lock`` keeps a second run out of a run folder in use; temporary files of
interrupted checkpoint writes are removed on start; DataLoader workers end with their parent.

Two stages, as the reference (docs/training.md, "Two stages"): ``stage: lixel`` trains the whole network with the
lixel losses; ``stage: param`` starts from a lixel-stage network (``init_from``), freezes it and trains only the
parameter regressor with the body-model losses of ``param_stage``.
"""
from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import functools
import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch.utils.data import DataLoader, Dataset, Sampler

from ..bodymodels.base import BodyModel
from ..config import STAGES, ModelConfig, get_preset
from ..data.dataset import collate
from ..losses import LossTargets
from ..nets.factory import (FORMAT_NAME, CheckpointError, body_model_for, build_network, state_dict_mismatch,
                            strip_parallel_prefix)
from ..nets.i2l import I2LMeshNet
from .objective import forward_network, network_losses
from .checkpoint import (load_training_checkpoint, remove_stale_temp_files, restore_rng, save_training_checkpoint,
                         seed_everything)
from .distributed import DistEnv, all_reduce_mean, barrier, init_distributed
from .param_stage import ParamTargets, init_param_regressor, model_shape, param_losses, without_param_regressor

logger = logging.getLogger(__name__)



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


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf; the message names the step and the last good checkpoint."""


class TrainingInterrupted(Exception):
    """SIGTERM or SIGINT stopped training at a step boundary, after ``last.pt`` was saved. ``exit_code`` is the
    shell's convention for the signal (128 + its number: 143 for SIGTERM, 130 for SIGINT); ``i2lmesh train``
    exits with it."""

    def __init__(self, message: str, signum: int, step: int, checkpoint: Path) -> None:
        super().__init__(message)
        self.signum, self.step, self.checkpoint = signum, step, checkpoint

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class RunFolderInUse(RuntimeError):
    """Another training run holds the run folder's lock (``OUT/.lock``)."""


LOCK_FILE = ".lock"
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def run_folder_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``out/.lock`` (which then holds this process's pid) for the block; raise
    ``RunFolderInUse`` at once if another process holds it. ``flock`` locks end with the process that holds them,
    so a killed run leaves no stale lock. Without ``fcntl`` (Windows) the folder is not locked."""
    try:
        import fcntl
    except ImportError:
        logger.debug("train: no fcntl on this platform; %s is not locked", out)
        yield
        return
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise RunFolderInUse(f"{out} is in use by another training run (pid {pid}); wait for it to end or "
                                 f"choose another --out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


class _StopSignals:
    """Between ``install`` and ``restore`` (main thread only), SIGTERM and SIGINT only set ``received``; the loop
    saves a checkpoint at the next step boundary and stops. A second Ctrl-C stops at once (KeyboardInterrupt).
    ``restore`` puts the previous handlers back."""

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        else:
            logger.debug("train: not in the main thread; SIGTERM/SIGINT keep their handlers")

    def _handle(self, signum: int, frame: Any) -> None:
        if self.received is not None:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            return
        self.received = signum
        logger.warning("received %s: saving a checkpoint at the next step boundary, then stopping%s",
                       signal.Signals(signum).name,
                       " (Ctrl-C again to stop at once, unsaved)" if signum == signal.SIGINT else "")

    def restore(self) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()


def _loader_generator(seed: int, epoch: int, rank: int) -> torch.Generator:
    """The DataLoader's generator for one epoch of one rank. It draws the workers' base seed; without it the
    loader draws that from the global torch generator, which then differs between a resumed and a straight run."""
    state = np.random.SeedSequence([seed % 2 ** 64, epoch, rank]).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state) >> 1)


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _init_worker(parent_pid: int, worker_id: int) -> None:
    """Runs in each DataLoader worker (torch has already seeded torch, random and NumPy there from the loader's
    generator and the worker id).

    Signals: the training process alone decides when to stop, so workers ignore SIGTERM and SIGINT, which
    schedulers and Ctrl-C send to the whole process group: a worker killed by them makes the parent's loader fail
    before it can save its checkpoint. Workers end with the parent instead: torch's workers notice a dead parent
    only when idle (a 5 s poll), so on Linux the kernel kills them the moment the parent dies (prctl
    PR_SET_PDEATHSIG; it fires when the thread that forked them ends, and the loop creates its loaders in the
    thread that runs it). Elsewhere torch's poll remains.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if sys.platform.startswith("linux") and os.getppid() == parent_pid:  # forked by the training process itself
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            return
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(0)


class EpochSampler(Sampler[int]):
    """A seeded permutation per epoch, split across ranks (rank r takes every world-th index), that can start
    part-way through an epoch (exact resume). Drops the tail so every rank sees the same number of batches."""

    def __init__(self, num_samples: int, batch_size: int, rank: int, world_size: int, seed: int,
                 shuffle: bool = True) -> None:
        self.num_samples, self.batch_size = num_samples, batch_size
        self.rank, self.world_size, self.seed, self.shuffle = rank, world_size, seed, shuffle
        self.batches_per_epoch = num_samples // (batch_size * world_size)
        self.epoch, self.start_batch = 0, 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            order = torch.randperm(self.num_samples, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(self.num_samples)
        used = self.batches_per_epoch * self.batch_size * self.world_size
        mine = order[:used][self.rank::self.world_size]
        return iter(mine[self.start_batch * self.batch_size:].tolist())

    def __len__(self) -> int:
        return (self.batches_per_epoch - self.start_batch) * self.batch_size


def targets_to(targets: LossTargets, device: torch.device) -> LossTargets:
    return LossTargets(**{f.name: None if getattr(targets, f.name) is None else
                          getattr(targets, f.name).to(device, non_blocking=True)
                          for f in dataclasses.fields(LossTargets)})


def load_imagenet_weights(net: I2LMeshNet, source: str) -> None:
    """Initialise both backbones from ImageNet: "torchvision" downloads torchvision's V1 weights (the reference's),
    anything else is a path to a torchvision ResNet state-dict file."""
    if source == "none":
        return
    depth = net.config.backbone_depth
    if source == "torchvision":
        import torchvision

        weights = torchvision.models.get_weight(f"ResNet{depth}_Weights.IMAGENET1K_V1")
        state = weights.get_state_dict(progress=True)
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: ImageNet weights file not found (use imagenet_weights: torchvision "
                                    f"to download torchvision's, or none)")
        state = torch.load(path, map_location="cpu", weights_only=True)
    for backbone in (net.pose_backbone, net.mesh_backbone):
        if backbone is not None:  # MeshNet alone ("meshnet" cascade) has no pose backbone
            backbone.load_imagenet_state_dict(state)


def load_initial_weights(net: I2LMeshNet, path: str | Path) -> bool:
    """Initialise ``net`` from an i2lmesh network file or training checkpoint (``init_from``).

    Everything must match except the parameter regressor: a lixel-stage file may lack it (or hold one of other
    sizes, which is skipped), and its weights are ignored when ``net`` has none. Model-config fields that differ
    (other than the regressor's) are logged, as they change what the weights mean. Returns whether the
    regressor's weights were loaded.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: init_from file not found")
    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch file ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path}: not an i2lmesh network file or checkpoint (convert an original snapshot "
                              f"with `i2lmesh convert-official` first)")
    current, saved = net.config.to_dict(), data.get("model_config", {})
    differ = sorted(k for k, v in saved.items() if k in current and not k.startswith("param_")
                    and (tuple(v) if isinstance(v, list) else v) != current[k])
    if differ:
        logger.warning("init_from %s: model config differs in %s (this run: %s)", path, ", ".join(differ),
                       ", ".join(f"{k}={current[k]!r}" for k in differ))
    own = net.state_dict()
    state = {k: v for k, v in strip_parallel_prefix(data.get("model") or {}).items()
             if not (k.startswith("param_regressor.") and (k not in own or own[k].shape != v.shape))}
    try:
        result = net.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1].strip()
        raise CheckpointError(f"{path}: weights do not fit this network ({first})") from None
    # A head_prior network may start from a file without the prior: the run then sets it from its data.
    missing = [k for k in result.missing_keys if not k.startswith("param_regressor.")
               and k.rpartition(".")[2] not in ("prior_x", "prior_y", "prior_z")]
    unexpected = [k for k in result.unexpected_keys if not k.startswith("param_regressor.")]
    if missing or unexpected:
        raise CheckpointError(f"{path}: weights do not fit this network (missing: {', '.join(missing[:5]) or '-'}; "
                              f"unexpected: {', '.join(unexpected[:5]) or '-'})")
    return net.param_regressor is not None and not any(k.startswith("param_regressor.") for k in result.missing_keys)


class _Logger:
    """metrics.jsonl (+ TensorBoard scalars when the tensorboard package is installed); rank 0 only."""

    def __init__(self, out: Path, enabled: bool) -> None:
        self.enabled = enabled
        self.file = None
        self.tb = None
        if not enabled:
            return
        self.file = open(out / "metrics.jsonl", "a")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tensorboard"))
        except ImportError:
            logger.info("train: TensorBoard not installed; scalars go to metrics.jsonl only")

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tb is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                    self.tb.add_scalar(key, value, record["step"])

    def close(self) -> None:
        if self.file:
            self.file.close()
        if self.tb:
            self.tb.close()


def _train_mode(net: I2LMeshNet, cfg: TrainConfig) -> None:
    """Lixel stage: the whole network in train mode. Param stage: only the regressor; the frozen lixel part is
    in eval mode, so its BatchNorms use (and keep) the lixel stage's running statistics. The reference calls
    ``model.train()`` on everything, so there the frozen BNs normalise with batch statistics under no_grad and
    their running statistics drift during the param stage. ``freeze_bn``: the trained part's BNs in eval mode."""
    trained = net.param_regressor if cfg.stage == "param" else net
    net.train(cfg.stage != "param")
    trained.train()
    if cfg.freeze_bn:
        for m in trained.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()


def _check_param_body_model(net: I2LMeshNet, body_model: BodyModel) -> None:
    cfg = net.config
    want = (cfg.num_vertices, cfg.param_num_rotations, cfg.param_shape_dim)
    have = (body_model.num_vertices, body_model.num_pose_rotations, body_model.num_shape_params)
    if want != have:
        raise ValueError(f"stage 'param': body model {body_model.name!r} has {have[0]} vertices, {have[1]} rotations "
                         f"and {have[2]} shape values, the network expects {want[0]}, {want[1]} and {want[2]}")


def train(cfg: TrainConfig, train_set: Dataset, val_set: Dataset | None = None, net: I2LMeshNet | None = None,
          resume: bool = False, env: DistEnv | None = None,
          on_step: Callable[[dict[str, int]], None] | None = None, body_model: BodyModel | None = None) -> Path:
    """Train; returns the path of the last checkpoint. ``train_set`` items are (image (3,S,S) in [0, 1], target
    arrays named as the ``LossTargets`` fields, meta) as ``i2lmesh.data``'s datasets give them; a
    ``set_epoch(epoch)`` method, if present, seeds its augmentation.
    ``on_step(progress)`` is called after every optimizer step and checkpoint (progress hooks, tests).
    ``body_model``: the network's body model for the param stage (default: the one its config names; SMPL/MANO
    need their files, so pass them).

    Seeding: every global generator is seeded from ``cfg.seed`` here; ``net=None`` builds the network after that.
    A network you pass should be built right after ``seed_everything(cfg.seed)`` (as ``i2lmesh train`` does), so
    the seed fixes its initial weights too.
    Faults: rank 0 holds ``OUT/.lock`` for the run (``RunFolderInUse`` if another run holds it) and first removes
    temporary files that interrupted checkpoint writes left in ``OUT/checkpoints``. SIGTERM or SIGINT (main thread)
    saves ``last.pt`` at the next step boundary and raises ``TrainingInterrupted``; ``resume=True`` continues
    exactly from there."""
    env = env or init_distributed(cfg.device)
    out = Path(cfg.out)
    last = out / "checkpoints" / "last.pt"
    if resume and not last.is_file():  # before the lock and the config file: a mistyped --out stays untouched
        raise CheckpointError(f"{last}: nothing to resume (no last.pt in {last.parent})")
    with contextlib.ExitStack() as stack:
        locked = True
        if env.is_main:
            try:
                stack.enter_context(run_folder_lock(out))
            except RunFolderInUse:
                if not env.distributed:
                    raise
                locked = False
        if env.distributed:  # every rank stops if rank 0 could not lock the folder
            flag = torch.tensor(float(locked), device=env.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MIN)
            if flag.item() == 0:
                raise RunFolderInUse(f"{out} is in use by another training run (see {out / LOCK_FILE})")
        if env.is_main:
            remove_stale_temp_files(out / "checkpoints")
        return _train(cfg, train_set, val_set, net, resume, env, on_step, body_model)


def _train(cfg: TrainConfig, train_set: Dataset, val_set: Dataset | None, net: I2LMeshNet | None, resume: bool,
           env: DistEnv, on_step: Callable[[dict[str, int]], None] | None, body_model: BodyModel | None) -> Path:
    out = Path(cfg.out)
    ckpt_dir = out / "checkpoints"
    if env.is_main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        (out / "train_config.yaml").write_text(yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))
    seed_everything(cfg.seed)
    if net is None:
        net = build_network(cfg.model_config())
    param_stage = cfg.stage == "param"
    if param_stage:
        if net.param_regressor is None:
            raise ValueError("stage 'param' trains the parameter regressor, but the network has none "
                             "(build it from TrainConfig.model_config(), which sets model.param_regressor)")
        body_model = body_model if body_model is not None else body_model_for(net.config)
        _check_param_body_model(net, body_model)
        body_model = body_model.to(env.device)
    state = None
    last = ckpt_dir / "last.pt"
    if resume:
        state = load_training_checkpoint(last)
        mismatch = state_dict_mismatch(net.state_dict(), state["model"])
        if mismatch:
            raise CheckpointError(f"{last}: this run's network does not fit the checkpoint ({mismatch})")
        net.load_state_dict(state["model"])
    elif cfg.init_from:
        if not load_initial_weights(net, cfg.init_from) and param_stage:
            init_param_regressor(net.param_regressor, body_model)
    elif cfg.imagenet_weights != "none":
        load_imagenet_weights(net, cfg.imagenet_weights)
    if state is None and not param_stage and net.config.head_prior:
        from .prior import head_prior_is_set, init_head_prior

        if not head_prior_is_set(net):  # a resumed run, or an init_from file with a prior, carries its own
            init_head_prior(net, train_set, cfg.prior_samples)
    if param_stage and not resume and not cfg.init_from:
        logger.warning("stage 'param' without init_from: training the regressor on the network's current weights")
    net = net.to(env.device)
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)
    if cfg.sync_bn and env.distributed:
        net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
    # The param stage optimises (and, under DDP, synchronises) the regressor alone; the rest is frozen.
    trained = net.param_regressor if param_stage else net
    model = (torch.nn.parallel.DistributedDataParallel(trained, device_ids=[env.device.index] if env.device.type ==
                                                       "cuda" else None) if env.distributed else trained)
    params = [p for p in trained.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.lr)
    use_amp = cfg.amp and env.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    first_epoch, end_epoch = cfg.stage_epochs()
    progress = {"epoch": first_epoch, "batch": 0, "step": 0}
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        progress = dict(state["progress"])
        restore_rng(state["rng"])

    sampler = EpochSampler(len(train_set), cfg.batch_size, env.rank, env.world_size, cfg.seed)
    if sampler.batches_per_epoch == 0:
        raise ValueError(f"training set has {len(train_set)} samples: fewer than one batch of "
                         f"{cfg.batch_size} x {env.world_size} processes")
    loader_kwargs = dict(batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers,
                         pin_memory=env.device.type == "cuda", drop_last=True,
                         persistent_workers=False, collate_fn=collate,
                         worker_init_fn=functools.partial(_init_worker, os.getpid()) if cfg.num_workers else None)
    total_steps = (end_epoch - first_epoch) * sampler.batches_per_epoch // cfg.grad_accum_steps
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    log = _Logger(out, env.is_main)
    show_bar = env.is_main
    bar = None
    if show_bar:
        from tqdm import tqdm

        bar = tqdm(total=total_steps, initial=progress["step"], desc="train", unit="step", dynamic_ncols=True)

    def checkpoint(name: str | None = None) -> None:
        if env.is_main:
            save_training_checkpoint(last, net, optimizer, scaler.state_dict() if use_amp else None, progress,
                                     dataclasses.asdict(cfg))
            if name and cfg.keep_epoch_checkpoints:
                save_training_checkpoint(ckpt_dir / name, net, optimizer, None, progress, dataclasses.asdict(cfg))
        barrier(env)

    def validate(epoch: int) -> None:
        if val_set is not None and env.is_main:
            from .evaluate import evaluate

            metrics = evaluate(net, val_set, batch_size=cfg.batch_size, device=env.device,
                               body_model=body_model if param_stage else None)
            log.log({"step": progress["step"], "epoch": epoch, **{f"val_{k}": v for k, v in metrics.items()
                                                                 if isinstance(v, (int, float))}})
        barrier(env)
        _train_mode(net, cfg)

    def stop_flags(signals: _StopSignals) -> tuple[int, bool]:
        """(signal received by any rank or 0, time budget spent on any rank): every rank stops at the same step."""
        over = ((cfg.max_minutes is not None and time.monotonic() - started > cfg.max_minutes * 60)
                or (cfg.max_cpu_minutes is not None and time.process_time() - cpu_started > cfg.max_cpu_minutes * 60))
        flags = torch.tensor([signals.received or 0, int(over)], dtype=torch.int64)
        if env.distributed:
            flags = flags.to(env.device)
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        return int(flags[0]), bool(flags[1])

    signals = _StopSignals()
    signals.install()
    try:
        if cfg.val_every_steps and progress["step"] == 0:
            validate(first_epoch)
        started, cpu_started = time.monotonic(), time.process_time()
        _train_mode(net, cfg)
        window_start, window_images = time.perf_counter(), 0
        # An epoch whose last step a signal stopped (batch == batches_per_epoch) still has its end to do (epoch
        # checkpoint, validation), also when that was the last step: as an uninterrupted run does.
        while ((progress["step"] < total_steps or progress["batch"] >= sampler.batches_per_epoch)
               and progress["epoch"] < end_epoch):
            epoch = progress["epoch"]
            if hasattr(train_set, "set_epoch"):
                train_set.set_epoch(epoch)
            sampler.set_epoch(epoch, progress["batch"])
            loader = DataLoader(train_set, generator=_loader_generator(cfg.seed, epoch, env.rank), **loader_kwargs)
            for images, targets, meta in loader:
                micro = progress["batch"] % cfg.grad_accum_steps
                if micro == 0:  # a new optimizer step: its learning rate (a function of epoch and step)
                    lr = cfg.lr_at(epoch, progress["step"], total_steps)
                    for group in optimizer.param_groups:
                        group["lr"] = lr
                images = images.to(env.device, non_blocking=True)
                if cfg.channels_last:
                    images = images.contiguous(memory_format=torch.channels_last)
                targets = targets_to(targets, env.device)
                sync = micro == cfg.grad_accum_steps - 1 or not env.distributed
                ctx = model.no_sync() if (env.distributed and not sync) else contextlib.nullcontext()
                with ctx:
                    if param_stage:
                        with torch.no_grad(), torch.autocast(env.device.type, enabled=use_amp), \
                                without_param_regressor(net):
                            out = forward_network(net, net, images, targets)  # the frozen lixel part
                        rotations, raw_shape = model(out.mesh_joints_hm.float())
                        losses = param_losses(body_model, rotations, model_shape(body_model, raw_shape),
                                              ParamTargets.from_meta(meta, body_model, env.device))
                    else:
                        with torch.autocast(env.device.type, enabled=use_amp):
                            out = forward_network(model, net, images, targets)
                        losses = network_losses(net, out, targets, cfg.fit_orig_split)
                    loss = sum(losses.values())
                    mean_loss = all_reduce_mean(loss.detach(), env)
                    if not torch.isfinite(mean_loss):
                        terms = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
                        raise TrainingDiverged(f"step {progress['step']}: loss is {mean_loss.item()} ({terms}); "
                                               f"stopped; last good checkpoint: {last if last.exists() else 'none'}")
                    scaler.scale(loss / cfg.grad_accum_steps).backward()
                progress["batch"] += 1
                window_images += images.shape[0] * env.world_size
                if micro != cfg.grad_accum_steps - 1:
                    continue
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                progress["step"] += 1
                if bar is not None:
                    bar.update(1)
                if progress["step"] % cfg.log_every_steps == 0 or progress["step"] == total_steps:
                    elapsed = time.perf_counter() - window_start
                    record = {"step": progress["step"], "epoch": epoch, "lr": lr, "loss": mean_loss.item(),
                              **{k: all_reduce_mean(v.detach(), env).item() for k, v in losses.items()},
                              "images_per_s": window_images / max(elapsed, 1e-9)}
                    log.log(record)
                    if bar is not None:
                        bar.set_postfix(loss=f"{record['loss']:.3f}", img_s=f"{record['images_per_s']:.1f}")
                    window_start, window_images = time.perf_counter(), 0
                if cfg.checkpoint_every_steps and progress["step"] % cfg.checkpoint_every_steps == 0:
                    checkpoint()
                if cfg.val_every_steps and progress["step"] % cfg.val_every_steps == 0 \
                        and progress["batch"] < sampler.batches_per_epoch:  # epoch ends validate anyway
                    validate(epoch)
                if on_step is not None:
                    on_step(dict(progress))
                signum, over = stop_flags(signals)
                if signum:
                    if not (cfg.checkpoint_every_steps and progress["step"] % cfg.checkpoint_every_steps == 0):
                        checkpoint()
                    name = signal.Signals(signum).name
                    message = (f"received {name}: saved checkpoint at step {progress['step']} ({last}); resume "
                               f"with --resume")
                    if env.is_main:
                        logger.warning("%s", message)
                    raise TrainingInterrupted(message, signum, progress["step"], last)
                if over:
                    total_steps = progress["step"]
                if progress["step"] >= total_steps:
                    break
            if progress["batch"] >= sampler.batches_per_epoch:  # epoch finished
                progress["epoch"] += 1
                progress["batch"] = 0
                checkpoint(f"epoch_{epoch:03d}.pt")
            if progress["batch"] == 0:
                validate(epoch)
        if progress["batch"] != 0:  # stopped inside an epoch (max_steps / max_minutes)
            checkpoint()
            if cfg.val_every_steps and progress["step"] % cfg.val_every_steps:
                validate(progress["epoch"])
        if signals.received and env.is_main:
            logger.warning("received %s after the last step: training complete",
                           signal.Signals(signals.received).name)
    finally:
        signals.restore()
        if bar is not None:
            bar.close()
        log.close()
    return last


__all__ = ["TrainConfig", "TrainingDiverged", "TrainingInterrupted", "RunFolderInUse", "EpochSampler", "train",
           "seed_everything", "run_folder_lock", "load_imagenet_weights", "load_initial_weights", "STAGES"]
