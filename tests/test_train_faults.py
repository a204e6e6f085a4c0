"""Training faults (issue 14): the seed fixes a run bit for bit, SIGTERM/SIGINT save a checkpoint and resume exactly
(from the command line), stale temporary files go on start, workers end with their parent, a run folder is locked."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from toy_data import ToyDataset, toy_network  # noqa: E402

from i2lmesh.cli import main  # noqa: E402
from i2lmesh.engine.train import RunFolderInUse, TrainConfig, TrainingInterrupted, train  # noqa: E402
from i2lmesh.engine.trainer import run_folder_lock  # noqa: E402

TESTS = Path(__file__).parent
ENV = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")  # the same threads in every run: same sums
# A tiny network on 8 synthetic samples, batch 2: 4 steps per epoch, 6 steps cross an epoch end. One DataLoader
# worker, so worker seeding and workers' signal handling are part of the runs.
TRAIN_ARGS = ["--preset", "cpu-small", "--max-steps", "6", "--device", "cpu", "--set", "batch_size=2",
              "num_workers=1", "log_every_steps=1", "keep_epoch_checkpoints=false", "seed=7", "model.input_size=64",
              "model.depth_bins=8", "model.deconv_channels=16"]


def _cli(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "i2lmesh.cli", "train", "--data", str(data), "--out", str(out), *TRAIN_ARGS, *extra]


def _weights(run: Path) -> dict:
    return torch.load(run / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)


def _assert_same_state(a: dict, b: dict) -> None:
    assert a["progress"] == b["progress"]
    assert a["model"].keys() == b["model"].keys()
    for name, value in a["model"].items():
        assert torch.equal(value, b["model"][name]), name
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        for key, value in sa.items():
            assert torch.equal(value, sb[key]), key


def _losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
            if "loss" in r}


@pytest.fixture(scope="module")
def synth_data(tmp_path_factory, anny_body):
    data = tmp_path_factory.mktemp("faults") / "data"
    assert main(["synth", "--out", str(data), "--kind", "body", "--num", "8", "--seed", "1", "--size", "64",
                 "--workers", "1", "--no-progress"]) == 0
    return data


@pytest.fixture(scope="module")
def reference_run(synth_data):
    """An uninterrupted command-line run."""
    out = synth_data.parent / "reference"
    r = subprocess.run(_cli(synth_data, out), capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def test_two_cli_runs_with_the_same_arguments_are_bit_identical(synth_data, reference_run, tmp_path):
    again = tmp_path / "again"
    r = subprocess.run(_cli(synth_data, again), capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    assert _losses(again) == _losses(reference_run) and len(_losses(again)) == 6
    _assert_same_state(_weights(again), _weights(reference_run))


def test_sigterm_saves_a_checkpoint_and_cli_resume_equals_the_uninterrupted_run(synth_data, reference_run,
                                                                                  tmp_path):
    out = tmp_path / "preempted"
    metrics = out / "metrics.jsonl"
    # its own process group, signalled as a whole: what schedulers (and Ctrl-C) do; the worker gets it too
    proc = subprocess.Popen(_cli(synth_data, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=ENV, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not (metrics.is_file() and metrics.read_text().count("\n") >= 1):  # step 1 done
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGTERM)
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 143, stderr[-3000:]
    step = _weights(out)["progress"]["step"]
    assert 1 <= step < 6
    assert f"received SIGTERM: saved checkpoint at step {step}" in stderr and "resume with --resume" in stderr
    assert "Traceback" not in stderr
    r = subprocess.run(_cli(synth_data, out, "--resume"), capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr[-3000:]
    _assert_same_state(_weights(out), _weights(reference_run))
    assert _losses(out) == _losses(reference_run)  # steps 1..step before, step+1..6 after the resume


def _cfg(out: Path, **kw) -> TrainConfig:
    base = dict(out=str(out), batch_size=4, lr=1e-3, epochs=2, num_workers=0, device="cpu", log_every_steps=1,
                amp=False, seed=3)
    base.update(kw)
    return TrainConfig(**base)


@pytest.fixture(scope="module")
def toy_straight(tmp_path_factory):
    """8 toy samples, batch 4, 2 epochs: 4 steps, epoch ends after steps 2 and 4."""
    out = tmp_path_factory.mktemp("toy") / "straight"
    torch.set_num_threads(1)
    train(_cfg(out), ToyDataset(8), net=toy_network())
    return out


@pytest.mark.parametrize("stop_at", [1, 2, 4])  # inside an epoch, at an epoch's last step, at the last step
def test_sigint_saves_at_the_step_boundary_and_resume_is_exact(toy_straight, tmp_path, stop_at):
    torch.set_num_threads(1)
    before = signal.getsignal(signal.SIGINT)

    def ctrl_c(progress):
        if progress["step"] == stop_at:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(TrainingInterrupted, match=rf"received SIGINT: saved checkpoint at step {stop_at} ") as info:
        train(_cfg(tmp_path), ToyDataset(8), net=toy_network(), on_step=ctrl_c)
    assert info.value.exit_code == 130 and info.value.step == stop_at
    assert signal.getsignal(signal.SIGINT) is before  # the handler is put back
    assert _weights(tmp_path)["progress"]["step"] == stop_at
    train(_cfg(tmp_path), ToyDataset(8), net=toy_network(), resume=True)
    _assert_same_state(_weights(tmp_path), _weights(toy_straight))
    assert _losses(tmp_path) == _losses(toy_straight)
    for name in ("epoch_000.pt", "epoch_001.pt"):  # also the epoch ends a signal cut short (done on resume)
        _assert_same_state(torch.load(tmp_path / "checkpoints" / name, weights_only=False),
                           torch.load(toy_straight / "checkpoints" / name, weights_only=False))


def test_stale_temporary_files_are_removed_on_start(tmp_path):
    ckpt = tmp_path / "checkpoints"
    ckpt.mkdir(parents=True)
    stale = [ckpt / "last.pt.k3j_9x0q.tmp", ckpt / "epoch_003.pt.abcdefgh.tmp"]  # atomic_torch_save's names
    kept = [ckpt / "notes.tmp", ckpt / "last.pt.tmp", ckpt / "readme.txt", tmp_path / "last.pt.abcdefgh.tmp"]
    for path in stale + kept:
        path.write_bytes(b"x" * 1000)
    train(_cfg(tmp_path, max_steps=1, keep_epoch_checkpoints=False), ToyDataset(8), net=toy_network())
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in kept)
    assert sorted(p.name for p in ckpt.iterdir() if p.name.endswith(".tmp")) == ["last.pt.tmp", "notes.tmp"]


def test_a_locked_run_folder_is_refused_with_one_line(synth_data, tmp_path, capsys):
    with run_folder_lock(tmp_path):  # as a running training run holds it
        with pytest.raises(RunFolderInUse, match=rf"is in use by another training run \(pid {os.getpid()}\)"):
            train(_cfg(tmp_path, max_steps=1), ToyDataset(8), net=toy_network())
        capsys.readouterr()
        assert main(["train", "--data", str(synth_data), "--out", str(tmp_path), *TRAIN_ARGS]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1] == (f"i2lmesh train: error: {tmp_path} is in use by another training run (pid {os.getpid()}); "
                           f"wait for it to end or choose another --out"), err
    assert not (tmp_path / "checkpoints" / "last.pt").exists()
    # released: the next run may use the folder
    train(_cfg(tmp_path, max_steps=1, keep_epoch_checkpoints=False), ToyDataset(8), net=toy_network())


_WORKERS_SCRIPT = textwrap.dedent("""
    import os, sys, time, torch
    sys.path.insert(0, {tests!r})
    torch.set_num_threads(1)
    from toy_data import ToyDataset, toy_network
    from i2lmesh.engine.train import TrainConfig, train

    class Stuck(ToyDataset):  # every worker announces itself, then works on a sample for a long time
        def __getitem__(self, i):
            open(os.path.join({pids!r}, str(os.getpid())), "w").close()
            time.sleep(120)
            return super().__getitem__(i)

    cfg = TrainConfig(out={out!r}, batch_size=2, max_steps=1, num_workers=2, device="cpu", amp=False)
    train(cfg, Stuck(8), net=toy_network())
""")


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")  # a zombie has ended


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_dataloader_workers_end_with_their_parent(tmp_path):
    pids = tmp_path / "pids"
    pids.mkdir()
    script = _WORKERS_SCRIPT.format(tests=str(TESTS), pids=str(pids), out=str(tmp_path / "run"))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=ENV)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 300
        while len(list(pids.iterdir())) < 2:  # both workers inside a (2-minute) sample
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1][-3000:]
            time.sleep(0.05)
        workers = [int(p.name) for p in pids.iterdir()]
        assert all(_alive(pid) for pid in workers)
        proc.kill()  # SIGKILL: no Python cleanup in the parent
        proc.wait()
        deadline = time.monotonic() + 3  # torch's own parent check would take ~2 minutes here (the sample's sleep)
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(pid) for pid in workers)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in workers:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
