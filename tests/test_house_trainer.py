"""Exact resume with gradient accumulation (issue 12): an epoch whose batches do not fill its last optimizer step
leaves accumulated gradients that join the next epoch's first step; its checkpoint carries them."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from toy_data import ToyDataset, toy_network  # noqa: E402

from i2lmesh.engine.train import TrainConfig, train  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(out: Path) -> TrainConfig:
    # 12 samples in batches of 2: 6 micro-batches an epoch, 4 a step: every epoch ends 2 micro-batches into a step
    return TrainConfig(out=str(out), batch_size=2, grad_accum_steps=4, lr=1e-3, epochs=3, num_workers=0,
                       device="cpu", log_every_steps=1, amp=False, seed=3, keep_epoch_checkpoints=False)


def test_resume_from_an_epoch_end_inside_an_accumulation_equals_an_uninterrupted_run(tmp_path):
    straight = toy_network()
    train(_cfg(tmp_path / "straight"), ToyDataset(12), net=straight)

    class Stop(Exception):
        pass

    def stop(progress):
        if progress["step"] == 2:  # in epoch 1, after the epoch-0 checkpoint (no step checkpoints)
            raise Stop

    out = tmp_path / "interrupted"
    with pytest.raises(Stop):
        train(_cfg(out), ToyDataset(12), net=toy_network(), on_step=stop)
    saved = torch.load(out / "checkpoints" / "last.pt", weights_only=False)
    assert saved["progress"] == {"epoch": 1, "batch": 0, "step": 1}
    remainder = saved["grad_remainder"]
    assert remainder["world_size"] == 1 and any(g is not None and g.abs().sum() > 0 for g in remainder["grads"][0])
    resumed = toy_network()
    train(_cfg(out), ToyDataset(12), net=resumed, resume=True)
    final = torch.load(out / "checkpoints" / "last.pt", weights_only=False)
    assert final["progress"] == {"epoch": 3, "batch": 0, "step": 3}
    for name, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[name]), name
