"""The training loop: the same code on one CPU process and on N GPUs under ``torchrun`` (DDP).

Exact resume: the data order is a seeded permutation per epoch (split across ranks like DistributedSampler),
each sample's augmentation is seeded by (seed, epoch, index) in the dataset, and checkpoints carry the model,
optimizer, AMP scaler, RNG states and the position inside the epoch. A run killed at any moment and resumed
from ``last.pt`` therefore reaches the same weights as an uninterrupted run (tested on CPU).

Two stages, as the reference (docs/training.md, "Two stages"): ``stage: lixel`` trains the whole network with the
lixel losses; ``stage: param`` starts from a lixel-stage network (``init_from``), freezes it and trains only the
parameter regressor with the body-model losses of ``param_stage``.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import yaml
from torch.utils.data import DataLoader, Dataset, Sampler

from ..bodymodels.base import BodyModel
from ..config import ModelConfig, get_preset
from ..data.dataset import collate
from ..losses import LossTargets
from ..nets.factory import (FORMAT_NAME, CheckpointError, body_model_for, build_network, state_dict_mismatch,
                            strip_parallel_prefix)
from ..nets.i2l import I2LMeshNet
from .objective import forward_network, network_losses
from .checkpoint import load_training_checkpoint, restore_rng, save_training_checkpoint
from .distributed import DistEnv, all_reduce_mean, barrier, init_distributed
from .param_stage import ParamTargets, init_param_regressor, model_shape, param_losses, without_param_regressor

logger = logging.getLogger(__name__)

STAGES = ("lixel", "param")


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

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {', '.join(STAGES)}; got {self.stage!r}")

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides: Any) -> "TrainConfig":
        data = yaml.safe_load(Path(path).read_text()) or {}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path}: unknown training config fields: {', '.join(unknown)}")
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**data)

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


class TrainingDiverged(RuntimeError):
    """The loss became NaN/inf; the message names the step and the last good checkpoint."""


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
    missing = [k for k in result.missing_keys if not k.startswith("param_regressor.")]
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
    need their files, so pass them)."""
    env = env or init_distributed(cfg.device)
    out = Path(cfg.out)
    ckpt_dir = out / "checkpoints"
    if env.is_main:
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        (out / "train_config.yaml").write_text(yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))
    torch.manual_seed(cfg.seed)
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
        if not last.is_file():
            raise CheckpointError(f"{last}: nothing to resume (no last.pt in {ckpt_dir})")
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
    if param_stage and not resume and not cfg.init_from:
        logger.warning("stage 'param' without init_from: training the regressor on the network's current weights")
    net = net.to(env.device)
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
                         persistent_workers=False, collate_fn=collate)
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

    if cfg.val_every_steps and progress["step"] == 0:
        validate(first_epoch)
    started, cpu_started = time.monotonic(), time.process_time()
    _train_mode(net, cfg)
    window_start, window_images = time.perf_counter(), 0
    try:
        while progress["step"] < total_steps and progress["epoch"] < end_epoch:
            epoch = progress["epoch"]
            lr = cfg.lr_at_epoch(epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            if hasattr(train_set, "set_epoch"):
                train_set.set_epoch(epoch)
            sampler.set_epoch(epoch, progress["batch"])
            loader = DataLoader(train_set, **loader_kwargs)
            for images, targets, meta in loader:
                micro = progress["batch"] % cfg.grad_accum_steps
                images = images.to(env.device, non_blocking=True)
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
                if cfg.max_minutes is not None or cfg.max_cpu_minutes is not None:
                    over = torch.tensor(float(
                        (cfg.max_minutes is not None and time.monotonic() - started > cfg.max_minutes * 60)
                        or (cfg.max_cpu_minutes is not None
                            and time.process_time() - cpu_started > cfg.max_cpu_minutes * 60)))
                    if all_reduce_mean(over, env).item() > 0:  # every rank stops at the same step
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
    finally:
        if bar is not None:
            bar.close()
        log.close()
    return last


__all__ = ["TrainConfig", "TrainingDiverged", "EpochSampler", "train", "load_imagenet_weights",
           "load_initial_weights", "STAGES"]
