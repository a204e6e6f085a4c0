"""Output files of the demo and the writers (issue 10, kinds 7 and 8): atomic writes (a failure mid-write leaves no
truncated file under the final name, no temporary file, and an older file intact), unreadable videos (one line
of ours, no FFmpeg/OpenCV log line, no frames folder, no overlay video) and the overlay video of a good one."""
from __future__ import annotations

import builtins
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import i2lmesh.inference.video  # noqa: F401  (quiets FFmpeg before this module's own cv2 video calls)
from i2lmesh import save_network
from tiny_net import tiny_net as _tiny_net

pytestmark = pytest.mark.usefixtures("one_thread")

FFMPEG_LOG_MARKERS = ("moov atom", " @ 0x", "[ WARN", "[ERROR", "OpenCV(")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny_body.pt"
    save_network(_tiny_net(), path)
    return path


def _image(h=64, w=64, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _write_video(path, frames=4, size=64) -> None:
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (size, size))
    for i in range(frames):
        writer.write(_image(size, size, seed=i))
    writer.release()
    assert path.stat().st_size > 0


def _count_frames(path) -> int:
    import cv2

    capture, n = cv2.VideoCapture(str(path)), 0
    while capture.read()[0]:
        n += 1
    capture.release()
    return n


def _hidden_files(folder) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*"))


# ----------------------------------------------------------------------------------------------------------------
# Atomic writers


class _DiskFullAfterHalf:
    """A writable file that writes the first half of the first ``write`` and then fails like a full disk. No
    ``fileno`` (so PIL and friends write through ``write``)."""

    def __init__(self, fh) -> None:
        self._fh = fh

    def write(self, data):
        self._fh.write(data[:max(1, len(data) // 2)])
        self._fh.flush()
        raise OSError(28, "No space left on device")

    def fileno(self):
        raise AttributeError("fileno")

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()


def _failing_open(file, mode="r", *args, **kwargs):
    fh = builtins.open(file, mode, *args, **kwargs)
    return _DiskFullAfterHalf(fh) if any(c in mode for c in "wax") else fh


def _person():
    rng = np.random.default_rng(1)
    return rng.normal(size=(40, 3)), rng.integers(0, 40, (60, 3))


def _writers():
    from i2lmesh.commands.demo import _save_png
    from i2lmesh.export import meshes

    mesh = _person()
    return {
        "x.obj": lambda p: meshes.write_obj(p, [mesh]),
        "x.ply": lambda p: meshes.write_ply(p, [mesh], {"uncertainty_mm": [np.arange(40)]}),
        "x.glb": lambda p: meshes.write_glb(p, [mesh]),
        "x.json": lambda p: meshes.write_results_json(p, [], {"input": "x.png"}),
        "x.npz": lambda p: meshes.write_results_npz(p, []),
        "x_overlay.png": lambda p: _save_png(p, _image()),
    }


@pytest.mark.parametrize("name", ["x.obj", "x.ply", "x.glb", "x.json", "x.npz", "x_overlay.png"])
def test_writer_failing_mid_write_leaves_old_file_and_no_temp(name, tmp_path, monkeypatch):
    import i2lmesh.commands.demo as demo
    import i2lmesh.export.atomic as atomic
    import i2lmesh.export.meshes as meshes

    write = _writers()[name]
    path = tmp_path / name
    write(path)  # a complete file, as an earlier run leaves it
    good = path.read_bytes()
    assert good and sorted(p.name for p in tmp_path.iterdir()) == [name]

    for module in (meshes, atomic, demo):
        monkeypatch.setattr(module, "open", _failing_open, raising=False)
    with pytest.raises(OSError, match="No space left"):
        write(path)
    assert path.read_bytes() == good  # the older file is intact, not half-overwritten
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # and no temporary file is left

    path.unlink()
    with pytest.raises(OSError, match="No space left"):
        write(path)
    assert list(tmp_path.iterdir()) == []  # nothing under the final name


def test_atomic_write_replaces_on_success_and_cleans_up_on_interrupt(tmp_path):
    from i2lmesh.export.atomic import atomic_write, atomic_write_bytes

    path = tmp_path / "a.bin"
    atomic_write_bytes(path, b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_write(path) as tmp:
            assert tmp.parent == tmp_path and tmp.name.startswith(".") and tmp.suffix == ".bin"
            tmp.write_bytes(b"new but half")
            raise KeyboardInterrupt
    assert path.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["a.bin"]
    with atomic_write(path) as tmp:
        tmp.write_bytes(b"new")
        assert path.read_bytes() == b"old"  # not visible before the body completes
    assert path.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["a.bin"]
    assert (path.stat().st_mode & 0o777) == (0o666 & ~_umask())  # usual permissions, not mkstemp's 0600


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_video_writer_renames_only_a_complete_video(tmp_path):
    from i2lmesh.inference.video import VideoWriter

    path = tmp_path / "v_overlay.mp4"
    with VideoWriter(path, 10.0) as writer:
        for i in range(3):
            writer.write(_image(31, 33, seed=i))  # odd sizes are padded
            assert not path.exists() and writer.tmp_path.suffix == ".mp4" and writer.tmp_path.exists()
    assert _count_frames(path) == 3 and _hidden_files(tmp_path) == []
    good = path.read_bytes()

    with pytest.raises(RuntimeError):
        with VideoWriter(path, 10.0) as writer:
            writer.write(_image(seed=5))
            raise RuntimeError("killed mid-video")
    assert path.read_bytes() == good and _hidden_files(tmp_path) == []

    with VideoWriter(tmp_path / "none.mp4", 10.0):
        pass  # no frame: no file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v_overlay.mp4"]


# ----------------------------------------------------------------------------------------------------------------
# The demo on videos


def _clean_env() -> dict:
    """The environment without OpenCV settings (importing i2lmesh.inference.video sets OPENCV_FFMPEG_LOGLEVEL in
    this process; a child must show that the demo silences FFmpeg by itself)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("OPENCV_")}


def _random_bytes(path, n=5000, seed=0):
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, n, np.uint8).tobytes())


def test_demo_unreadable_video_no_ffmpeg_log_in_a_subprocess(checkpoint, tmp_path):
    """FFmpeg writes to file descriptor 2, past capsys: run the real command. Only the bad video, so the child
    does not compile the overlay renderer (the good input's outputs are checked in-process below)."""
    _random_bytes(tmp_path / "bad.mp4")
    # Control: without our setting, FFmpeg does print its line for this file (so the check below can fail).
    control = subprocess.run([sys.executable, "-c", "import cv2, sys; cv2.VideoCapture(sys.argv[1])",
                              str(tmp_path / "bad.mp4")], capture_output=True, text=True, env=_clean_env(),
                             timeout=60)
    assert "moov atom not found" in control.stderr

    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "i2lmesh.cli", "demo", str(tmp_path / "bad.mp4"), "--checkpoint",
                           str(checkpoint), "--out", str(out), "--bbox", "10,10,40,40", "--no-progress",
                           "--threads", "1"], capture_output=True, text=True, env=_clean_env(), timeout=120)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.splitlines()
    ours = [line for line in lines if line.startswith("i2lmesh demo:")]
    assert len(ours) == 1 and "bad.mp4" in ours[0] and "not a readable video" in ours[0], proc.stderr
    assert not any(marker in line for line in lines for marker in FFMPEG_LOG_MARKERS), proc.stderr
    assert all(line in ours or line.startswith("demo: ") for line in lines), proc.stderr  # nothing else
    assert list(out.iterdir()) == []  # no bad_frames/, no bad_overlay.mp4, no temporary file


def test_demo_unreadable_video_skipped_others_complete(checkpoint, tmp_path, capsys):
    from PIL import Image

    from i2lmesh.cli import main

    _random_bytes(tmp_path / "bad.mp4")
    Image.fromarray(_image()).save(tmp_path / "good.png")
    out = tmp_path / "out"
    code = main(["demo", str(tmp_path / "bad.mp4"), str(tmp_path / "good.png"), "--checkpoint", str(checkpoint),
                 "--out", str(out), "--bbox", "10,10,40,40", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    ours = [line for line in err.splitlines() if line.startswith("i2lmesh demo:")]
    assert len(ours) == 1 and "bad.mp4" in ours[0] and "not a readable video" in ours[0], err
    assert "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["good.glb", "good.json", "good.mtl", "good.obj",
                                                      "good_overlay.png"]


def test_demo_video_outputs_and_zero_frame_video(checkpoint, tmp_path, capsys):
    from i2lmesh.cli import main

    _write_video(tmp_path / "clip.mp4", frames=4)
    _random_bytes(tmp_path / "noframes.m4v")  # FFmpeg opens it (raw MPEG-4) but decodes no frame
    out = tmp_path / "out"
    code = main(["demo", str(tmp_path / "noframes.m4v"), str(tmp_path / "clip.mp4"), "--checkpoint",
                 str(checkpoint), "--out", str(out), "--bbox", "10,10,40,40", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    ours = [line for line in err.splitlines() if line.startswith("i2lmesh demo:")]
    assert len(ours) == 1 and "noframes.m4v" in ours[0] and "not a readable video" in ours[0], err
    assert not (out / "noframes_frames").exists() and not (out / "noframes_overlay.mp4").exists()
    assert _count_frames(out / "clip_overlay.mp4") == 4
    assert sorted(p.name for p in (out / "clip_frames").iterdir()) == [f"frame_{i:06d}.json" for i in range(4)]
    doc = json.loads((out / "clip_frames" / "frame_000000.json").read_text())
    assert doc["frame"] == 0 and doc["num_people"] == 1
    assert _hidden_files(out) == []


def test_demo_video_failing_mid_way_keeps_older_overlay(checkpoint, tmp_path, monkeypatch, capsys):
    from i2lmesh.cli import main
    from i2lmesh.inference.predictor import Predictor

    _write_video(tmp_path / "clip.mp4", frames=4)
    out = tmp_path / "out"
    argv = ["demo", str(tmp_path / "clip.mp4"), "--checkpoint", str(checkpoint), "--out", str(out), "--bbox",
            "10,10,40,40", "--no-progress"]
    assert main(argv) == 0
    older = (out / "clip_overlay.mp4").read_bytes()

    predict, calls = Predictor.predict, []

    def predict_then_crash(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("crash on frame 2")
        return predict(self, *args, **kwargs)

    monkeypatch.setattr(Predictor, "predict", predict_then_crash)
    assert main(argv) == 1
    assert "crash on frame 2" in capsys.readouterr().err
    assert (out / "clip_overlay.mp4").read_bytes() == older  # not replaced by a truncated video
    assert _hidden_files(out) == []  # the temporary video is gone


def test_render_overlay_is_still_the_function_once_the_pictures_module_is_loaded():
    # A submodule named like a package attribute replaces it on import (render.overlay was shadowed once).
    import i2lmesh.render.pictures  # noqa: F401
    from i2lmesh import render

    image = np.zeros((2, 2, 3), np.uint8)
    result = render.RenderResult(color=np.ones((2, 2, 3), np.float32), depth_m=np.ones((2, 2), np.float32),
                                 mask=np.array([[True, False], [False, False]]), backend="numba")
    out = render.overlay(image, result, alpha=1.0)
    assert out[0, 0].tolist() == [255, 255, 255] and out[1, 1].tolist() == [0, 0, 0]
