"""``i2lmesh demo`` as a user sees it (issue 16): with a progress bar on screen, a failed input's ``skipped: ...``
line (and any log line) is printed on a line of its own above the bar (through ``tqdm.write``), never appended
to the bar's line; several people of one image are separate objects of the OBJ/GLB, named as the JSON's people
(``mesh_name``), with their own vertices. Tiny random networks and generated images only; the check on a real
photo skips when ``../shared/photos`` is absent."""
from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from i2lmesh import save_network
from tiny_net import tiny_net as _tiny_net

pytestmark = pytest.mark.usefixtures("one_thread")

PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "photos"
BOXES = {"good.png": [[4, 4, 40, 52], [30, 10, 30, 44]], "nobody.png": []}  # two people, and nobody


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny_body.pt"
    save_network(_tiny_net(), path)
    return path


def _inputs(folder: Path) -> Path:
    """good.png and nobody.png (random pixels), an empty bad.jpg and a text file named notes.png."""
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("good.png", "nobody.png"):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(folder / name)
    (folder / "bad.jpg").write_bytes(b"")
    (folder / "notes.png").write_text("not an image\n")
    boxes = folder.parent / "boxes.json"
    boxes.write_text(json.dumps(BOXES))
    return boxes


def _spy_on_tqdm_write(monkeypatch) -> list[tuple[str, object, int]]:
    """Record every ``tqdm.write`` call (message, file, bars open at the time) and still write."""
    import tqdm

    original = tqdm.tqdm.write
    calls: list[tuple[str, object, int]] = []

    def write(s, file=None, end="\n", nolock=False):
        calls.append((s, file, len(getattr(tqdm.tqdm, "_instances", ()))))
        return original(s, file=file, end=end, nolock=nolock)

    monkeypatch.setattr(tqdm.tqdm, "write", write)
    return calls


def test_skipped_and_log_lines_go_above_the_bar_not_onto_it(checkpoint, tmp_path, capsys, monkeypatch):
    from i2lmesh.cli import main

    boxes = _inputs(tmp_path / "in")
    calls = _spy_on_tqdm_write(monkeypatch)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # a terminal: bars are drawn only there
    # The CLI's console handler (logging.basicConfig does nothing under pytest, whose handlers are installed).
    root, handler = logging.getLogger(), logging.StreamHandler(sys.stderr)
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        code = main(["demo", str(tmp_path / "in"), "--checkpoint", str(checkpoint), "--boxes", str(boxes),
                     "--out", str(tmp_path / "out")])  # the progress bar is on (no --no-progress)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    err = capsys.readouterr().err
    assert code == 1, err
    assert "demo:" in err and "/4" in err, err  # the bar was drawn: "demo: ...| 1/4 ..."
    assert not any(type(h).__name__ == "_TqdmLoggingHandler" for h in root.handlers)  # redirection undone

    written = list(calls)
    skipped = [c for c in written if c[0].startswith("i2lmesh demo: skipped")]
    assert [c[0].split(": ")[-2].rsplit("/", 1)[-1] for c in skipped] == ["bad.jpg", "notes.png"], written
    assert all(file is sys.stderr and bars >= 1 for _, file, bars in skipped), written  # bar on screen
    nobody = [c for c in written if "nobody.png: no body found" in c[0]]
    assert len(nobody) == 1 and nobody[0][2] >= 1, written  # the log line too, through tqdm's redirection
    # On the terminal: every such line starts a line (tqdm.write clears the bar's line first), none follows the
    # bar's text (before the fix: "... 0/4 [00:00<?, ?input/s]i2lmesh demo: skipped: ...").
    assert err.count("i2lmesh demo: skipped") == 2 and err.count("no body found") == 1, err
    for m in re.finditer(r"i2lmesh demo: skipped|demo: \S+nobody\.png", err):
        assert m.start() == 0 or err[m.start() - 1] in "\r\n", repr(err[max(0, m.start() - 60):m.end()])
    assert "]i2lmesh" not in err and "]demo:" not in err, err


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal+--no-progress", "piped"])
def test_without_a_bar_the_lines_are_printed_as_before(checkpoint, tmp_path, capsys, monkeypatch, terminal):
    """No bar with ``--no-progress``, nor when stderr is not a terminal (a log file, CI): the lines alone."""
    from i2lmesh.cli import main

    boxes = _inputs(tmp_path / "in")
    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
    code = main(["demo", str(tmp_path / "in"), "--checkpoint", str(checkpoint), "--boxes", str(boxes),
                 "--out", str(tmp_path / "out")] + (["--no-progress"] if terminal else []))
    err = capsys.readouterr().err
    assert code == 1
    lines = err.splitlines()
    assert sum(line.startswith("i2lmesh demo: skipped") for line in lines) == 2, err
    assert "\r" not in err and "it/s" not in err and "input/s" not in err, err


def test_demo_obj_and_glb_have_one_object_per_person_named_as_in_the_json(checkpoint, tmp_path, capsys):
    import trimesh

    from i2lmesh.cli import main

    boxes = _inputs(tmp_path / "in")
    out = tmp_path / "out"
    code = main(["demo", str(tmp_path / "in" / "good.png"), "--checkpoint", str(checkpoint), "--boxes", str(boxes),
                 "--out", str(out), "--no-progress", "--npz"])
    assert code == 0, capsys.readouterr().err
    doc = json.loads((out / "good.json").read_text())
    names = [person["mesh_name"] for person in doc["people"]]
    assert names == ["person_0", "person_1"]
    vertices = np.load(out / "good.npz")["vertices_m"]  # (2, V, 3), the people in the JSON's order
    faces = np.load(out / "good.npz")["faces"]
    assert not np.allclose(vertices[0], vertices[1], atol=1e-3)  # two different people: a mix-up would show

    scene = trimesh.load(out / "good.obj", process=False)  # trimesh's default reading: one mesh per material
    assert isinstance(scene, trimesh.Scene) and sorted(scene.geometry) == names
    for i, name in enumerate(names):
        mesh = scene.geometry[name]
        assert len(mesh.vertices) == doc["people"][i]["num_vertices"] == len(vertices[i])
        np.testing.assert_allclose(mesh.vertices, vertices[i], rtol=0, atol=5.01e-7)  # 6 decimals
        np.testing.assert_array_equal(mesh.faces, faces)
    split = trimesh.load(out / "good.obj", process=False, split_objects=True)  # by the "o" lines
    assert len(split.geometry) == 2
    assert sorted(len(m.vertices) for m in split.geometry.values()) == [len(vertices[0]), len(vertices[1])]
    text = (out / "good.obj").read_text()
    assert [line for line in text.splitlines() if line[:2] in ("o ", "g ")] == \
        ["o person_0", "g person_0", "o person_1", "g person_1"]
    assert "mtllib good.mtl" in text and (out / "good.mtl").read_text().count("newmtl person_") == 2

    glb = trimesh.load(out / "good.glb", process=False, force="scene")
    assert sorted(glb.geometry) == names and sorted(glb.graph.nodes_geometry) == names
    for i, name in enumerate(names):
        assert len(glb.geometry[name].vertices) == len(vertices[i])
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary file left

    # A later run that finds nobody in the same image removes the meshes and their material file.
    (tmp_path / "boxes.json").write_text(json.dumps({"good.png": []}))
    assert main(["demo", str(tmp_path / "in" / "good.png"), "--checkpoint", str(checkpoint), "--boxes",
                 str(tmp_path / "boxes.json"), "--out", str(out), "--no-progress"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["good.json", "good_overlay.png"]


@pytest.mark.skipif(not (PHOTOS / "basketball1.png").is_file(), reason=f"{PHOTOS}/basketball1.png is absent "
                    "(real photos are kept outside the project)")
def test_real_photo_people_are_separate_objects(tmp_path, capsys):
    """--method fit on a real photo of two people: as many OBJ objects as JSON people, named alike, each with its
    own vertices (compared with the NPZ)."""
    import trimesh

    from i2lmesh.cli import main

    out = tmp_path / "out"
    code = main(["demo", str(PHOTOS / "basketball1.png"), "--method", "fit", "--out", str(out), "--no-progress",
                 "--npz"])
    assert code == 0, capsys.readouterr().err
    doc = json.loads((out / "basketball1.json").read_text())
    if doc["num_people"] < 2:
        pytest.skip(f"the detector found {doc['num_people']} people here (needs 2 for this check)")
    names = [person["mesh_name"] for person in doc["people"]]
    vertices = np.load(out / "basketball1.npz")["vertices_m"]
    scene = trimesh.load(out / "basketball1.obj", process=False)
    assert sorted(scene.geometry) == sorted(names)
    for i, name in enumerate(names):
        np.testing.assert_allclose(scene.geometry[name].vertices, vertices[i], rtol=0, atol=5.01e-7)
