"""The table "Bad input: one line, no traceback, the other inputs still complete" of docs/inference.md, as a test.

One parametrised case per row of that table (and per sub-case of a row). Each case runs ``i2lmesh demo`` in-process
on files written to tmp_path, together with one good image, and checks what the table documents: the exit code (0
every input done, 1 some input skipped, 2 the run stops), exactly the documented ``i2lmesh demo:`` line(s) on
stderr naming the input and the problem, no traceback (nor FFmpeg/OpenCV log lines), and the good image's outputs
(or, for a run that stops, no outputs at all). A tiny random network (64 px input) stands in for a trained one;
boxes are given with ``--bbox`` or ``--boxes`` except where the row is about detection.
"""
from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from i2lmesh import save_network
from tiny_net import tiny_net as _tiny_net

pytestmark = pytest.mark.usefixtures("one_thread")

GOOD_BOX = "60,25,50,70"  # inside the 160 x 120 test images (and inside their 120 x 160 EXIF-rotated version)
OUTPUT_SUFFIXES = ("_overlay.png", ".obj", ".glb", ".json")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("ckpt")
    paths = {"body": folder / "tiny_body.pt", "hand": folder / "tiny_hand.pt"}
    save_network(_tiny_net("body"), paths["body"])
    save_network(_tiny_net("hand"), paths["hand"])
    return paths


def _picture(width: int = 160, height: int = 120, seed: int = 0) -> np.ndarray:
    """A smooth colourful picture (RGB uint8): a gradient with a bright disc, so conversions keep some content."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255.0 / width, y * 255.0 / height, np.full_like(x, 128.0)], -1)
    cx, cy = rng.uniform(0.3, 0.7) * width, rng.uniform(0.3, 0.7) * height
    image[(x - cx) ** 2 + (y - cy) ** 2 < (0.2 * min(width, height)) ** 2] = (240, 220, 200)
    return image.astype(np.uint8)


def _save(array: np.ndarray, path: Path, **kwargs) -> Path:
    from PIL import Image

    Image.fromarray(array).save(path, **kwargs)
    return path


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height RGB pixels (the pixel data is a few bytes)."""
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _png_chunk(b"IEND", b""))


def _strict_json(path: Path):
    """json.loads that rejects NaN / Infinity (JSON has no such literals)."""
    def reject(literal):
        raise ValueError(f"{path.name}: non-finite number {literal} in JSON")

    return json.loads(path.read_text(), parse_constant=reject)


# ----------------------------------------------------------------------------------------------------------------
# The rows


@dataclass
class Row:
    """One row (or sub-case) of the table.

    make(tmp, ckpt) writes the bad input(s) and returns (inputs before the good image, extra options); the good
    image and ``--checkpoint`` are added by the test (``ckpt`` may be replaced through the options, the last
    ``--checkpoint`` wins). ``bad`` is the file name the one-line message must name (None: nothing to name),
    ``problem`` the words of the problem. ``good_done``: the good image's outputs must exist (False: the run stops
    and writes nothing). ``lines``: the number of ``i2lmesh demo:`` lines (1 for a bad input, 0 when nothing is
    wrong). ``check(out, tmp)``: further checks of the outputs.
    """

    id: str
    make: Callable[[Path, dict], tuple[list[str], list[str]]]
    code: int
    bad: str | None = None
    problem: tuple[str, ...] = ()
    good_done: bool = True
    lines: int = 1
    check: Callable[[Path, Path], None] | None = None
    needs: tuple[str, ...] = field(default_factory=tuple)  # "no-mediapipe", "no-cuda"
    with_good: bool = True  # False: the good image is not among the inputs


def _box(*extra: str) -> list[str]:
    return ["--bbox", GOOD_BOX, *extra]


def _file(name: str, data: bytes | Callable[[Path], None]):
    def make(tmp: Path, ckpt: dict):
        path = tmp / name
        data(path) if callable(data) else path.write_bytes(data)
        return [str(path)], _box()
    return make


def _half_of(save: Callable[[Path], None]):
    def write(path: Path):
        save(path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    return write


def _garbled_png(path: Path):
    """A PNG whose header is fine and whose compressed pixel data is zeroed: identified, but not decodable."""
    _save(_picture(seed=8), path)
    data = bytearray(path.read_bytes())
    start = data.index(b"IDAT") + 20
    data[start:start + 200] = bytes(200)
    path.write_bytes(bytes(data))


def _converted(name: str, to_pil: Callable[[np.ndarray], "object"], note: str, **save_kwargs):
    """A converted-format row: the image is written in that format; its JSON notes the conversion."""
    stem = Path(name).stem

    def make(tmp: Path, ckpt: dict):
        to_pil(_picture(seed=1)).save(tmp / name, **save_kwargs)
        return [str(tmp / name)], _box()

    def check(out: Path, tmp: Path):
        for suffix in OUTPUT_SUFFIXES:
            assert (out / f"{stem}{suffix}").is_file(), f"{stem}{suffix} missing"
        doc = _strict_json(out / f"{stem}.json")
        assert doc["num_people"] == 1 and doc["image_size_px"] == [160, 120]
        assert any(note in n for n in doc["notes"]), f"no note {note!r} in {doc['notes']}"
    return Row(f"converted-{stem}", make, 0, lines=0, check=check)


def _pil(mode: str):
    from PIL import Image

    def convert(rgb: np.ndarray):
        if mode == "I;16":
            return Image.fromarray(rgb[:, :, 1].astype(np.uint16) * 257)
        if mode == "F":
            return Image.fromarray(rgb[:, :, 1].astype(np.float32) / 255.0)
        return Image.fromarray(rgb).convert(mode)
    return convert


def _exif_rotated(tmp: Path, ckpt: dict):
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90 degrees clockwise: the upright image is 120 x 160
    _save(_picture(seed=2), tmp / "phone.jpg", exif=exif, quality=95)
    return [str(tmp / "phone.jpg")], _box()


def _check_exif(out: Path, tmp: Path):
    from PIL import Image

    doc = _strict_json(out / "phone.json")
    assert doc["image_size_px"] == [120, 160], "pixel outputs must refer to the upright image"
    assert any("EXIF orientation" in n for n in doc["notes"]), doc["notes"]
    with Image.open(out / "phone_overlay.png") as overlay:
        assert overlay.size[1] == 160, "the overlay shows the upright image"
    assert doc["people"][0]["box_xywh_px"] == [60.0, 25.0, 50.0, 70.0]


def _huge(tmp: Path, ckpt: dict):
    wide = np.zeros((100, 5000, 3), np.uint8)  # 5000 x 100 px: longest side > 4096
    wide[:, :, 0] = (np.arange(5000) % 256)[None, :]
    wide[20:90, 40:130] = 220
    _save(wide, tmp / "wide.png")
    return [str(tmp / "wide.png")], _box()


def _check_huge(out: Path, tmp: Path):
    doc = _strict_json(out / "wide.json")
    assert doc["image_size_px"] == [5000, 100]
    assert doc["processing_scale"] == pytest.approx(4096 / 5000, rel=1e-3)
    assert any("downscaled" in n for n in doc["notes"]), doc["notes"]
    person = doc["people"][0]
    # Every pixel output refers to the original pixels: the user's box comes back unchanged, the principal point
    # is the original image's centre, and the 2D joints lie near the processed box.
    np.testing.assert_allclose(person["box_xywh_px"], [60, 25, 50, 70], atol=0.05)
    K = np.array(person["camera"]["K"])
    np.testing.assert_allclose(K[:2, 2], [2500, 50], atol=0.5)
    bx, by, bw, bh = person["box_processed_xywh_px"]
    joints = np.array(person["joints_2d_px"])
    assert np.all(joints[:, 0] > bx - bw) and np.all(joints[:, 0] < bx + 2 * bw)
    assert np.all(joints[:, 1] > by - bh) and np.all(joints[:, 1] < by + 2 * bh)


def _too_large(tmp: Path, ckpt: dict):
    (tmp / "bomb.png").write_bytes(_png_header_only(20000, 20000))  # claims 400 MP (> 250 MP)
    return [str(tmp / "bomb.png")], _box()


def _boxes_json(tmp: Path, entries: dict) -> Path:
    path = tmp / "boxes.json"
    path.write_text(json.dumps(entries))
    return path


def _no_person(tmp: Path, ckpt: dict):
    _save(np.full((120, 160, 3), 128, np.uint8), tmp / "blank.png")  # flat: the detector finds nobody
    return [str(tmp / "blank.png")], ["--boxes", str(_boxes_json(tmp, {"good.png": [[60, 25, 50, 70]]}))]


def _empty_box_list(tmp: Path, ckpt: dict):
    _save(_picture(seed=3), tmp / "nobody.png")
    boxes = _boxes_json(tmp, {"good.png": [[60, 25, 50, 70]], "nobody.png": []})  # nobody in this image
    return [str(tmp / "nobody.png")], ["--boxes", str(boxes)]


def _check_nobody(stem: str):
    def check(out: Path, tmp: Path):
        doc = _strict_json(out / f"{stem}.json")
        assert doc["num_people"] == 0 and doc["people"] == [] and doc["message"] == "no person found"
        assert (out / f"{stem}_overlay.png").is_file()
        assert not (out / f"{stem}.obj").exists()
    return check


def _box_outside(tmp: Path, ckpt: dict):
    _save(_picture(40, 30), tmp / "small.png")
    boxes = _boxes_json(tmp, {"good.png": [[60, 25, 50, 70]], "small.png": [[500, 400, 50, 50]]})
    return [str(tmp / "small.png")], ["--boxes", str(boxes)]


def _box_empty(tmp: Path, ckpt: dict):
    _save(_picture(seed=4), tmp / "flat_box.png")
    boxes = _boxes_json(tmp, {"good.png": [[60, 25, 50, 70]], "flat_box.png": [[10, 10, 0, 20]]})
    return [str(tmp / "flat_box.png")], ["--boxes", str(boxes)]


def _bbox_zero_width(tmp: Path, ckpt: dict):
    # --bbox applies to every input: both inputs are skipped (one line each), exit 1.
    _save(_picture(seed=5), tmp / "other.png")
    return [str(tmp / "other.png")], ["--bbox", "60,25,0,70"]


def _garbage_video(tmp: Path, ckpt: dict):
    (tmp / "clip.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    return [str(tmp / "clip.mp4")], _box()


def _frameless_video(tmp: Path, ckpt: dict):
    import cv2

    writer = cv2.VideoWriter(str(tmp / "still.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64))
    writer.release()  # a valid container with no frames
    return [str(tmp / "still.avi")], _box()


def _check_no_video_outputs(stem: str):
    def check(out: Path, tmp: Path):
        assert not (out / f"{stem}_frames").exists(), f"{stem}_frames left behind by a skipped video"
        assert not (out / f"{stem}_overlay.mp4").exists()
    return check


def _truncated_video(tmp: Path, ckpt: dict):
    import cv2

    writer = cv2.VideoWriter(str(tmp / "cut.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 64))
    for i in range(5):
        writer.write(_picture(64, 64, seed=20 + i))
    writer.release()
    data = (tmp / "cut.mp4").read_bytes()
    (tmp / "cut.mp4").write_bytes(data[: len(data) // 3])  # an MP4 whose index ("moov" atom) is cut off
    return [str(tmp / "cut.mp4")], _box()


def _far_from_proportions(tmp: Path, ckpt: dict):
    _save(_picture(seed=9), tmp / "banner.png")
    boxes = _boxes_json(tmp, {"good.png": [[60, 25, 50, 70]], "banner.png": [[0, 0, 150, 30]]})  # w/h = 5
    return [str(tmp / "banner.png")], ["--boxes", str(boxes)]


def _check_proportions_warning(out: Path, tmp: Path):
    doc = _strict_json(out / "banner.json")
    warnings = doc["people"][0]["warnings"]
    assert len(warnings) == 1 and "far from a body's proportions" in warnings[0], warnings
    assert _strict_json(out / "good.json")["people"][0]["warnings"] == []


def _dataparallel_checkpoint(tmp: Path, ckpt: dict):
    data = torch.load(ckpt["body"], map_location="cpu", weights_only=False)
    data["model"] = {f"module.{k}": v for k, v in data["model"].items()}
    torch.save(data, tmp / "ddp.pt")
    return [], _box("--checkpoint", str(tmp / "ddp.pt"))


def _option(*options: str):
    return lambda tmp, ckpt: ([], _box(*options))


def _kind_mismatch(tmp: Path, ckpt: dict):
    return [], _box("--kind", "hand")


def _ckpt_missing(tmp: Path, ckpt: dict):
    return [], _box("--checkpoint", str(tmp / "nope.pt"))


def _ckpt_random_bytes(tmp: Path, ckpt: dict):
    (tmp / "junk.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    return [], _box("--checkpoint", str(tmp / "junk.pt"))


def _ckpt_not_i2lmesh(tmp: Path, ckpt: dict):
    torch.save({"state_dict": {"w": torch.zeros(3)}}, tmp / "foreign.pt")
    return [], _box("--checkpoint", str(tmp / "foreign.pt"))


def _ckpt_truncated(tmp: Path, ckpt: dict):
    data = ckpt["body"].read_bytes()
    (tmp / "cut.pt").write_bytes(data[: len(data) // 3])
    return [], _box("--checkpoint", str(tmp / "cut.pt"))


def _onnx_without_backend(tmp: Path, ckpt: dict):
    (tmp / "model.onnx").write_bytes(b"\x08\x07onnx-ish")
    return [], _box("--checkpoint", str(tmp / "model.onnx"))


def _pt_with_onnx_backend(tmp: Path, ckpt: dict):
    return [], _box("--backend", "onnx")


def _hand_without_box(tmp: Path, ckpt: dict):
    return [], ["--checkpoint", str(ckpt["hand"])]


def _cuda_absent(tmp: Path, ckpt: dict):
    return [], _box("--device", "cuda")


def _no_inputs(tmp: Path, ckpt: dict):
    (tmp / "empty_folder").mkdir()
    (tmp / "empty_folder" / "readme.txt").write_text("no pictures here")
    return [str(tmp / "empty_folder")], _box()


ROWS = [
    # missing, empty (0 bytes), corrupt or truncated file: skipped with one line
    Row("missing", lambda tmp, ckpt: ([str(tmp / "missing.png")], _box()), 1, "missing.png", ("file not found",)),
    Row("empty", _file("empty.png", b""), 1, "empty.png", ("empty file",)),
    Row("corrupt-png", _file("garbled.png", _garbled_png), 1, "garbled.png", ("corrupt or unreadable image",)),
    Row("corrupt-jpeg", _file("corrupt.jpg", b"\xff\xd8\xff\xe0" + b"\x00garbage" * 20), 1, "corrupt.jpg",
        ("corrupt or unreadable image",)),
    Row("truncated-jpeg", _file("cut.jpg", _half_of(lambda p: _save(_picture(seed=6), p, quality=90))), 1,
        "cut.jpg", ("truncated image",)),
    Row("truncated-png", _file("cut.png", _half_of(lambda p: _save(_picture(seed=7), p))), 1, "cut.png",
        ("truncated image",)),
    # not an image, unsupported format
    Row("not-an-image-txt", _file("notes.txt", b"these are not pixels\n"), 1, "notes.txt",
        ("not an image or an unsupported format",)),
    # grayscale, palette, CMYK, RGBA, 16-bit, float TIFF: converted, noted in the JSON
    _converted("gray.png", _pil("L"), "grayscale"),
    _converted("palette.png", _pil("P"), "converted P to RGB"),
    _converted("cmyk.tif", _pil("CMYK"), "converted CMYK to RGB"),
    _converted("cmyk_jpeg.jpg", _pil("CMYK"), "converted CMYK to RGB", quality=95),
    _converted("rgba.png", _pil("RGBA"), "alpha"),
    _converted("sixteen.png", _pil("I;16"), "16-bit"),
    _converted("float.tif", _pil("F"), "floating-point"),
    # EXIF orientation applied
    Row("exif-orientation", _exif_rotated, 0, lines=0, check=_check_exif),
    # huge image: downscaled copy, outputs in original pixels; more than 250 MP refused
    Row("huge-downscaled", _huge, 0, lines=0, check=_check_huge),
    Row("huge-refused", _too_large, 1, "bomb.png", ("image too large",)),
    # no person found: not an error
    Row("no-person-detected", _no_person, 0, lines=0, check=_check_nobody("blank")),
    Row("no-person-empty-box-list", _empty_box_list, 0, lines=0, check=_check_nobody("nobody")),
    # box outside the image or empty: that input is skipped
    Row("box-outside", _box_outside, 1, "small.png", ("[500.0, 400.0, 50.0, 50.0]", "lies outside the 40x30 image")),
    Row("bbox-not-numbers", _option("--bbox", "1,2,x,4"), 2, "--bbox", ("1,2,x,4",), good_done=False),
    Row("box-far-from-proportions", _far_from_proportions, 0, lines=0, check=_check_proportions_warning),
    Row("box-empty", _box_empty, 1, "flat_box.png", ("lies outside", "or is empty")),
    Row("bbox-zero-width-every-input", _bbox_zero_width, 1, "other.png", ("or is empty",), good_done=False,
        lines=2),
    # unreadable video / no decodable frames: one line, skipped, nothing left behind
    Row("video-unreadable", _garbage_video, 1, "clip.mp4", ("video",), check=_check_no_video_outputs("clip")),
    Row("video-truncated", _truncated_video, 1, "cut.mp4", ("video",), check=_check_no_video_outputs("cut")),
    Row("video-no-frames", _frameless_video, 1, "still.avi", ("frames",), check=_check_no_video_outputs("still")),
    # --threads 0, --batch-size 0, --max-frames 0: one line, exit 2
    Row("threads-0", _option("--threads", "0"), 2, "--threads", (), good_done=False),
    Row("batch-size-0", _option("--batch-size", "0"), 2, "--batch-size", (), good_done=False),
    Row("max-frames-0", _option("--max-frames", "0"), 2, "--max-frames", (), good_done=False),
    # --kind mismatch: the run stops at once
    Row("kind-mismatch", _kind_mismatch, 2, None, ("this checkpoint is a body network", "cannot predict a hand"),
        good_done=False),
    # checkpoint missing / not an i2lmesh checkpoint / ONNX without --backend onnx: the run stops at once
    Row("checkpoint-missing", _ckpt_missing, 2, "nope.pt", ("not found",), good_done=False),
    Row("checkpoint-random-bytes", _ckpt_random_bytes, 2, "junk.pt", ("checkpoint",), good_done=False),
    Row("checkpoint-truncated", _ckpt_truncated, 2, "cut.pt", ("checkpoint",), good_done=False),
    Row("checkpoint-not-i2lmesh", _ckpt_not_i2lmesh, 2, "foreign.pt", ("not an i2lmesh checkpoint",),
        good_done=False),
    Row("checkpoint-onnx-without-backend", _onnx_without_backend, 2, "model.onnx", ("--backend onnx",),
        good_done=False),
    Row("checkpoint-pt-with-onnx-backend", _pt_with_onnx_backend, 2, "tiny_body.pt", (".onnx",), good_done=False),
    Row("checkpoint-dataparallel-prefix", _dataparallel_checkpoint, 0, lines=0),
    # hands without a box and without mediapipe: the run stops asking for --bbox
    Row("hand-without-box-or-mediapipe", _hand_without_box, 2, None, ("--bbox",), good_done=False,
        needs=("no-mediapipe",)),
    # usage errors that stop the run (the exit-code paragraph): an absent device, no inputs
    Row("device-cuda-absent", _cuda_absent, 2, None, ("cuda", "available here: cpu"), good_done=False,
        needs=("no-cuda",)),
    Row("device-gpu", _option("--device", "gpu"), 2, None, ("gpu", "available here: cpu"), good_done=False),
    Row("device-cuda-3", _option("--device", "cuda:3"), 2, None, ("cuda:3", "available here"), good_done=False),
    Row("device-meta", _option("--device", "meta"), 2, None, ("meta", "available here"), good_done=False),
    Row("no-inputs", _no_inputs, 2, "empty_folder", ("no images or videos",), good_done=False, with_good=False),
]


def _run_demo(argv: list[str], capfd) -> tuple[int, str, str]:
    from i2lmesh.cli import main

    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    captured = capfd.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input_row(row: Row, checkpoints, tmp_path, capfd, monkeypatch):
    if "no-mediapipe" in row.needs:  # where mediapipe is installed, run as where it is not
        monkeypatch.setattr("i2lmesh.inference.detect.mediapipe_available", lambda: False)
    if "no-cuda" in row.needs and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    _save(_picture(seed=0), tmp_path / "good.png")
    bad_inputs, options = row.make(tmp_path, checkpoints)
    out = tmp_path / "out"
    good = [str(tmp_path / "good.png")] if row.with_good else []
    argv = ["demo", *bad_inputs, *good, "--checkpoint", str(checkpoints["body"]), "--out",
            str(out), "--no-progress", *options]
    code, stdout, err = _run_demo(argv, capfd)
    where = f"i2lmesh {' '.join(argv)}\nstderr:\n{err}"

    assert "Traceback" not in err and "Traceback" not in stdout, where
    for noise in ("moov atom", "[mov,mp4", "Invalid data found", "[ERROR:"):  # FFmpeg's / OpenCV's own log lines
        assert noise not in err, f"library log line on stderr: {where}"
    lines = [line for line in err.splitlines() if line.startswith("i2lmesh demo:")]
    assert code == row.code, f"exit code {code}, expected {row.code}: {where}"
    assert len(lines) == row.lines, f"{len(lines)} 'i2lmesh demo:' lines, expected {row.lines}: {where}"
    for line in lines[:1]:
        if row.bad is not None:
            assert row.bad in line, f"the line does not name {row.bad}: {line}"
        for words in row.problem:
            assert words in line, f"the line does not say {words!r}: {line}"
    if row.good_done:
        for suffix in OUTPUT_SUFFIXES:
            assert (out / f"good{suffix}").is_file(), f"good{suffix} missing: {where}"
        doc = _strict_json(out / "good.json")
        assert doc["num_people"] == 1 and len(doc["people"][0]["joints_3d_m"]) == 5
    else:
        assert not (out / "good.json").exists(), "a run that stops (or skips every input) wrote the good image's JSON"
    if row.bad is not None and row.code == 1:
        assert not (out / f"{Path(row.bad).stem}.json").exists(), f"a skipped input ({row.bad}) has a JSON"
    if row.check is not None:
        row.check(out, tmp_path)
