"""Seeded fuzz test of the inference entry points: malformed options, box files, arrays, image files, checkpoints.

Every case is generated from (seed, target, index) alone, so one failing case reruns by its test id. The seed is
``I2LMESH_FUZZ_SEED`` (default below) and appears in every test id; ``test_fuzz_plan`` prints the seed and the number
of cases (``pytest -s``); a corpus of hand-written cases (one per kind of failure found so far) runs whatever the seed.
Targets:

- ``cli``: ``i2lmesh demo`` option parsing (--bbox strings, --focal, --root-depth, --batch-size, --threads,
  --max-frames, --device);
- ``boxes``: ``--boxes`` JSON files (wrong types, nesting, NaN/Infinity literals, huge numbers, deep nesting);
- ``api``: ``Predictor.predict(image, boxes=, intrinsics=, root_depth_m=)`` with random arrays, shapes, dtypes, NaN,
  inf, complex numbers, dicts, strings;
- ``image`` / ``image-cli``: image files (random bytes, truncated and damaged PNG/JPEG/GIF/BMP/TIFF/WebP, headers
  claiming absurd sizes) through ``read_image`` and through the demo;
- ``ckpt``: ``load_network`` on random bytes, truncated files, dicts with missing keys or wrong types, state dicts
  with wrong shapes, "module."-prefixed keys.

What each case checks: no exception other than the documented ones (CheckpointError / BadInputError / ValueError
with a one-line message; files must be named in it), exit codes in {0, 1, 2} for the CLI, no traceback and no
"failed on" line (demo's catch-all for unexpected exceptions) on stderr, a one-line message naming the input, and
no NaN/inf in any JSON written (parsed strictly) or in any mesh / result array.

Most cases stop at validation. Those that reach the network use a tiny random network (ResNet-18 at 64 px); the
CLI's checkpoint loading is cached (the file is loaded and optimised once; ``Predictor.from_checkpoint`` itself runs
unchanged) so that a few hundred cases take seconds.
"""
from __future__ import annotations

import copy
import io
import json
import math
import os
import random
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from i2lmesh import CheckpointError, load_network, save_network
from i2lmesh.inference import BadInputError
from tiny_net import tiny_net as _tiny_net

pytestmark = pytest.mark.usefixtures("one_thread")

SEED = int(os.environ.get("I2LMESH_FUZZ_SEED", "20240611"))
COUNTS = {"cli": 110, "boxes": 70, "api": 120, "image": 70, "image-cli": 6, "ckpt": 40}
NUM_CASES = sum(COUNTS.values())
GOOD_BOX = "8,8,40,44"  # inside the 64 x 64 test images


def _rng(target: str, index: int) -> random.Random:
    return random.Random(f"{SEED}-{target}-{index}")


def _ids(target: str) -> list[str]:
    return [f"{target}-{i:03d}-s{SEED}" for i in range(COUNTS[target])]


def _params(target: str):
    return pytest.mark.parametrize("index", range(COUNTS[target]), ids=_ids(target))


def test_fuzz_plan():
    print(f"\ni2lmesh fuzz: seed {SEED} (I2LMESH_FUZZ_SEED), {NUM_CASES} generated cases ("
          + ", ".join(f"{k} {v}" for k, v in COUNTS.items()) + f") + {CORPUS_COUNT} corpus cases")
    assert NUM_CASES >= 300


# ----------------------------------------------------------------------------------------------------------------
# Fixtures: a tiny network, a few good files, cached checkpoint loading for the CLI


def _picture(width: int = 64, height: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    image = np.stack([x * 255.0 / width, y * 255.0 / height, np.full_like(x, 128.0)], -1)
    image += rng.normal(0, 20, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """The tiny checkpoint, its state (for checkpoint variants), two good images and a 3-frame video."""
    import cv2
    from PIL import Image

    folder = tmp_path_factory.mktemp("fuzz")
    net = _tiny_net()
    save_network(net, folder / "tiny.pt")
    Image.fromarray(_picture(seed=1)).save(folder / "good.png")
    Image.fromarray(_picture(seed=2)).save(folder / "other.png")
    writer = cv2.VideoWriter(str(folder / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (64, 64))
    for i in range(3):
        writer.write(_picture(seed=10 + i))
    writer.release()
    return {"ckpt": folder / "tiny.pt", "good": folder / "good.png", "other": folder / "other.png",
            "video": folder / "clip.avi", "folder": folder}


@pytest.fixture(scope="module")
def predictor(files):
    from i2lmesh.inference import Predictor

    return Predictor.from_checkpoint(files["ckpt"], optimise=True, batch_size=4)


@pytest.fixture(scope="module")
def cached_loading(files):
    """Load and optimise the tiny checkpoint once for all CLI cases. Only ``load_network`` (for that file) and
    ``optimise_for_inference`` (for that network) are replaced; everything else in from_checkpoint runs."""
    import i2lmesh.nets.factory as factory
    import i2lmesh.nets.fast as fast

    real_load, real_optimise = factory.load_network, fast.optimise_for_inference
    shared, config = real_load(files["ckpt"])
    optimised = real_optimise(shared)

    def load(path, device="cpu"):
        if Path(path) != files["ckpt"]:
            return real_load(path, device)
        if torch.device(device).type == "cpu":  # a bad device string raises here as in .to(device)
            return shared, config
        return copy.deepcopy(shared).to(device).eval(), config

    def optimise(net):
        return optimised if net is shared else real_optimise(net)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(factory, "load_network", load)
        mp.setattr(fast, "optimise_for_inference", optimise)
        yield


# ----------------------------------------------------------------------------------------------------------------
# Checks shared by the targets


def _reject_constant(literal):
    raise ValueError(f"non-finite number {literal} in JSON")


def _strict_json(text: str):
    return json.loads(text, parse_constant=_reject_constant)


def _check_outputs(out: Path) -> None:
    """Every JSON written parses strictly (no NaN/Infinity); every mesh and array is finite."""
    import trimesh

    if not out.exists():
        return
    for path in sorted(out.rglob("*")):
        if path.suffix == ".json":
            _strict_json(path.read_text())
        elif path.suffix in (".obj", ".glb", ".ply"):
            loaded = trimesh.load(path, process=False, force="scene")
            assert loaded.geometry, f"{path.name}: no mesh"
            assert all(np.all(np.isfinite(m.vertices)) for m in loaded.geometry.values()), \
                f"{path.name}: non-finite vertices"
            if path.suffix == ".ply":
                vertex = next(iter(loaded.geometry.values())).metadata["_ply_raw"]["vertex"]["data"]
                assert all(np.all(np.isfinite(vertex[n])) for n in vertex.dtype.names), f"{path.name}: non-finite"
        elif path.suffix == ".npz":
            with np.load(path) as data:
                for name in data.files:
                    if np.issubdtype(data[name].dtype, np.number):
                        assert np.all(np.isfinite(data[name])), f"{path.name}: non-finite {name}"


def _run_cli(argv: list[str], capsys, names: list[str], where: str) -> int:
    """Run the demo in-process; check exit code, stderr and the outputs. ``names``: words of which at least one must
    appear in an error line (the input or option it is about)."""
    from i2lmesh.cli import main

    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors exit 2 with "i2lmesh demo: error: ..."
        code = exc.code
    except Exception as exc:  # noqa: BLE001 - this is what the fuzz looks for
        raise AssertionError(f"uncaught {type(exc).__name__}: {exc}\n{where}") from exc
    captured = capsys.readouterr()
    err = captured.err
    assert code in (0, 1, 2), f"exit code {code!r}\n{where}\n{err}"
    assert "Traceback" not in err + captured.out, f"traceback on stderr\n{where}\n{err}"
    lines = [line for line in err.splitlines() if line.startswith("i2lmesh demo:")]
    failed = [line for line in lines if ": failed on " in line]
    assert not failed, f"unexpected exception caught by demo's catch-all: {failed[0]}\n{where}"
    if code == 0:
        assert not lines, f"exit 0 with error lines\n{where}\n{err}"
    else:
        assert lines, f"exit {code} without an 'i2lmesh demo:' line\n{where}\n{err}"
        for line in lines:
            assert any(name.lower() in line.lower() for name in names), \
                f"the line names none of {names}: {line}\n{where}"
    try:
        _check_outputs(Path(argv[argv.index("--out") + 1]))
    except (AssertionError, ValueError) as exc:
        raise AssertionError(f"{exc}\n{where}") from exc
    return code


def _one_line(exc: BaseException) -> bool:
    text = str(exc)
    return bool(text.strip()) and "\n" not in text.strip()


# ----------------------------------------------------------------------------------------------------------------
# cli: option parsing

NUMBER_TEXT = ["0", "-0", "1", "-1", "2", "64", "1500", "2.5", "0.001", "1e-320", "5e-324", "1e308", "1e309",
               "-1e309", "nan", "NaN", "-nan", "inf", "-inf", "Infinity", "0x10", "1_000", "\u0661\u0662", "", " ",
               "abc", "1,5", "+3", "3.", ".5", "1e", "99999999999999999999999", "2147483648", "-2147483649",
               "1.5", "\u221e", "None", "[1]", "10 ", "\t7"]
DEVICES = ["cpu", "cuda", "cuda:0", "cuda:1", "foo", "", "meta", "cpu:0", "mps", "CPU", "cpu cpu", "xla", "-1",
           "0", "cuda:-1", "vulkan", "cpu:99999999999999999999"]


def _bbox_text(r: random.Random) -> str:
    if r.random() < 0.15:
        return "".join(r.choice("0123456789,.-+eE naif;x ") for _ in range(r.randint(0, 14)))
    parts = [r.choice(NUMBER_TEXT) if r.random() < 0.5 else str(r.choice([0, 8, 10, 40, 44, 63, 64, 100, -5]))
             for _ in range(r.choice([0, 1, 3, 4, 4, 4, 4, 5, 8]))]
    return r.choice([",", ", ", ";", " ", ",,", ",\t"]).join(parts)


def _cli_case(index: int, files) -> tuple[list[str], list[str], list[str]]:
    """(extra inputs, options, words that may name the problem)"""
    r = _rng("cli", index)
    options: list[str] = []
    names: list[str] = []
    inputs: list[str] = []
    kinds = r.sample(["bbox", "focal", "root-depth", "batch-size", "threads", "max-frames", "device"],
                     r.choice([1, 1, 2, 3]))
    if "bbox" in kinds:
        for _ in range(r.choice([1, 1, 2, 3])):
            text = _bbox_text(r)
            options += ["--bbox", text] if not text.startswith("-") or r.random() < 0.5 else [f"--bbox={text}"]
        names += ["bbox", "box"]
    else:
        options += ["--bbox", GOOD_BOX]
    for kind in kinds:
        if kind == "bbox":
            continue
        if kind == "device":
            value = r.choice(DEVICES)
        elif kind == "threads":
            # valid counts stay at 1: more threads than free cores make the tiny network 20x slower here
            value = r.choice(["0", "-1", "-5", "1", "abc", "1.5", "", "99999999999999999999", "2147483648",
                              "1e3", "nan"])
        elif kind == "batch-size":
            value = r.choice(["0", "-1", "1", "2", "abc", "1.5", "", "99999999999999999999", "1e3", "-0"])
        elif kind == "max-frames":
            value = r.choice(["0", "-1", "1", "2", "abc", "", "99999999999999999999", "1.5", "-99999999999"])
            inputs.append(str(files["video"]))
        else:
            value = r.choice(NUMBER_TEXT)
        options.append(f"--{kind}={value}" if r.random() < 0.5 else f"--{kind}")
        if not options[-1].startswith(f"--{kind}="):
            options.append(value)
        names += [kind, kind.replace("-", " "), kind.replace("-", "_")] + ([value] if len(value.strip()) >= 3 else [])
    names += ["thread"] if "threads" in kinds else []
    names += ["frame", "video", "clip.avi"] if "max-frames" in kinds else []
    return inputs, options, names


@_params("cli")
def test_fuzz_cli_options(index, files, cached_loading, tmp_path, capsys):
    inputs, options, names = _cli_case(index, files)
    argv = ["demo", str(files["good"]), *inputs, "--checkpoint", str(files["ckpt"]), "--out", str(tmp_path / "out"),
            "--no-progress", *options]
    names = names + [str(files["good"]), "good.png"] + inputs
    _run_cli(argv, capsys, names, f"case cli-{index:03d} seed {SEED}: i2lmesh {' '.join(map(repr, argv))}")


# ----------------------------------------------------------------------------------------------------------------
# boxes: --boxes JSON files

JSON_LEAVES = ["0", "1", "-1", "8", "10", "40", "44", "1e308", "1e400", "-1e400", "NaN", "Infinity", "-Infinity",
               "1e-400", "123456789012345678901234567890", "0.5", "true", "false", "null", '"10"', '"abc"', '""',
               "-0", "2.5e3", '"NaN"', '"8,8,40,44"', "[]", "{}"]


def _json_value(r: random.Random, depth: int = 0) -> str:
    roll = r.random()
    if depth > 4 or roll < 0.3:
        return r.choice(JSON_LEAVES)
    if roll < 0.55:  # box-like: a list of 4 (mostly numbers)
        return "[" + ", ".join(r.choice(JSON_LEAVES[:10] + ["8", "8", "40", "44"]) for _ in range(4)) + "]"
    if roll < 0.8:
        return "[" + ", ".join(_json_value(r, depth + 1) for _ in range(r.choice([0, 1, 1, 2, 3, 5]))) + "]"
    keys = ['"good.png"', '"good"', '"other.png"', '"x"', '""', '"0"']
    return "{" + ", ".join(f"{r.choice(keys)}: {_json_value(r, depth + 1)}"
                           for _ in range(r.choice([0, 1, 2]))) + "}"


def _boxes_text(r: random.Random, files) -> str:
    roll = r.random()
    if roll < 0.06:
        depth = r.choice([50, 2000, 100_000])
        return "[" * depth + "8, 8, 40, 44" + "]" * depth
    if roll < 0.1:
        return r.choice(["", "not json", "[8, 8, 40, 44", "{\"good.png\": [[8, 8, 40, 44]]", "\ufeff[8,8,40,44]",
                         "[8, 8, 40, 44] trailing", "\x00", "[8,8,40,44]\n[1,2,3,4]", "'[8, 8, 40, 44]'"])
    if roll < 0.45:  # a mapping keyed by the inputs
        keys = ["good.png", "good", str(files["good"]), "other.png", "other", "nothing.png", "GOOD.PNG", "",
                "good.png ", "../good.png"]
        entries = [f"{json.dumps(r.choice(keys))}: {_json_value(r, 1)}" for _ in range(r.choice([1, 1, 2, 3]))]
        if r.random() < 0.3:
            entries.append('"good.png": [[8, 8, 40, 44]]')
        r.shuffle(entries)
        return "{" + ", ".join(entries) + "}"
    if roll < 0.6:
        return r.choice(JSON_LEAVES)
    return _json_value(r, 0)


@_params("boxes")
def test_fuzz_boxes_json(index, files, cached_loading, tmp_path, capsys):
    r = _rng("boxes", index)
    text = _boxes_text(r, files)
    boxes = tmp_path / "boxes.json"
    boxes.write_text(text, encoding="utf-8")
    argv = ["demo", str(files["good"]), str(files["other"]), "--checkpoint", str(files["ckpt"]), "--out",
            str(tmp_path / "out"), "--no-progress", "--boxes", str(boxes)]
    shown = text if len(text) < 200 else text[:100] + f"...({len(text)} chars)"
    _run_cli(argv, capsys, ["boxes.json", "good.png", "other.png", "box"],
             f"case boxes-{index:03d} seed {SEED}: --boxes file containing {shown!r}")


# ----------------------------------------------------------------------------------------------------------------
# api: Predictor.predict


def _api_image(r: random.Random, nr: np.random.Generator, files, allow_list: bool = True):
    roll = r.randrange(30)
    h, w = r.choice([(48, 64), (64, 64), (40, 56)])
    good = nr.integers(0, 256, (h, w, 3)).astype(np.uint8)
    options = {
        0: lambda: good, 1: lambda: good, 2: lambda: good, 3: lambda: good[:, :, 0],
        4: lambda: good[:, :, :1], 5: lambda: np.concatenate([good, good[:, :, :1]], 2),
        6: lambda: good[:, :, :2], 7: lambda: np.zeros((h, w, 5), np.uint8), 8: lambda: good.reshape(-1),
        9: lambda: good[None], 10: lambda: np.zeros((0, w, 3), np.uint8), 11: lambda: good[:1, :1],
        12: lambda: np.where(nr.random((h, w, 3)) < 0.1, np.nan, good / 255.0),
        13: lambda: np.full((h, w, 3), np.inf), 14: lambda: good.astype(np.complex64) * (1 + 1j),
        15: lambda: good > 128, 16: lambda: good.astype(np.int64) - 300, 17: lambda: good.astype(np.uint16) * 257,
        18: lambda: good.astype(np.float16), 19: lambda: good.astype(object), 20: lambda: "no such image.png",
        21: lambda: {"image": good}, 22: lambda: None, 23: lambda: good.tolist(), 24: lambda: torch.from_numpy(good),
        25: lambda: b"\x89PNG", 26: lambda: str(files["good"]), 27: lambda: 42,
        28: lambda: np.full((h, w, 3), -1e300), 29: lambda: good.astype(np.float64) * 1e300,
    }
    if allow_list and r.random() < 0.12:
        return [_api_image(r, nr, files, False) for _ in range(r.choice([0, 1, 2, 3]))]
    return options[roll]()


API_NUMBERS = [0.0, -1.0, 1.0, 8.0, 40.0, 1e-308, 5e-324, 1e308, -1e308, math.nan, math.inf, -math.inf, 1e20, 3]


def _api_boxes(r: random.Random, nr: np.random.Generator):
    roll = r.randrange(18)
    good = [8.0, 8.0, 30.0, 30.0]
    if roll == 0:
        return None
    if roll in (1, 2):
        return [good]
    if roll == 3:
        return good
    if roll == 4:
        return [[r.choice(API_NUMBERS) if r.random() < 0.4 else v for v in good] for _ in range(r.randint(1, 3))]
    if roll == 5:
        return []
    if roll == 6:
        return [[]]
    if roll == 7:
        return np.array([good], dtype=r.choice([np.float32, np.int64, np.complex128, np.float16, object]))
    if roll == 8:
        return [good[:r.randint(0, 3)]]
    if roll == 9:
        return [[good]]
    if roll == 10:
        return {"box": good}
    if roll == 11:
        return "8,8,30,30"
    if roll == 12:
        return [["8", "8", "30", "30"]]
    if roll == 13:
        return nr.normal(0, 1e3, (r.randint(1, 3), 4))
    if roll == 14:
        return [[True, True, True, True]]
    if roll == 15:
        return [good, good, good, good, good, good, good, good, good]  # more than one batch
    if roll == 16:
        return [[8, 8, 30, 30 + 1e-9j]]
    return np.full((2, 4), math.nan)


def _api_intrinsics(r: random.Random, nr: np.random.Generator):
    roll = r.randrange(14)
    K = np.array([[60.0, 0, 32], [0, 60.0, 32], [0, 0, 1]])
    if roll < 4:
        return None if roll < 2 else (K if roll == 2 else 80.0)
    if roll == 4:
        return r.choice(API_NUMBERS)
    if roll == 5:
        bad = K.copy()
        bad[r.randrange(3), r.randrange(3)] = r.choice(API_NUMBERS)
        return bad
    if roll == 6:
        return K[:2, :2]
    if roll == 7:
        return np.zeros((3, 4))
    if roll == 8:
        return "1500"
    if roll == 9:
        return {"f": 80}
    if roll == 10:
        return K.astype(np.complex128)
    if roll == 11:
        return [K, K]
    if roll == 12:
        return np.array([[1e300, 0, 32], [0, 1e300, 32], [0, 0, 1]])
    return 80 + 1j


def _api_depth(r: random.Random, nr: np.random.Generator):
    roll = r.randrange(12)
    if roll < 4:
        return None if roll < 2 else 2.5
    if roll == 4:
        return r.choice(API_NUMBERS)
    if roll == 5:
        return [2.0, 3.0]
    if roll == 6:
        return [r.choice(API_NUMBERS)]
    if roll == 7:
        return "2.5"
    if roll == 8:
        return {"depth": 2.5}
    if roll == 9:
        return 2.5 + 1j
    if roll == 10:
        return np.array([[2.5]])
    return True


def _describe(value) -> str:
    if isinstance(value, np.ndarray):
        finite = np.isfinite(value).all() if np.issubdtype(value.dtype, np.number) else "-"
        return f"ndarray(shape={value.shape}, dtype={value.dtype}, finite={finite})"
    if isinstance(value, torch.Tensor):
        return f"tensor(shape={tuple(value.shape)}, dtype={value.dtype})"
    if isinstance(value, list) and len(repr(value)) > 160:
        return "[" + ", ".join(_describe(v) for v in value[:4]) + (", ..." if len(value) > 4 else "") + "]"
    return repr(value)


def _check_people(people, nested: bool) -> None:
    groups = people if nested else [people]
    assert isinstance(groups, list)
    for group in groups:
        for p in group:
            for name in ("vertices_m", "joints_m", "joints_2d_px", "K", "box_xywh", "box_processed_xywh",
                         "vertex_uncertainty_mm", "vertex_uncertainty_xyz_mm", "joint_uncertainty_mm",
                         "joint_uncertainty_xyz_mm"):
                value = np.asarray(getattr(p, name))
                assert np.all(np.isfinite(value)), f"non-finite {name}: {value.ravel()[:6]}"
            for name in ("root_depth_m", "score", "heatmap_confidence"):
                assert math.isfinite(getattr(p, name)), f"non-finite {name}: {getattr(p, name)}"
            json.dumps(p.to_dict(with_vertices=True), allow_nan=False)


@_params("api")
def test_fuzz_predictor_api(index, files, predictor):
    r = _rng("api", index)
    nr = np.random.default_rng(r.getrandbits(32))
    image = _api_image(r, nr, files)
    kwargs = {}
    if r.random() < 0.85:
        kwargs["boxes"] = _api_boxes(r, nr)
    if r.random() < 0.6:
        kwargs["intrinsics"] = _api_intrinsics(r, nr)
    if r.random() < 0.6:
        kwargs["root_depth_m"] = _api_depth(r, nr)
    if kwargs.get("boxes") is None and r.random() < 0.7:
        kwargs["boxes"] = [[8.0, 8.0, 30.0, 30.0]]  # keep detector runs few
    _check_predict(predictor, image, kwargs, f"case api-{index:03d} seed {SEED}")


def _check_predict(predictor, image, kwargs: dict, label: str) -> None:
    where = (f"{label}: predictor.predict({_describe(image)}, "
             + ", ".join(f"{k}={_describe(v)}" for k, v in kwargs.items()) + ")")
    try:
        people = predictor.predict(image, **kwargs)
    except ValueError as exc:  # BadInputError and other ValueErrors: documented, one line
        assert _one_line(exc), f"{type(exc).__name__} message is not one line: {exc!r}\n{where}"
        return
    except Exception as exc:  # noqa: BLE001
        raise AssertionError(f"uncaught {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                             f"\n{where}") from exc
    try:
        _check_people(people, nested=isinstance(image, (list, tuple)))
    except (AssertionError, ValueError) as exc:
        raise AssertionError(f"{exc}\n{where}") from exc


# ----------------------------------------------------------------------------------------------------------------
# image: files


def _valid_bytes(fmt: str, nr: np.random.Generator) -> bytes:
    from PIL import Image

    rgb = _picture(32, 24, seed=int(nr.integers(1000)))
    buffer = io.BytesIO()
    image = Image.fromarray(rgb)
    if fmt == "GIF":
        image = image.convert("P")
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


ABSURD_SIZES = [(1, 65535), (65535, 1), (0, 0), (0, 5), (5, 0), (65535, 65535), (50000, 50000), (16384, 16384),
                (20000, 12500), (3, 3), (2 ** 31 - 1, 1), (1, 2 ** 31 - 1), (2 ** 32 - 1, 2 ** 32 - 1)]


def _absurd_header(fmt: str, w: int, h: int, nr: np.random.Generator) -> bytes:
    """A small valid file of ``fmt`` whose header claims w x h pixels."""
    if fmt == "PNG":
        return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
                + _png_chunk(b"IDAT", zlib.compress(b"\0" * 97)) + _png_chunk(b"IEND", b""))
    w, h = min(w, 65535), min(h, 65535)
    if fmt == "JPEG":
        data = bytearray(_valid_bytes("JPEG", nr))
        sof = data.index(b"\xff\xc0")
        data[sof + 5:sof + 9] = struct.pack(">HH", h, w)
        return bytes(data)
    if fmt == "GIF":
        data = bytearray(_valid_bytes("GIF", nr))
        data[6:10] = struct.pack("<HH", w, h)
        return bytes(data)
    if fmt == "BMP":
        data = bytearray(_valid_bytes("BMP", nr))
        data[18:26] = struct.pack("<ii", w, -h if nr.random() < 0.5 else h)
        return bytes(data)
    return f"P6 {w} {h} 255\n".encode() + bytes(96)  # PPM


def _image_file(r: random.Random, nr: np.random.Generator) -> tuple[str, bytes, str]:
    """(file name, bytes, what it is)"""
    roll = r.random()
    suffixes = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif", "WEBP": ".webp",
                "PPM": ".ppm"}
    fmt = r.choice(list(suffixes))
    if roll < 0.2:
        suffix = r.choice(list(suffixes.values()) + [".txt", "", ".jpeg", ".PNG"])
        data = nr.bytes(r.choice([0, 1, 7, 64, 512, 3000]))
        if r.random() < 0.5:  # a real magic number before the noise
            data = r.choice([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"BM", b"II*\x00", b"RIFF"]) + data
        return f"noise{suffix}", data, f"random bytes ({len(data)})"
    if roll < 0.5:
        data = _valid_bytes(fmt, nr)
        cut = r.randint(1, len(data) - 1)
        return f"cut{suffixes[fmt]}", data[:cut], f"{fmt} truncated to {cut} of {len(data)} bytes"
    if roll < 0.75:
        data = bytearray(_valid_bytes(fmt, nr))
        for _ in range(r.choice([1, 2, 5, 20])):
            data[r.randrange(min(64, len(data) - 1), len(data))] = r.randrange(256)
        return f"damaged{suffixes[fmt]}", bytes(data), f"{fmt} with bytes changed after byte 64"
    fmt = r.choice(["PNG", "JPEG", "GIF", "BMP", "PPM"])
    w, h = r.choice(ABSURD_SIZES)
    suffix = {"PNG": ".png", "JPEG": ".jpg", "GIF": ".gif", "BMP": ".bmp", "PPM": ".ppm"}[fmt]
    return f"absurd{suffix}", _absurd_header(fmt, w, h, nr), f"{fmt} header claiming {w}x{h} px"


@_params("image")
def test_fuzz_image_files(index, tmp_path):
    r = _rng("image", index)
    nr = np.random.default_rng(r.getrandbits(32))
    name, data, what = _image_file(r, nr)
    path = tmp_path / name
    path.write_bytes(data)
    _check_read_image(path, f"case image-{index:03d} seed {SEED}: read_image on {what} ({name})")


def _check_read_image(path: Path, where: str) -> None:
    from i2lmesh.inference import read_image

    try:
        loaded = read_image(path)
    except BadInputError as exc:
        assert _one_line(exc) and path.name in str(exc), f"message not one line naming {path.name}: {exc!r}\n{where}"
        return
    except Exception as exc:  # noqa: BLE001
        raise AssertionError(f"uncaught {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                             f"\n{where}") from exc
    rgb = loaded.rgb
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3 and min(rgb.shape[:2]) >= 1, where
    assert max(rgb.shape[:2]) <= 4096 and 0 < loaded.scale <= 1.0 and min(loaded.original_size) >= 1, where


@_params("image-cli")
def test_fuzz_image_files_in_the_demo(index, files, cached_loading, tmp_path, capsys):
    r = _rng("image-cli", index)
    nr = np.random.default_rng(r.getrandbits(32))
    name, data, what = _image_file(r, nr)
    (tmp_path / name).write_bytes(data)
    argv = ["demo", str(tmp_path / name), str(files["good"]), "--checkpoint", str(files["ckpt"]), "--out",
            str(tmp_path / "out"), "--no-progress", "--bbox", GOOD_BOX]
    code = _run_cli(argv, capsys, [name], f"case image-cli-{index:03d} seed {SEED}: demo on {what} ({name})")
    assert code in (0, 1) and (tmp_path / "out" / "good.json").is_file()


# ----------------------------------------------------------------------------------------------------------------
# ckpt: load_network


@pytest.fixture(scope="module")
def state(files) -> dict:
    return torch.load(files["ckpt"], map_location="cpu", weights_only=False)


JUNK_VALUES = [None, 0, -1, 1.5, math.nan, "i2lmesh", "", [], {}, [1, 2], {"a": 1}, torch.zeros(2), b"x", True, 2,
               "1", 10 ** 30]


def _checkpoint_case(r: random.Random, nr: np.random.Generator, state: dict, path: Path) -> str:
    """Write a malformed checkpoint to ``path``; returns what it is. Most variants carry a light state dict (no
    network weights), so that they fail before a network is built; a few carry the full one (0.5 s each)."""
    light = {"joint_regressor": state["model"]["joint_regressor"], "faces": state["model"]["faces"]}
    roll = r.random()
    if roll < 0.15:
        data = nr.bytes(r.choice([0, 1, 8, 100, 5000]))
        if r.random() < 0.5:
            magic = [b"PK\x03\x04", b"\x80\x02", b"\x80\x04\x95", b"\x8a\x0alZ\xfc\x9cF\xf9 j\xa8P\x19."]
            data = r.choice(magic) + data
        path.write_bytes(data)
        return f"random bytes ({len(data)})"
    if roll < 0.25:
        full = io.BytesIO()
        torch.save({"format": "i2lmesh", "version": 1, "model_config": state["model_config"], "topology": {},
                    "model": light}, full)
        data = full.getvalue()
        cut = r.randint(0, len(data) - 1)
        path.write_bytes(data[:cut])
        return f"checkpoint truncated to {cut} of {len(data)} bytes"
    base = {"format": "i2lmesh", "version": 1, "model_config": dict(state["model_config"]),
            "topology": dict(state["topology"]), "model": {}}
    if roll < 0.5:  # a key missing or of the wrong type (the empty state dict stops a valid file before building)
        key = r.choice(list(base) + ["network"])
        if r.random() < 0.4 and key in base:
            del base[key]
            what = f"no {key!r}"
        else:
            base[key] = r.choice(JUNK_VALUES)
            what = f"{key!r} = {base[key]!r}"
        torch.save(base, path)
        return what + " (state dict without weights)"
    if roll < 0.72:  # a config field of the wrong type or value
        key = r.choice(list(state["model_config"]) + ["unknown_field"])
        value = r.choice(JUNK_VALUES + [0, 7, 33, 65, -64, "64", 64.0])
        base["model_config"][key] = value
        torch.save(base, path)
        return f"model_config[{key!r}] = {value!r} (state dict without weights)"
    if roll < 0.93:  # the state dict's form: only the regressor and faces (so building stops at the weights)
        model = dict(light)
        change = r.choice(["prefix", "prefix", "regressor-type", "regressor-type", "faces-type", "faces-type", "list",
                           "regressor-shape", "faces-range"])
        if change == "prefix":
            model = {f"module.{k}": v for k, v in light.items()}
            base["model"] = model
            torch.save(base, path)
            return "state dict keys prefixed with 'module.' (DataParallel)"
        if change == "regressor-type":
            model["joint_regressor"] = r.choice(["x", None, [[1.0]], 3])
        elif change == "faces-type":
            model["faces"] = r.choice(["x", None, [[0, 1]], 3.5])
        elif change == "regressor-shape":
            model["joint_regressor"] = torch.rand(*r.choice([(3, 7), (5,), (5, 40, 1), (0, 40)]))
        elif change == "faces-range":
            model["faces"] = r.choice([torch.full((60, 3), 999), torch.full((60, 3), -1), torch.zeros(60, 4),
                                       torch.rand(60, 3)])
        else:
            model = list(model.items())
        base["model"] = model
        torch.save(base, path)
        return f"state dict: {change} {_describe(model) if change == 'list' else ''}".strip()
    # The full state dict with one change: these build a network (0.5 s), a handful only.
    model = dict(state["model"])
    change = r.choice(["shape", "missing", "extra", "dtype", "topology", "faces-range"])
    if change == "shape":
        key = r.choice([k for k, v in model.items() if v.ndim > 0])
        model[key] = torch.zeros(*[s + 1 for s in model[key].shape])
    elif change == "missing":
        del model[r.choice([k for k in model if k not in ("joint_regressor", "faces")])]
    elif change == "extra":
        model["extra.weight"] = torch.zeros(3)
    elif change == "dtype":
        key = r.choice([k for k, v in model.items() if v.is_floating_point()])
        model[key] = model[key].to(torch.complex64)
    elif change == "topology":
        base["topology"] = r.choice(["", None, [], {"joint_names": 5}, {"root_index": "x"}, {"joint_names": []}])
    else:
        model["faces"] = torch.full((60, 3), 999, dtype=torch.int64)
    base["model"] = model
    torch.save(base, path)
    return f"full state dict: {change}" + (f" {base['topology']!r}" if change == "topology" else "")


@_params("ckpt")
def test_fuzz_checkpoint_loader(index, state, tmp_path):
    r = _rng("ckpt", index)
    nr = np.random.default_rng(r.getrandbits(32))
    path = tmp_path / "fuzzed.pt"
    what = _checkpoint_case(r, nr, state, path)
    _check_load_network(path, f"case ckpt-{index:03d} seed {SEED}: load_network on a checkpoint with {what}")


def _check_load_network(path: Path, where: str) -> None:
    from i2lmesh.inference import Predictor

    try:
        net, config = load_network(path)
    except CheckpointError as exc:
        assert _one_line(exc) and path.name in str(exc), f"message not one line naming the file: {exc!r}\n{where}"
        return
    except Exception as exc:  # noqa: BLE001
        raise AssertionError(f"uncaught {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                             f"\n{where}") from exc
    # Loaded: it must be usable (a topology the predictor can read, faces inside the mesh).
    assert isinstance(getattr(net, "topology", {}), dict), f"topology {net.topology!r} is not a dict\n{where}"
    faces = net.faces
    assert faces.numel() == 0 or (int(faces.min()) >= 0 and int(faces.max()) < config.num_vertices), \
        f"faces index vertices that do not exist (max {int(faces.max())}, {config.num_vertices} vertices)\n{where}"
    try:
        Predictor(net, config, net.topology, faces.cpu().numpy())
    except Exception as exc:  # noqa: BLE001
        raise AssertionError(f"load_network accepted a checkpoint the Predictor cannot use: {type(exc).__name__}: "
                             f"{exc}\n{where}") from exc


# ----------------------------------------------------------------------------------------------------------------
# The corpus: hand-written cases of each kind of failure the random cases found (kept whatever the seed is)

K_HUGE = np.array([[1e300, 0, 32], [0, 1e300, 32], [0, 0, 1.0]])
GOOD_XYWH = [[8.0, 8.0, 30.0, 30.0]]

CORPUS_CLI = {
    "threads-overflow": ["--bbox", GOOD_BOX, "--threads", "2147483648"],
    "focal-tiny": ["--bbox", GOOD_BOX, "--focal", "1e-300"],
    "focal-huge": ["--bbox", GOOD_BOX, "--focal", "1e308"],
    "root-depth-huge": ["--bbox", GOOD_BOX, "--root-depth", "1e308"],
    "bbox-huge": ["--bbox", "8,8,40,1e308"],
    "device-meta": ["--bbox", GOOD_BOX, "--device", "meta"],
    "max-frames-0": ["VIDEO", "--bbox", GOOD_BOX, "--max-frames", "0"],
}
CORPUS_BOXES = {
    "box-1e308": '{"good.png": [[8, 8, 40, 1e308]]}',
    "nan-literal": '{"good.png": [[8, 8, NaN, 44]]}',
    "deep-nesting": "[" * 100_000 + "]" * 100_000,
    "nobody": '{"good.png": [], "other.png": [[8, 8, 40, 44]]}',
    "booleans": "[[true, true, true, true]]",
}
CORPUS_API = {
    "focal-complex": lambda: (_picture(), dict(boxes=GOOD_XYWH, intrinsics=80 + 1j)),
    "focal-dict": lambda: (_picture(), dict(boxes=GOOD_XYWH, intrinsics={"f": 80})),
    "focal-list-with-dict": lambda: ([_picture(), _picture()], dict(boxes=[GOOD_XYWH, GOOD_XYWH],
                                                                     intrinsics=[80.0, {"f": 80}])),
    "root-depth-dict": lambda: (_picture(), dict(boxes=GOOD_XYWH, root_depth_m={"depth": 2.5})),
    "root-depth-complex": lambda: (_picture(), dict(boxes=GOOD_XYWH, root_depth_m=2.5 + 1j)),
    "K-huge": lambda: (_picture(), dict(boxes=GOOD_XYWH, intrinsics=K_HUGE)),
    "focal-tiny": lambda: (_picture(), dict(boxes=GOOD_XYWH, intrinsics=1e-300)),
    "root-depth-huge": lambda: (_picture(), dict(boxes=GOOD_XYWH, root_depth_m=1e308)),
    "box-huge": lambda: (_picture(), dict(boxes=[[8.0, 8.0, 30.0, 1e308]])),
    "object-image-detect": lambda: (_picture().astype(object), dict()),
    "object-image-box": lambda: (_picture().astype(object), dict(boxes=GOOD_XYWH)),
    "complex-image": lambda: (_picture().astype(np.complex64), dict(boxes=GOOD_XYWH)),
}


def _jpeg_claiming(width: int, height: int) -> bytes:
    return _absurd_header("JPEG", width, height, np.random.default_rng(0))


CORPUS_IMAGE = {
    "absurd-jpeg-65535x1.jpg": lambda: _jpeg_claiming(65535, 1),
    "absurd-jpeg-1x65535.jpg": lambda: _jpeg_claiming(1, 65535),
    "absurd-png-2147483647x1.png": lambda: _absurd_header("PNG", 2 ** 31 - 1, 1, np.random.default_rng(0)),
}


def _ckpt_light(state, change):
    def make(path: Path):
        base = {"format": "i2lmesh", "version": 1, "model_config": dict(state["model_config"]),
                "topology": dict(state["topology"]),
                "model": {"joint_regressor": state["model"]["joint_regressor"], "faces": state["model"]["faces"]}}
        change(base)
        torch.save(base, path)
    return make


def _ckpt_full(state, change):
    def make(path: Path):
        base = {"format": "i2lmesh", "version": 1, "model_config": dict(state["model_config"]),
                "topology": dict(state["topology"]), "model": dict(state["model"])}
        change(base)
        torch.save(base, path)
    return make


CORPUS_CKPT = {
    "version-str": lambda st: _ckpt_light(st, lambda b: b.update(version="1")),
    "version-none": lambda st: _ckpt_light(st, lambda b: b.update(version=None)),
    "version-tensor": lambda st: _ckpt_light(st, lambda b: b.update(version=torch.zeros(2))),
    "regressor-str": lambda st: _ckpt_light(st, lambda b: b["model"].update(joint_regressor="x")),
    "regressor-list": lambda st: _ckpt_light(st, lambda b: b["model"].update(joint_regressor=[[1.0]])),
    "input-size-0": lambda st: _ckpt_light(st, lambda b: b["model_config"].update(input_size=0)),
    "module-prefix": lambda st: _ckpt_light(st, lambda b: b.update(model={f"module.{k}": v
                                                                          for k, v in b["model"].items()})),
    "topology-joint-names-int": lambda st: _ckpt_full(st, lambda b: b.update(topology={"joint_names": 5})),
    "topology-str": lambda st: _ckpt_full(st, lambda b: b.update(topology="abc")),
    "faces-out-of-range": lambda st: _ckpt_full(st, lambda b: b["model"].update(
        faces=torch.full((60, 3), 999, dtype=torch.int64))),
}
CORPUS_COUNT = sum(len(c) for c in (CORPUS_CLI, CORPUS_BOXES, CORPUS_API, CORPUS_IMAGE, CORPUS_CKPT))


@pytest.mark.parametrize("name", list(CORPUS_CLI))
def test_fuzz_corpus_cli(name, files, cached_loading, tmp_path, capsys):
    inputs = [str(files["video"]) for o in CORPUS_CLI[name] if o == "VIDEO"]
    options = [o for o in CORPUS_CLI[name] if o != "VIDEO"]
    argv = ["demo", str(files["good"]), *inputs, "--checkpoint", str(files["ckpt"]), "--out", str(tmp_path / "out"),
            "--no-progress", *options]
    names = [o.lstrip("-") for o in options if o.startswith("--")] + ["good.png", "clip.avi"]
    _run_cli(argv, capsys, names, f"corpus cli {name}: i2lmesh {' '.join(argv)}")


@pytest.mark.parametrize("name", list(CORPUS_BOXES))
def test_fuzz_corpus_boxes(name, files, cached_loading, tmp_path, capsys):
    (tmp_path / "boxes.json").write_text(CORPUS_BOXES[name])
    argv = ["demo", str(files["good"]), str(files["other"]), "--checkpoint", str(files["ckpt"]), "--out",
            str(tmp_path / "out"), "--no-progress", "--boxes", str(tmp_path / "boxes.json")]
    _run_cli(argv, capsys, ["boxes.json", "good.png", "other.png", "box"],
             f"corpus boxes {name}: --boxes file containing {CORPUS_BOXES[name][:80]!r}")


@pytest.mark.parametrize("name", list(CORPUS_API))
def test_fuzz_corpus_api(name, predictor):
    image, kwargs = CORPUS_API[name]()
    _check_predict(predictor, image, kwargs, f"corpus api {name}")


@pytest.mark.parametrize("name", list(CORPUS_IMAGE))
def test_fuzz_corpus_image(name, tmp_path):
    path = tmp_path / name
    path.write_bytes(CORPUS_IMAGE[name]())
    _check_read_image(path, f"corpus image {name}: read_image")


@pytest.mark.parametrize("name", list(CORPUS_CKPT))
def test_fuzz_corpus_checkpoint(name, state, tmp_path):
    path = tmp_path / f"{name}.pt"
    CORPUS_CKPT[name](state)(path)
    _check_load_network(path, f"corpus ckpt {name}: load_network")
