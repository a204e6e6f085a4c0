"""Engine tests: learning, exact resume after kill -9, 2-process gloo DDP == 1 process, NaN stop."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from toy_data import ToyDataset, toy_network  # noqa: E402

from i2lmesh.engine.train import TrainConfig, TrainingDiverged, train  # noqa: E402
from i2lmesh.engine.trainer import EpochSampler  # noqa: E402
from i2lmesh.data.dataset import collate  # noqa: E402

TESTS = Path(__file__).parent


def _cfg(out, **kw):
    base = dict(out=str(out), batch_size=4, lr=1e-3, epochs=50, num_workers=0, device="cpu", log_every_steps=1,
                amp=False, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def _pose_error(net, data):
    """PoseNet's mean x/y error in bins on the whole (tiny) set, BN in batch mode as in training."""
    net.train()
    images, targets, _ = collate([data[i] for i in range(len(data.centres))])
    with torch.no_grad():
        out = net(images)
    return (out.joints_hm - targets.joints_hm)[..., :2].abs().mean().item()


def test_training_lowers_the_loss(tmp_path):
    torch.set_num_threads(2)
    data = ToyDataset(4, repeat=10)  # 4 samples seen 10 times per epoch: 10 steps between checkpoints
    net = toy_network()
    before = _pose_error(net, data)
    train(_cfg(tmp_path, max_steps=40, epochs=4, keep_epoch_checkpoints=False), data, net=net)
    after = _pose_error(net, data)
    assert after < 0.7 * before, (before, after)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 40
    assert sum(losses[-5:]) < 0.9 * sum(losses[:5]), losses
    assert (tmp_path / "checkpoints" / "last.pt").is_file()


def test_sampler_splits_the_global_batch_and_resumes():
    full = list(EpochSampler(10, 2, 0, 1, seed=5))
    r0, r1 = list(EpochSampler(10, 2, 0, 2, seed=5)), list(EpochSampler(10, 2, 1, 2, seed=5))
    assert sorted(r0 + r1) == sorted(full[:8])  # 2 batches of 2 x 2 ranks; the tail is dropped
    assert r0 == full[:8][0::2] and r1 == full[:8][1::2]
    s = EpochSampler(10, 2, 0, 1, seed=5)
    s.set_epoch(0, start_batch=3)
    assert list(s) == full[6:]
    s.set_epoch(1)
    assert list(s) != full


_KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys, torch
    sys.path.insert(0, {tests!r})
    torch.set_num_threads(1)
    from toy_data import ToyDataset, toy_network
    from i2lmesh.engine.train import TrainConfig, train
    cfg = TrainConfig(out={out!r}, batch_size=4, lr=1e-3, epochs=3, num_workers=0, device="cpu", amp=False,
                      seed=3, checkpoint_every_steps=2, log_every_steps=1, keep_epoch_checkpoints=False)
    def die(progress):
        if progress["step"] == 5:
            os.kill(os.getpid(), signal.SIGKILL)
    train(cfg, ToyDataset(16), net=toy_network(), resume={resume}, on_step=None if {resume} else die)
""")


def test_resume_after_kill_minus_9_reaches_the_same_weights(tmp_path):
    torch.set_num_threads(1)
    killed = tmp_path / "killed"
    run = subprocess.run([sys.executable, "-c", _KILL_SCRIPT.format(tests=str(TESTS), out=str(killed),
                                                                      resume=False)], capture_output=True, text=True)
    assert run.returncode == -9, run.stderr[-2000:]
    ckpt = torch.load(killed / "checkpoints" / "last.pt", weights_only=False)
    assert ckpt["progress"]["step"] == 4  # the last checkpoint before the kill
    run = subprocess.run([sys.executable, "-c", _KILL_SCRIPT.format(tests=str(TESTS), out=str(killed),
                                                                      resume=True)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    straight = tmp_path / "straight"
    net = toy_network()
    train(_cfg(straight, epochs=3, lr=1e-3, checkpoint_every_steps=2, keep_epoch_checkpoints=False), ToyDataset(16),
          net=net)
    resumed = torch.load(killed / "checkpoints" / "last.pt", weights_only=False)
    assert resumed["progress"]["step"] == 12  # 3 epochs x 4 batches
    for name, value in net.state_dict().items():
        assert torch.equal(value, resumed["model"][name]), name


_DDP_SCRIPT = textwrap.dedent("""
    import os, sys, torch
    sys.path.insert(0, {tests!r})
    torch.set_num_threads(1)
    from toy_data import ToyDataset, toy_network
    from i2lmesh.engine.train import TrainConfig, train

    class Float64Toy(ToyDataset):  # the same samples, images in float64 (targets are promoted by the losses)
        def __getitem__(self, i):
            image, targets, meta = super().__getitem__(i)
            return image.double(), targets, meta

    cfg = TrainConfig(out={out!r}, batch_size={batch}, lr=1e-3, max_steps=2, num_workers=0, device="cpu", amp=False,
                      seed=3, freeze_bn=True, log_every_steps=1, keep_epoch_checkpoints=False)
    train(cfg, Float64Toy(16), net=toy_network().double())
""")


def test_two_process_gloo_ddp_equals_one_process(tmp_path):
    """Two gloo processes with batch 2 each must take the same two Adam steps as one process with batch 4.

    Compared in float64: the two runs differ only in the order of the gradient sums (DDP all-reduces per-rank sums),
    which moves gradients by ~1e-16 relative. In float32 that noise (~1e-7) is comparable to Adam's eps (1e-8) for
    the parameters whose exact gradient is 0 (the softmax-invariant biases of the 1x1 heatmap convs), so Adam moves
    them by up to +-lr at random; in float64 such a parameter moves by at most lr * g / eps ~ lr * 1e-8. Every other
    parameter's update differs by ~lr * 1e-12. Hence the bound: every element within 1e-6 * lr of the other run.
    """
    one, two = tmp_path / "one", tmp_path / "two"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", _DDP_SCRIPT.format(tests=str(TESTS), out=str(one), batch=4)],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    script = tmp_path / "ddp.py"
    script.write_text(_DDP_SCRIPT.format(tests=str(TESTS), out=str(two), batch=2))
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29561",
                        str(script)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    a = torch.load(one / "checkpoints" / "last.pt", weights_only=False)
    b = torch.load(two / "checkpoints" / "last.pt", weights_only=False)
    assert a["progress"] == b["progress"] == {"epoch": 0, "batch": 2, "step": 2}
    init = toy_network().double().state_dict()
    lr = 1e-3
    keys = [k for k in a["model"] if a["model"][k].is_floating_point()]
    assert all(a["model"][k].dtype == torch.float64 for k in keys)
    worst = max((a["model"][k] - b["model"][k]).abs().max().item() for k in keys)
    moved = max((a["model"][k] - init[k]).abs().max().item() for k in keys)
    assert moved > 0.5 * lr, moved  # the runs did train (Adam's first steps move elements by up to ~lr each)
    assert worst < 1e-6 * lr, worst / lr


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_checkpoint(tmp_path):
    data = ToyDataset(8)
    net = toy_network()
    train(_cfg(tmp_path, max_steps=2, epochs=1, keep_epoch_checkpoints=False), data, net=net)
    good = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=False)
    with torch.no_grad():
        net.mesh_net.conv_x.weight.fill_(float("nan"))
    with pytest.raises(TrainingDiverged, match=r"step \d+: loss is nan"):
        train(_cfg(tmp_path, max_steps=4, epochs=2, keep_epoch_checkpoints=False), data, net=net)
    kept = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=False)
    assert kept["progress"] == good["progress"]


def test_resume_with_nothing_to_resume_touches_nothing(tmp_path):
    from i2lmesh import CheckpointError

    out = tmp_path / "typo"
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train(_cfg(out, max_steps=1), ToyDataset(4), net=toy_network(), resume=True)
    assert not out.exists()
