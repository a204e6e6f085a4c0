"""The training loop as a :class:`Trainer` with hooks (the design of detectron2's ``engine/train_loop.py``).

The Trainer owns what one optimizer step needs: the network (and its DDP wrapper), optimizer, AMP scaler, data order
and ``progress`` (epoch, batches done in it, global step). Everything around the steps is a :class:`HookBase`
called at fixed points -- ``before_train``, ``before_epoch``, ``before_step``, ``after_step``, ``after_epoch``,
``after_train``, then ``close`` (always, also after an error) -- in the order the hooks were registered
(``hooks.default_hooks``: progress bar, metrics log, checkpoints, validation, budget and signals). Each hook has a
``state_dict`` that goes into every checkpoint (under ``hooks``, by name) and is loaded back on resume.

Exact resume: the data order is a seeded permutation per epoch (split across ranks like DistributedSampler),
each sample's augmentation is seeded by (seed, epoch, index) in the dataset, and checkpoints carry the model,
optimizer, AMP scaler, RNG states, the position inside the epoch and the hooks' states. With gradient accumulation
checkpoints fall at optimizer steps, except at the end of an epoch whose micro-batches do not fill its last step:
the gradients accumulated there join the next epoch's first step, so that epoch-end checkpoint also carries them
(``grad_remainder``, every rank's). A run killed at any moment and resumed from ``last.pt`` therefore reaches the
same weights as an uninterrupted run (tested on CPU).

Faults (docs/training.md, "Faults and preemption"): the seed governs everything (``seed_everything`` before the
network is built; data order, augmentation and DataLoader workers are seeded from it), so two runs with the same
config are bit-identical on CPU. While :meth:`Trainer.train` runs, SIGTERM/SIGINT only mark a stop request
(:attr:`Trainer.stop_signal`); ``hooks.TimeBudgetHook`` turns it into ``last.pt`` at the next step boundary and
``TrainingInterrupted``. A lock on ``OUT/.lock`` keeps a second run out of a run folder in use; temporary files of
interrupted checkpoint writes are removed on start; DataLoader workers end with their parent.

Stages (docs/training.md, "Two stages"): :class:`Trainer` is the lixel stage (the whole network, the lixel
losses); ``param_stage.ParamStageTrainer`` overrides the few methods that differ (what is trained, its mode, its
losses, its start weights).
"""
from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import errno
import functools
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

import numpy as np
import torch
import torch.distributed as dist
import yaml
from torch.utils.data import DataLoader, Dataset, Sampler

from ..bodymodels.base import BodyModel
from ..data.dataset import collate
from ..losses import LossTargets
from ..nets.factory import build_network
from ..nets.i2l import I2LMeshNet
from .checkpoint import (CheckpointError, capture_rng, load_imagenet_weights, load_initial_weights,
                         load_training_checkpoint, network_state, remove_stale_temp_files, restore_rng,
                         seed_everything, state_dict_mismatch)
from .distributed import DistEnv, all_gather_objects, all_reduce_mean, init_distributed
from .objective import forward_network, network_losses

if TYPE_CHECKING:
    from .train import TrainConfig

logger = logging.getLogger(__name__)


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


class StopSignals:
    """Between ``install`` and ``restore`` (main thread only), SIGTERM and SIGINT only set ``received``; training
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
    """``targets`` with every tensor on ``device`` (None fields stay None)."""
    return LossTargets(**{f.name: None if getattr(targets, f.name) is None else
                          getattr(targets, f.name).to(device, non_blocking=True)
                          for f in dataclasses.fields(LossTargets)})


class HookBase:
    """Code run at fixed points of :meth:`Trainer.train`; subclass and override what you need.

    Order of the calls, each on every registered hook in registration order::

        before_train
        for each epoch (also one resumed part-way):
            before_epoch
            for each optimizer step:  before_step, (forward, backward for every micro-batch), after_step
            after_epoch                     (only when the epoch was completed)
        after_train                         (only when the loop ended normally)
        close                               (always: also after an error or TrainingInterrupted)

    A hook reads the trainer through ``self.trainer`` (set by :meth:`Trainer.register_hooks`): ``progress``
    (epoch, batch, step), ``epoch`` (the epoch being iterated, or just completed in ``after_epoch``),
    ``step_output`` (the last step's lr and losses), ``net``, ``optimizer``, ``env``, ``cfg``. Hooks run on every
    rank (collectives inside them line up); writing files is rank 0's (``trainer.env.is_main``).

    ``write(record)`` receives every metrics record (``Trainer.write``: step records from ``LoggerHook``,
    validation records from ``ValidationHook``). ``state_dict``/``load_state_dict``: the hook's own state, saved in
    every checkpoint under ``hooks[name]`` and loaded before ``before_train`` on resume; it must be what the hook
    needs to continue exactly (plain Python values and tensors). ``name`` keys it (default: the class name).
    """

    trainer: "Trainer"

    @property
    def name(self) -> str:
        return type(self).__name__

    def before_train(self) -> None:
        pass

    def before_epoch(self) -> None:
        pass

    def before_step(self) -> None:
        pass

    def after_step(self) -> None:
        pass

    def after_epoch(self) -> None:
        pass

    def after_train(self) -> None:
        pass

    def close(self) -> None:
        pass

    def write(self, record: dict[str, Any]) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


@dataclass
class StepOutput:
    """The last optimizer step: ``lr`` (its learning rate), ``loss`` (0-d tensor: the summed loss of its last
    micro-batch, averaged over ranks), ``losses`` (its named terms, this rank's)."""

    lr: float
    loss: torch.Tensor
    losses: dict[str, torch.Tensor]


class Trainer:
    """One training stage: the lixel stage (the whole network, the lixel losses). Same code on one CPU process
    and on N GPUs under ``torchrun`` (DDP).

    ``train_set`` items are (image (3,S,S) in [0, 1], target arrays named as the ``LossTargets`` fields, meta) as
    ``i2lmesh.data``'s datasets give them; a ``set_epoch(epoch)`` method, if present, seeds its augmentation.
    ``net=None`` builds the network from ``cfg`` after ``seed_everything(cfg.seed)``; a network you pass should be
    built right after ``seed_everything(cfg.seed)`` (as ``i2lmesh train`` does), so the seed fixes its initial
    weights too. ``env``: the process group (default: ``init_distributed(cfg.device)`` when training starts).
    ``body_model``: the network's body model (the parameter stage needs it; SMPL/MANO need their files).

    Usage: ``trainer.register_hooks(default_hooks(cfg)); last = trainer.train(resume)``. Subclasses override
    :meth:`prepare`, :meth:`initialise_weights`, :meth:`trained_module`, :meth:`train_mode`,
    :meth:`compute_losses` and :meth:`evaluate_kwargs`.
    """

    def __init__(self, cfg: "TrainConfig", train_set: Dataset, val_set: Dataset | None = None,
                 net: I2LMeshNet | None = None, env: DistEnv | None = None,
                 body_model: BodyModel | None = None) -> None:
        self.cfg, self.train_set, self.val_set = cfg, train_set, val_set
        self.net, self.env, self.body_model = net, env, body_model
        self.hooks: list[HookBase] = []
        self.out = Path(cfg.out)
        self.checkpoint_dir = self.out / "checkpoints"
        self.last_checkpoint = self.checkpoint_dir / "last.pt"
        self.first_epoch, self.end_epoch = cfg.stage_epochs()
        self.progress = {"epoch": self.first_epoch, "batch": 0, "step": 0}
        self.epoch = self.first_epoch
        # The run's planned last step (the lr schedule's length): the stage's epochs, capped by max_steps.
        # ``TimeBudgetHook`` lowers it to the current step to stop early.
        self.total_steps = 0
        self.images_seen = 0  # images of all ranks through forward and backward in this process's run
        self.step_output: StepOutput | None = None
        self._lr = 0.0  # the current optimizer step's learning rate (set at its first micro-batch)
        self.model: torch.nn.Module | None = None  # the trained module, DDP-wrapped under torchrun
        self.optimizer: torch.optim.Optimizer | None = None
        self.scaler: torch.amp.GradScaler | None = None
        self.use_amp = False
        self.sampler: EpochSampler | None = None
        self._signals = StopSignals()
        # Gradients accumulated at an epoch's end short of an optimizer step, every rank's (``_keep_remainder``);
        # None at a step boundary.
        self._grad_remainder: dict[str, Any] | None = None

    # --- hooks ---------------------------------------------------------------------------------------------------

    def register_hooks(self, hooks: Iterable[HookBase | None]) -> None:
        """Append ``hooks`` (None entries skipped); they run in this order at every point."""
        for hook in hooks:
            if hook is not None:
                hook.trainer = self
                self.hooks.append(hook)

    def find_hook(self, kind: type) -> HookBase | None:
        """The first registered hook that is a ``kind``, or None."""
        return next((h for h in self.hooks if isinstance(h, kind)), None)

    def _hook_names(self) -> list[str]:
        """Each hook's key in a checkpoint: its ``name``, with ``.1``, ``.2`` ... for the second, third ... of one
        name."""
        seen: dict[str, int] = {}
        names = []
        for hook in self.hooks:
            count = seen.get(hook.name, 0)
            seen[hook.name] = count + 1
            names.append(hook.name if count == 0 else f"{hook.name}.{count}")
        return names

    def _call(self, point: str) -> None:
        for hook in self.hooks:
            getattr(hook, point)()

    def write(self, record: dict[str, Any]) -> None:
        """Hand a metrics record ({"step", "epoch", name: number, ...}) to every hook's ``write``."""
        for hook in self.hooks:
            hook.write(record)

    @property
    def stop_signal(self) -> int | None:
        """The first SIGTERM/SIGINT received while training (its number), or None."""
        return self._signals.received

    # --- state ---------------------------------------------------------------------------------------------------

    def state_dict(self, scaler: bool = True) -> dict[str, Any]:
        """A training checkpoint (``engine.checkpoint``): the network file's keys (the bare network) + optimizer,
        AMP scaler (None without AMP or when ``scaler`` is False), progress, train_config, rng, hooks, and
        grad_remainder: None at an optimizer step, else {"world_size", "grads": per rank, per trained parameter
        (the optimizer's order), its accumulated (AMP-scaled) gradient on the CPU or None}."""
        state = network_state(self.net)
        state.update({"optimizer": self.optimizer.state_dict(),
                      "scaler": self.scaler.state_dict() if scaler and self.use_amp else None,
                      "progress": dict(self.progress), "train_config": dataclasses.asdict(self.cfg),
                      "rng": capture_rng(),
                      "hooks": {name: hook.state_dict() for name, hook in zip(self._hook_names(), self.hooks)},
                      "grad_remainder": self._grad_remainder})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a training checkpoint's optimizer, scaler, progress, RNG states and hook states (the
        network's weights are loaded before it moves to its device: :meth:`_resume_network`). A hook the
        checkpoint has no state for (added since, or an older checkpoint) keeps its fresh state."""
        self.optimizer.load_state_dict(state["optimizer"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.progress = dict(state["progress"])
        restore_rng(state["rng"])
        self._restore_remainder(state.get("grad_remainder"))
        saved = state.get("hooks") or {}
        for name, hook in zip(self._hook_names(), self.hooks):
            if name in saved:
                hook.load_state_dict(saved[name])
            else:
                logger.debug("train: the checkpoint has no state for hook %s; it starts fresh", name)

    def _trained_parameters(self) -> list[torch.nn.Parameter]:
        """The parameters the optimizer steps, in its order."""
        return [p for p in self.trained_module().parameters() if p.requires_grad]

    def _keep_remainder(self) -> None:
        """At an epoch's end: every rank's gradients accumulated short of an optimizer step (a collective under
        DDP), for the epoch-end checkpoint; None when the epoch's micro-batches filled its last step."""
        if self.sampler.batches_per_epoch % self.cfg.grad_accum_steps == 0:
            self._grad_remainder = None
            return
        grads = [None if p.grad is None else p.grad.detach().cpu().clone() for p in self._trained_parameters()]
        self._grad_remainder = {"world_size": self.env.world_size, "grads": all_gather_objects(grads, self.env)}

    def _restore_remainder(self, remainder: dict[str, Any] | None) -> None:
        """This rank's accumulated gradients from a checkpoint's ``grad_remainder`` (none: nothing pending). A run
        resumed on another number of processes drops them (its data order differs anyway), with a warning."""
        self._grad_remainder = remainder
        if remainder is None:
            return
        if remainder["world_size"] != self.env.world_size:
            logger.warning("train: the checkpoint holds gradients accumulated on %d processes, this run has %d; "
                           "they are dropped", remainder["world_size"], self.env.world_size)
            self._grad_remainder = None
            return
        for param, grad in zip(self._trained_parameters(), remainder["grads"][self.env.rank], strict=True):
            param.grad = None if grad is None else grad.to(param.device)

    # --- stage-specific parts (ParamStageTrainer overrides them) -------------------------------------------------

    def prepare(self) -> None:
        """Check the network and body model for this stage (after the network is built, before any weights)."""

    def initialise_weights(self) -> None:
        """Start weights of a fresh run: ``init_from``, else ImageNet backbones; then the body prior of a
        ``head_prior`` network, from ``prior_samples`` training samples (unless the start file carried one)."""
        cfg, net = self.cfg, self.net
        if cfg.init_from:
            load_initial_weights(net, cfg.init_from)
        elif cfg.imagenet_weights != "none":
            load_imagenet_weights(net, cfg.imagenet_weights)
        if net.config.head_prior:
            from .prior import head_prior_is_set, init_head_prior

            if not head_prior_is_set(net):  # an init_from file with a prior carries its own
                init_head_prior(net, self.train_set, cfg.prior_samples)

    def trained_module(self) -> torch.nn.Module:
        """The module the optimizer trains (and DDP synchronises): the whole network."""
        return self.net

    def train_mode(self) -> None:
        """The network in train mode; with ``freeze_bn`` its BatchNorms use their running statistics."""
        self.net.train()
        self._freeze_bn(self.net)

    def _freeze_bn(self, module: torch.nn.Module) -> None:
        if self.cfg.freeze_bn:
            for m in module.modules():
                if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                    m.eval()

    def compute_losses(self, images: torch.Tensor, targets: LossTargets, meta: dict[str, Any]
                       ) -> dict[str, torch.Tensor]:
        """The named loss terms of one micro-batch (their sum is the loss): the lixel losses (``objective``).
        images (B,3,S,S) on the device; targets on the device; meta as collated."""
        with torch.autocast(self.env.device.type, enabled=self.use_amp):
            out = forward_network(self.model, self.net, images, targets)
        return network_losses(self.net, out, targets, self.cfg.fit_orig_split)

    def evaluate_kwargs(self) -> dict[str, Any]:
        """Extra arguments of ``evaluate`` for validation."""
        return {"body_model": None}

    # --- the run -------------------------------------------------------------------------------------------------

    def train(self, resume: bool = False) -> Path:
        """Train; returns the path of the last checkpoint (``OUT/checkpoints/last.pt``).

        Rank 0 holds ``OUT/.lock`` for the run (``RunFolderInUse`` if another run holds it) and first removes
        temporary files that interrupted checkpoint writes left in ``OUT/checkpoints``. ``resume=True`` continues
        exactly from ``last.pt`` (CheckpointError, before anything is written, when there is none). Raises
        ``TrainingDiverged`` on a NaN/inf loss and, through ``TimeBudgetHook``, ``TrainingInterrupted`` on
        SIGTERM/SIGINT."""
        env = self.env = self.env or init_distributed(self.cfg.device)
        out, last = self.out, self.last_checkpoint
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
                remove_stale_temp_files(self.checkpoint_dir)
            self._setup(resume)
            self._run()
        return last

    def _setup(self, resume: bool) -> None:
        """Run folder, seed, network, start weights (or the checkpoint's), device, DDP, optimizer, data order."""
        cfg, env = self.cfg, self.env
        if env.is_main:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            (self.out / "train_config.yaml").write_text(yaml.safe_dump(dataclasses.asdict(cfg), sort_keys=False))
        seed_everything(cfg.seed)
        if self.net is None:
            self.net = build_network(cfg.model_config())
        self.prepare()
        state = self._resume_network() if resume else None
        if state is None:
            self.initialise_weights()
        net = self.net.to(env.device)
        if cfg.channels_last:
            net = net.to(memory_format=torch.channels_last)
        if cfg.sync_bn and env.distributed:
            net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(net)
        self.net = net
        trained = self.trained_module()
        self.model = (torch.nn.parallel.DistributedDataParallel(
            trained, device_ids=[env.device.index] if env.device.type == "cuda" else None)
            if env.distributed else trained)
        self.optimizer = torch.optim.Adam([p for p in trained.parameters() if p.requires_grad], lr=cfg.lr)
        self.use_amp = cfg.amp and env.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        if state is not None:
            self.load_state_dict(state)

        self.sampler = EpochSampler(len(self.train_set), cfg.batch_size, env.rank, env.world_size, cfg.seed)
        if self.sampler.batches_per_epoch == 0:
            raise ValueError(f"training set has {len(self.train_set)} samples: fewer than one batch of "
                             f"{cfg.batch_size} x {env.world_size} processes")
        total = (self.end_epoch - self.first_epoch) * self.sampler.batches_per_epoch // cfg.grad_accum_steps
        self.total_steps = total if cfg.max_steps is None else min(total, cfg.max_steps)

    def _resume_network(self) -> dict[str, Any]:
        """Load ``last.pt`` and its weights into the network; returns the checkpoint for :meth:`load_state_dict`."""
        last = self.last_checkpoint
        state = load_training_checkpoint(last)
        mismatch = state_dict_mismatch(self.net.state_dict(), state["model"])
        if mismatch:
            raise CheckpointError(f"{last}: this run's network does not fit the checkpoint ({mismatch})")
        self.net.load_state_dict(state["model"])
        return state

    def _loader(self, epoch: int) -> DataLoader:
        """The epoch's DataLoader, from the sampler's position (``progress['batch']``) on."""
        cfg, env = self.cfg, self.env
        if hasattr(self.train_set, "set_epoch"):
            self.train_set.set_epoch(epoch)
        self.sampler.set_epoch(epoch, self.progress["batch"])
        return DataLoader(self.train_set, batch_size=cfg.batch_size, sampler=self.sampler,
                          num_workers=cfg.num_workers, pin_memory=env.device.type == "cuda", drop_last=True,
                          persistent_workers=False, collate_fn=collate,
                          worker_init_fn=functools.partial(_init_worker, os.getpid()) if cfg.num_workers else None,
                          generator=_loader_generator(cfg.seed, epoch, env.rank))

    def _run(self) -> None:
        progress, bpe = self.progress, self.sampler.batches_per_epoch
        self._signals = StopSignals()
        self._signals.install()
        try:
            self._call("before_train")
            self.train_mode()
            # An epoch whose last step a signal stopped (batch == batches_per_epoch) still has its end to do (epoch
            # checkpoint, validation), also when that was the last step: as an uninterrupted run does.
            while (progress["step"] < self.total_steps or progress["batch"] >= bpe) and progress["epoch"] < \
                    self.end_epoch:
                self.epoch = progress["epoch"]
                self._call("before_epoch")
                for images, targets, meta in self._loader(self.epoch):
                    if not self._micro_batch(images, targets, meta):
                        continue
                    self._call("after_step")
                    if progress["step"] >= self.total_steps:
                        break
                if progress["batch"] >= bpe:  # epoch completed
                    progress["epoch"] += 1
                    progress["batch"] = 0
                    self._keep_remainder()
                    self._call("after_epoch")
            self._call("after_train")
        finally:
            self._signals.restore()
            for hook in self.hooks:
                hook.close()

    def _micro_batch(self, images: torch.Tensor, targets: LossTargets, meta: dict[str, Any]) -> bool:
        """Forward and backward of one batch; the optimizer step after ``grad_accum_steps`` of them. Returns
        whether it stepped (``progress['step']`` then counts it and ``step_output`` holds its lr and losses)."""
        cfg, env, progress = self.cfg, self.env, self.progress
        self._grad_remainder = None  # it described the gradients at the epoch end; this micro-batch changes them
        micro = progress["batch"] % cfg.grad_accum_steps
        if micro == 0:  # a new optimizer step: its learning rate (a function of epoch and step)
            self._lr = cfg.lr_at(self.epoch, progress["step"], self.total_steps)
            for group in self.optimizer.param_groups:
                group["lr"] = self._lr
            self._call("before_step")
        images = images.to(env.device, non_blocking=True)
        if cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        targets = targets_to(targets, env.device)
        sync = micro == cfg.grad_accum_steps - 1 or not env.distributed
        with self.model.no_sync() if (env.distributed and not sync) else contextlib.nullcontext():
            losses = self.compute_losses(images, targets, meta)
            loss = sum(losses.values())
            mean_loss = all_reduce_mean(loss.detach(), env)
            if not torch.isfinite(mean_loss):
                terms = ", ".join(f"{k}={v.item():.4g}" for k, v in losses.items())
                last = self.last_checkpoint
                raise TrainingDiverged(f"step {progress['step']}: loss is {mean_loss.item()} ({terms}); "
                                       f"stopped; last good checkpoint: {last if last.exists() else 'none'}")
            self.scaler.scale(loss / cfg.grad_accum_steps).backward()
        progress["batch"] += 1
        self.images_seen += images.shape[0] * env.world_size
        if micro != cfg.grad_accum_steps - 1:
            return False
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        progress["step"] += 1
        self.step_output = StepOutput(self._lr, mean_loss, losses)
        return True


__all__ = ["Trainer", "HookBase", "StepOutput", "EpochSampler", "TrainingDiverged", "TrainingInterrupted",
           "RunFolderInUse", "run_folder_lock", "StopSignals", "LOCK_FILE", "STOP_SIGNALS", "targets_to"]
