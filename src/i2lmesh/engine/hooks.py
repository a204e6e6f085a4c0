"""The built-in training hooks (``trainer.HookBase``) and their default order.

``default_hooks(cfg)`` gives, in this order (the order every point calls them in):

1. :class:`ProgressHook`: the tqdm bar (steps, last loss, images/s) on a terminal, log lines elsewhere, rank 0;
2. :class:`LoggerHook`: ``OUT/metrics.jsonl`` (+ TensorBoard) -- step records every ``log_every_steps`` and every
   record another hook writes (validation);
3. any extra hooks you pass (after logging, before the checkpoint: their state at a step is in that step's
   checkpoint);
4. :class:`CheckpointHook`: ``last.pt`` every ``checkpoint_every_steps`` steps, at every epoch end (+
   ``epoch_NNN.pt``) and where a run stops inside an epoch;
5. :class:`ValidationHook`: ``evaluate`` on the validation set at epoch ends (and before training and every
   ``val_every_steps`` steps);
6. :class:`CallbackHook` for the ``on_step(progress)`` argument of ``train``;
7. :class:`TimeBudgetHook`: stops at ``max_minutes`` / ``max_cpu_minutes``, and on SIGTERM/SIGINT saves
   ``last.pt`` and raises ``TrainingInterrupted`` -- last, so everything of a step is done and saved before a stop.

The built-in hooks need no state of their own to resume exactly (the trainer's checkpoint holds the network,
optimizer, progress and RNG states); their ``state_dict`` is empty. ``max_steps`` is not a hook: it sets the length
of the run (``Trainer.total_steps``), which the learning-rate schedule depends on.
"""
from __future__ import annotations

import json
import logging
import signal
import time
from typing import TYPE_CHECKING, Any, Callable, Iterable

import torch
import torch.distributed as dist

from .checkpoint import save_training_checkpoint
from .distributed import all_reduce_mean, barrier
from .trainer import HookBase, Trainer, TrainingInterrupted

if TYPE_CHECKING:
    from .train import TrainConfig

logger = logging.getLogger(__name__)


# Without a terminal (a log file, a pipe, CI), progress is one log line at most this often instead of a bar.
PLAIN_PROGRESS_EVERY_S = 30.0


class ProgressHook(HookBase):
    """Progress on rank 0: on a terminal, a tqdm bar (steps done of ``Trainer.total_steps``, with the loss and
    images/s of the last step record, :class:`LoggerHook`); where stderr is not a terminal, a log line ("train: step
    N/T, loss, images/s") at most every PLAIN_PROGRESS_EVERY_S, so that logs get lines, not carriage-return
    redraws."""

    def __init__(self) -> None:
        self.bar = None
        self.plain = False
        self._last_line = float("-inf")

    def before_train(self) -> None:
        from ..native_stderr import stderr_is_terminal

        t = self.trainer
        if not t.env.is_main:
            return
        if stderr_is_terminal():
            from tqdm import tqdm

            self.bar = tqdm(total=t.total_steps, initial=t.progress["step"], desc="train", unit="step",
                            dynamic_ncols=True)
        else:
            self.plain = True

    def after_step(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def write(self, record: dict[str, Any]) -> None:
        if "loss" not in record or "images_per_s" not in record:
            return
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{record['loss']:.3f}", img_s=f"{record['images_per_s']:.1f}")
        elif self.plain and time.monotonic() - self._last_line >= PLAIN_PROGRESS_EVERY_S:
            self._last_line = time.monotonic()
            t = self.trainer
            logger.info("train: step %d/%d, loss %.3f, %.1f images/s", record.get("step", t.progress["step"]),
                        t.total_steps, record["loss"], record["images_per_s"])

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class LoggerHook(HookBase):
    """``OUT/metrics.jsonl`` (one JSON record a line, appended; a resumed run continues the file) and TensorBoard
    scalars in ``OUT/tensorboard`` when the tensorboard package is installed; rank 0 writes.

    Every ``every_steps`` optimizer steps and at the run's last step it writes a step record: ``step``, ``epoch``,
    ``lr``, ``loss`` (the summed loss, averaged over ranks), each loss term (averaged over ranks) and
    ``images_per_s`` (all ranks, since the previous step record). It also writes every record another hook hands
    to ``Trainer.write`` (validation: ``val_*`` metrics)."""

    def __init__(self, every_steps: int = 10) -> None:
        self.every_steps = every_steps
        self.file = None
        self.tb = None
        self._window_start: float | None = None
        self._window_images = 0

    def before_train(self) -> None:
        t = self.trainer
        if not t.env.is_main:
            return
        self.file = open(t.out / "metrics.jsonl", "a")
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(t.out / "tensorboard"))
        except ImportError:
            logger.info("train: TensorBoard not installed; scalars go to metrics.jsonl only")

    def before_epoch(self) -> None:
        if self._window_start is None:  # images/s count training, not the validation before it
            self._window_start, self._window_images = time.perf_counter(), self.trainer.images_seen

    def after_step(self) -> None:
        t = self.trainer
        step = t.progress["step"]
        if step % self.every_steps and step != t.total_steps:
            return
        out = t.step_output
        elapsed = time.perf_counter() - self._window_start
        record = {"step": step, "epoch": t.epoch, "lr": out.lr, "loss": out.loss.item(),
                  **{k: all_reduce_mean(v.detach(), t.env).item() for k, v in out.losses.items()},
                  "images_per_s": (t.images_seen - self._window_images) / max(elapsed, 1e-9)}
        t.write(record)
        self._window_start, self._window_images = time.perf_counter(), t.images_seen

    def write(self, record: dict[str, Any]) -> None:
        if self.file is None:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.tb is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                    self.tb.add_scalar(key, value, record["step"])

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
        if self.tb is not None:
            self.tb.close()
            self.tb = None


class CheckpointHook(HookBase):
    """Training checkpoints (``Trainer.state_dict``), written atomically by rank 0, then a barrier:
    ``last.pt`` every ``every_steps`` steps (0: never mid-epoch), at every epoch end (then also
    ``epoch_NNN.pt``, without the AMP scaler, when ``keep_epoch_checkpoints``) and when the run ends inside an
    epoch (max_steps, time budget). :meth:`save` is also what ``TimeBudgetHook`` calls on a signal."""

    def __init__(self, every_steps: int = 0, keep_epoch_checkpoints: bool = True) -> None:
        self.every_steps = every_steps
        self.keep_epoch_checkpoints = keep_epoch_checkpoints
        self.saved_step: int | None = None  # the step of the last last.pt written in this session

    def save(self, name: str | None = None) -> None:
        """Write ``last.pt`` (and ``checkpoints/NAME`` when given and epoch checkpoints are kept)."""
        t = self.trainer
        if t.env.is_main:
            save_training_checkpoint(t.last_checkpoint, t.state_dict())
            if name and self.keep_epoch_checkpoints:
                save_training_checkpoint(t.checkpoint_dir / name, t.state_dict(scaler=False))
        barrier(t.env)
        self.saved_step = t.progress["step"]

    def after_step(self) -> None:
        if self.every_steps and self.trainer.progress["step"] % self.every_steps == 0:
            self.save()

    def after_epoch(self) -> None:
        self.save(f"epoch_{self.trainer.epoch:03d}.pt")

    def after_train(self) -> None:
        if self.trainer.progress["batch"] != 0:  # stopped inside an epoch (max_steps / max_minutes)
            self.save()


class ValidationHook(HookBase):
    """``evaluate`` on ``Trainer.val_set`` (nothing without one) by rank 0, its numbers written as ``val_*`` in a
    record; then a barrier and the network back in train mode. When: at every epoch end; with ``every_steps`` N
    also before training (a fresh run) and every N steps inside an epoch, and where the run stops inside an epoch
    off that grid."""

    def __init__(self, every_steps: int = 0) -> None:
        self.every_steps = every_steps

    def validate(self, epoch: int) -> None:
        t = self.trainer
        if t.val_set is not None and t.env.is_main:
            from .evaluate import evaluate

            metrics = evaluate(t.net, t.val_set, batch_size=t.cfg.batch_size, device=t.env.device,
                               **t.evaluate_kwargs())
            t.write({"step": t.progress["step"], "epoch": epoch, **{f"val_{k}": v for k, v in metrics.items()
                                                                   if isinstance(v, (int, float))}})
        barrier(t.env)
        t.train_mode()

    def before_train(self) -> None:
        if self.every_steps and self.trainer.progress["step"] == 0:
            self.validate(self.trainer.first_epoch)

    def after_step(self) -> None:
        t = self.trainer
        if self.every_steps and t.progress["step"] % self.every_steps == 0 \
                and t.progress["batch"] < t.sampler.batches_per_epoch:  # epoch ends validate anyway
            self.validate(t.epoch)

    def after_epoch(self) -> None:
        self.validate(self.trainer.epoch)

    def after_train(self) -> None:
        p = self.trainer.progress
        if p["batch"] != 0 and self.every_steps and p["step"] % self.every_steps:
            self.validate(p["epoch"])


class CallbackHook(HookBase):
    """A hook from functions, each taking the trainer (any of them may be None)."""

    def __init__(self, before_train: Callable[[Trainer], None] | None = None,
                 after_step: Callable[[Trainer], None] | None = None,
                 after_epoch: Callable[[Trainer], None] | None = None,
                 after_train: Callable[[Trainer], None] | None = None) -> None:
        self._before_train, self._after_step = before_train, after_step
        self._after_epoch, self._after_train = after_epoch, after_train

    def before_train(self) -> None:
        if self._before_train:
            self._before_train(self.trainer)

    def after_step(self) -> None:
        if self._after_step:
            self._after_step(self.trainer)

    def after_epoch(self) -> None:
        if self._after_epoch:
            self._after_epoch(self.trainer)

    def after_train(self) -> None:
        if self._after_train:
            self._after_train(self.trainer)


class TimeBudgetHook(HookBase):
    """Ends the run at a step boundary, on every rank at the same step (one all-reduce of the flags per step).

    * ``max_minutes`` of wall time or ``max_cpu_minutes`` of this process's CPU time (all its threads), counted
      from the start of training in this process (after the validation before it; a resumed run gets the budget
      again): the step just done becomes the last (``Trainer.total_steps``), and the run ends as at max_steps.
    * SIGTERM / SIGINT (``Trainer.stop_signal``, caught for the whole of ``Trainer.train``): ``last.pt`` of this
      step (``CheckpointHook.save``, unless it was just written), a warning naming it, and ``TrainingInterrupted``
      (exit code 143 / 130 from ``i2lmesh train``); ``--resume`` continues exactly. A signal after the last step
      only logs that training is complete.
    """

    def __init__(self, max_minutes: float | None = None, max_cpu_minutes: float | None = None) -> None:
        self.max_minutes, self.max_cpu_minutes = max_minutes, max_cpu_minutes
        self._started, self._cpu_started = 0.0, 0.0

    def before_train(self) -> None:
        self._started, self._cpu_started = time.monotonic(), time.process_time()

    def _flags(self) -> tuple[int, bool]:
        """(signal received by any rank or 0, time budget spent on any rank)."""
        t = self.trainer
        over = ((self.max_minutes is not None and time.monotonic() - self._started > self.max_minutes * 60)
                or (self.max_cpu_minutes is not None
                    and time.process_time() - self._cpu_started > self.max_cpu_minutes * 60))
        flags = torch.tensor([t.stop_signal or 0, int(over)], dtype=torch.int64)
        if t.env.distributed:
            flags = flags.to(t.env.device)
            dist.all_reduce(flags, op=dist.ReduceOp.MAX)
        return int(flags[0]), bool(flags[1])

    def after_step(self) -> None:
        t = self.trainer
        signum, over = self._flags()
        if signum:
            self._interrupt(signum)
        if over:
            t.total_steps = t.progress["step"]

    def _interrupt(self, signum: int) -> None:
        t = self.trainer
        step, name = t.progress["step"], signal.Signals(signum).name
        checkpoints = t.find_hook(CheckpointHook)
        if checkpoints is not None:
            if checkpoints.saved_step != step:
                checkpoints.save()
            message = f"received {name}: saved checkpoint at step {step} ({t.last_checkpoint}); resume with --resume"
        else:
            message = f"received {name}: stopped at step {step} without a checkpoint (no CheckpointHook)"
        if t.env.is_main:
            logger.warning("%s", message)
        raise TrainingInterrupted(message, signum, step, t.last_checkpoint)

    def after_train(self) -> None:
        t = self.trainer
        if t.stop_signal and t.env.is_main:
            logger.warning("received %s after the last step: training complete", signal.Signals(t.stop_signal).name)


def default_hooks(cfg: "TrainConfig", on_step: Callable[[dict[str, int]], None] | None = None,
                  extra: Iterable[HookBase] = ()) -> list[HookBase]:
    """The hooks of a run of ``cfg`` in their order (module docstring); ``on_step(progress)`` is called after every
    optimizer step and its checkpoint; ``extra`` hooks go after the logger, before the checkpoint."""
    callback = CallbackHook(after_step=lambda t: on_step(dict(t.progress))) if on_step is not None else None
    hooks = [ProgressHook(), LoggerHook(cfg.log_every_steps), *extra,
             CheckpointHook(cfg.checkpoint_every_steps, cfg.keep_epoch_checkpoints),
             ValidationHook(cfg.val_every_steps), callback, TimeBudgetHook(cfg.max_minutes, cfg.max_cpu_minutes)]
    return [h for h in hooks if h is not None]


__all__ = ["ProgressHook", "LoggerHook", "CheckpointHook", "ValidationHook", "CallbackHook", "TimeBudgetHook",
           "default_hooks"]
