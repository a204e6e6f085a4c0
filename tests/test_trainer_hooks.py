"""The Trainer and its hooks (issue 12): the order hooks are called in, a hook's state in every checkpoint and back
on resume (bit-identical to an uninterrupted run), the default hooks' order and names, checkpoints written before
hook states existed, the parameter stage as a subclass, training presets, and the checkpoint module's old names."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from toy_data import ToyDataset, toy_network  # noqa: E402

from i2lmesh.config import FAST_START, TRAINING_PRESETS, ConfigError, training_preset  # noqa: E402
from i2lmesh.engine.checkpoint import atomic_torch_save  # noqa: E402
from i2lmesh.engine.hooks import (CallbackHook, CheckpointHook, LoggerHook, ProgressHook, TimeBudgetHook,  # noqa: E402
                                  ValidationHook, default_hooks)
from i2lmesh.engine.param_stage import ParamStageTrainer  # noqa: E402
from i2lmesh.engine.train import TrainConfig, train  # noqa: E402
from i2lmesh.engine.trainer import HookBase, Trainer  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(out: Path, **kw) -> TrainConfig:
    base = dict(out=str(out), batch_size=4, lr=1e-3, epochs=2, num_workers=0, device="cpu", log_every_steps=1,
                amp=False, seed=3, keep_epoch_checkpoints=False)
    return TrainConfig(**{**base, **kw})


class Recorder(HookBase):
    """Every call as (point, trainer.epoch, progress step, progress batch)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int, int]] = []

    def _note(self, point: str) -> None:
        p = self.trainer.progress
        self.calls.append((point, self.trainer.epoch, p["step"], p["batch"]))

    def before_train(self) -> None:
        self._note("before_train")

    def before_epoch(self) -> None:
        self._note("before_epoch")

    def before_step(self) -> None:
        self._note("before_step")

    def after_step(self) -> None:
        self._note("after_step")

    def after_epoch(self) -> None:
        self._note("after_epoch")

    def after_train(self) -> None:
        self._note("after_train")

    def close(self) -> None:
        self._note("close")


class LossSum(HookBase):
    """State that must survive a resume: the steps seen and the sum of the logged losses (float64)."""

    def __init__(self) -> None:
        self.steps, self.total = 0, torch.zeros((), dtype=torch.float64)
        self.loaded: dict | None = None

    def after_step(self) -> None:
        self.steps += 1
        self.total += self.trainer.step_output.loss.double()

    def state_dict(self) -> dict:
        return {"steps": self.steps, "total": self.total.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.loaded = dict(state)
        self.steps, self.total = state["steps"], state["total"].clone()


def test_hooks_are_called_in_order_once_per_optimizer_step(tmp_path):
    """8 samples, batch 2, 2 micro-batches a step: 2 steps in each of 2 epochs; before_step at a step's first
    micro-batch, after_step after its optimizer step, after_epoch with the completed epoch and progress moved on."""
    recorder = Recorder()
    train(_cfg(tmp_path, batch_size=2, grad_accum_steps=2), ToyDataset(8), net=toy_network(), hooks=[recorder])
    epoch = [("before_step", 0, 0, 0), ("after_step", 0, 1, 2), ("before_step", 0, 1, 2), ("after_step", 0, 2, 4)]
    second = [("before_step", 1, 2, 0), ("after_step", 1, 3, 2), ("before_step", 1, 3, 2), ("after_step", 1, 4, 4)]
    assert recorder.calls == [("before_train", 0, 0, 0), ("before_epoch", 0, 0, 0), *epoch, ("after_epoch", 0, 2, 0),
                              ("before_epoch", 1, 2, 0), *second, ("after_epoch", 1, 4, 0), ("after_train", 1, 4, 0),
                              ("close", 1, 4, 0)]


def test_an_error_skips_after_train_but_closes_every_hook(tmp_path):
    recorder = Recorder()

    def fail(progress):
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        train(_cfg(tmp_path), ToyDataset(8), net=toy_network(), hooks=[recorder], on_step=fail)
    assert [c[0] for c in recorder.calls] == ["before_train", "before_epoch", "before_step", "after_step", "close"]


def test_default_hooks_order_and_checkpoint_names(tmp_path):
    cfg = _cfg(tmp_path, max_steps=1)
    extra = [LossSum(), LossSum()]
    hooks = default_hooks(cfg, on_step=lambda p: None, extra=extra)
    assert [type(h) for h in hooks] == [ProgressHook, LoggerHook, LossSum, LossSum, CheckpointHook, ValidationHook,
                                        CallbackHook, TimeBudgetHook]
    assert [type(h) for h in default_hooks(cfg)] == [ProgressHook, LoggerHook, CheckpointHook, ValidationHook,
                                                     TimeBudgetHook]
    train(cfg, ToyDataset(8), net=toy_network(), hooks=extra)
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=False)["hooks"]
    assert list(state) == ["ProgressHook", "LoggerHook", "LossSum", "LossSum.1", "CheckpointHook", "ValidationHook",
                           "TimeBudgetHook"]
    assert state["LossSum"]["steps"] == state["LossSum.1"]["steps"] == 1
    assert all(state[k] == {} for k in ("ProgressHook", "LoggerHook", "CheckpointHook", "ValidationHook"))


def test_an_extra_hook_runs_after_the_log_and_before_the_checkpoint(tmp_path):
    """At its after_step the step's record is in metrics.jsonl and last.pt is still the previous step's; the step's
    checkpoint then holds the hook's state after that step."""
    seen = []

    class Probe(LossSum):
        def after_step(self) -> None:
            super().after_step()
            out = self.trainer.out
            last = out / "checkpoints" / "last.pt"
            saved = torch.load(last, weights_only=False)["progress"]["step"] if last.is_file() else 0
            seen.append((self.trainer.progress["step"], len((out / "metrics.jsonl").read_text().splitlines()), saved))

    steps = []

    def check(progress):
        state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=False)["hooks"]["Probe"]
        steps.append((progress["step"], state["steps"]))

    train(_cfg(tmp_path, checkpoint_every_steps=1), ToyDataset(8), net=toy_network(), hooks=[Probe()], on_step=check)
    assert seen == [(1, 1, 0), (2, 2, 1), (3, 3, 2), (4, 4, 3)]
    assert steps == [(1, 1), (2, 2), (3, 3), (4, 4)]


class _Stop(Exception):
    pass


def test_a_hook_state_resumes_exactly(tmp_path):
    """Stopped after the step-3 checkpoint and resumed: the hook's state (and the weights) equal an uninterrupted
    run's, bit for bit; the resumed hook got its saved state before training went on."""
    straight_hook = LossSum()
    straight = toy_network()
    train(_cfg(tmp_path / "straight", checkpoint_every_steps=1), ToyDataset(8), net=straight, hooks=[straight_hook])

    def stop(progress):
        if progress["step"] == 3:
            raise _Stop

    with pytest.raises(_Stop):
        train(_cfg(tmp_path / "cut", checkpoint_every_steps=1), ToyDataset(8), net=toy_network(), hooks=[LossSum()],
              on_step=stop)
    resumed_hook, resumed = LossSum(), toy_network(seed=5)
    train(_cfg(tmp_path / "cut", checkpoint_every_steps=1), ToyDataset(8), net=resumed, hooks=[resumed_hook],
          resume=True)
    assert resumed_hook.loaded["steps"] == 3
    assert resumed_hook.steps == straight_hook.steps == 4
    assert torch.equal(resumed_hook.total, straight_hook.total) and straight_hook.total > 0
    for name, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.pt", weights_only=False)["hooks"]["LossSum"]
    b = torch.load(tmp_path / "cut" / "checkpoints" / "last.pt", weights_only=False)["hooks"]["LossSum"]
    assert a["steps"] == b["steps"] == 4 and torch.equal(a["total"], b["total"])


def test_a_checkpoint_without_hook_states_still_resumes_exactly(tmp_path):
    """Checkpoints written before hooks had states (no "hooks" key): the hooks start fresh, the run is exact."""
    straight = toy_network()
    train(_cfg(tmp_path / "straight"), ToyDataset(8), net=straight)
    cut = tmp_path / "cut"
    train(_cfg(cut, max_steps=3), ToyDataset(8), net=toy_network())
    last = cut / "checkpoints" / "last.pt"
    old = torch.load(last, weights_only=False)
    del old["hooks"]
    atomic_torch_save(old, last)
    hook, resumed = LossSum(), toy_network(seed=5)
    train(_cfg(cut), ToyDataset(8), net=resumed, hooks=[hook], resume=True)
    assert hook.loaded is None and hook.steps == 1
    for name, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name


def test_a_trainer_runs_with_only_the_hooks_it_is_given(tmp_path):
    """No checkpoint or logger hook: the steps run, nothing but the resolved config is written."""
    recorder = Recorder()
    trainer = Trainer(_cfg(tmp_path, max_steps=3), ToyDataset(8), net=toy_network())
    trainer.register_hooks([recorder, None])
    assert trainer.train() == tmp_path / "checkpoints" / "last.pt"
    assert [c for c in recorder.calls if c[0] == "after_step"] == [("after_step", 0, 1, 1), ("after_step", 0, 2, 2),
                                                                   ("after_step", 1, 3, 1)]
    assert sorted(p.name for p in tmp_path.rglob("*") if p.is_file()) == [".lock", "train_config.yaml"]


def test_the_param_stage_is_a_trainer_subclass_chosen_by_the_config(tmp_path, monkeypatch):
    chosen = []
    monkeypatch.setattr(Trainer, "train", lambda self, resume=False: chosen.append(type(self)) or Path("x"))
    for stage in ("lixel", "param"):
        train(_cfg(tmp_path, stage=stage), ToyDataset(8), net=toy_network())
    assert chosen == [Trainer, ParamStageTrainer] and issubclass(ParamStageTrainer, Trainer)


def test_training_presets():
    assert training_preset("paper") == {}
    budget = training_preset("budget")
    assert budget == {"epochs": 1000, "lr": 3e-4, "lr_decay_epochs": [1000], "log_every_steps": 10,
                      "keep_epoch_checkpoints": False}
    fast = training_preset("cpu-fast", lr=2e-3, model={"backbone_depth": 34}, seed=4)
    assert fast == {**budget, **FAST_START, "lr": 2e-3, "seed": 4, "model": {"head_prior": True, "backbone_depth": 34}}
    fast["lr_decay_epochs"].append(5)
    fast["model"]["head_prior"] = False
    assert TRAINING_PRESETS["cpu-fast"]["lr_decay_epochs"] == [1000] and FAST_START["model"] == {"head_prior": True}
    for name in TRAINING_PRESETS:  # every preset is a valid config
        TrainConfig.from_dict(training_preset(name), name)
    cfg = TrainConfig(**training_preset("cpu-fast"))
    assert (cfg.lr, cfg.lr_schedule, cfg.lr_warmup_steps, cfg.model) == (1e-3, "cosine", 30, {"head_prior": True})
    with pytest.raises(ConfigError, match="unknown training preset 'fast'; choose one of: paper, budget, cpu-fast"):
        training_preset("fast")


def test_train_command_reads_a_training_preset(tmp_path, monkeypatch, capsys):
    """``i2lmesh train --training-preset``: the preset, then the flags and --set on top; not with --config."""
    from types import SimpleNamespace

    from i2lmesh.cli import main

    seen = {}

    def fake_inputs(cfg, model_path=None, val=None):
        seen["cfg"] = cfg
        return SimpleNamespace(body_model=None, net=None, train_set=[0] * 4, val_set=None)

    monkeypatch.setattr("i2lmesh.engine.datasets.training_inputs", fake_inputs)
    monkeypatch.setattr("i2lmesh.engine.train.train", lambda cfg, *a, **k: tmp_path / "last.pt")
    assert main(["train", "--training-preset", "cpu-fast", "--data", "d", "--out", str(tmp_path), "--max-steps",
                 "7", "--device", "cpu", "--set", "lr=5e-4", "model.backbone_depth=34"]) == 0
    cfg = seen["cfg"]
    assert (cfg.lr, cfg.max_steps, cfg.lr_schedule, cfg.epochs, cfg.keep_epoch_checkpoints) == (5e-4, 7, "cosine",
                                                                                                  1000, False)
    assert cfg.model == {"head_prior": True, "backbone_depth": 34}
    (tmp_path / "c.yaml").write_text("lr: 0.001\n")
    assert main(["train", "--training-preset", "budget", "--config", str(tmp_path / "c.yaml"), "--data", "d"]) == 2
    assert "--config and --training-preset both give the training settings" in capsys.readouterr().err


def test_checkpoint_names_keep_their_old_import_path():
    import i2lmesh
    from i2lmesh.engine import checkpoint
    from i2lmesh.nets import factory

    for name in ("CheckpointError", "load_network", "save_network", "atomic_torch_save", "network_state"):
        assert getattr(factory, name) is getattr(checkpoint, name), name
    assert i2lmesh.load_network is checkpoint.load_network and i2lmesh.CheckpointError is checkpoint.CheckpointError
    with pytest.raises(AttributeError, match="has no attribute 'load_training_checkpoint'"):
        factory.load_training_checkpoint


def test_metrics_records_are_unchanged_in_form(tmp_path):
    """Step records: step, epoch, lr, loss, the loss terms, images_per_s, in that order, one per log_every_steps and
    at the last step."""
    train(_cfg(tmp_path, log_every_steps=3), ToyDataset(8), net=toy_network())
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [3, 4] and [r["epoch"] for r in records] == [1, 1]
    keys = list(records[0])
    assert keys[:4] == ["step", "epoch", "lr", "loss"] and keys[-1] == "images_per_s" and len(keys) > 5
    assert records[0]["lr"] == 1e-3 and records[0]["images_per_s"] > 0


@pytest.mark.parametrize("terminal", [False, True], ids=["piped", "terminal"])
def test_progress_is_a_bar_on_a_terminal_and_log_lines_elsewhere(tmp_path, capsys, caplog, monkeypatch, terminal):
    """Where stderr is not a terminal (a log file, CI) the progress is log lines, at most one every
    PLAIN_PROGRESS_EVERY_S (here 0: one per step record), no carriage-return redraws; on a terminal the tqdm bar."""
    from i2lmesh.engine import hooks as hooks_module

    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
    monkeypatch.setattr(hooks_module, "PLAIN_PROGRESS_EVERY_S", 0.0)
    with caplog.at_level("INFO", logger="i2lmesh.engine.hooks"):
        train(_cfg(tmp_path, log_every_steps=2), ToyDataset(8), net=toy_network())
    err = capsys.readouterr().err
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("train: step")]
    if terminal:
        assert lines == [] and "\r" in err and "train:" in err
    else:
        assert "\r" not in err and "it/s" not in err and "step/s" not in err, err
        # 8 samples, batch 4, 2 epochs: 4 steps, a step record every 2
        assert [line.split(",")[0] for line in lines] == ["train: step 2/4", "train: step 4/4"], lines
