"""Inputs users of this field hit (issue 10): devices this machine lacks, an outside detector that found nobody,
DataParallel/DDP checkpoints, boxes far from a person's shape, and empty boxes. Tiny random networks only."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny_net import rendered_image as _rendered_image
from tiny_net import tiny_net as _tiny_net

from i2lmesh import CheckpointError, load_network, save_network
from i2lmesh.cli import main
from i2lmesh.device import DeviceError, available_devices, resolve_device
from i2lmesh.inference import Predictor
from i2lmesh.inference.predictor import PERSON_BOX_ASPECT, box_shape_warning

# A CUDA index one past the machine's count: absent on every machine, with or without GPUs.
ABSENT_GPU = f"cuda:{torch.cuda.device_count()}"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny_body.pt"
    save_network(_tiny_net(), path)
    return path


@pytest.fixture(scope="module")
def image_file(tmp_path_factory):
    from PIL import Image

    path = tmp_path_factory.mktemp("img") / "a.png"
    Image.fromarray(_rendered_image()[0]).save(path)
    return path


# -- devices ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", [ABSENT_GPU, "gpu", "banana", "meta", ""])
def test_absent_or_unknown_device_is_one_clear_error(text):
    with pytest.raises(DeviceError, match="available here: cpu") as info:
        resolve_device(text)
    assert "\n" not in str(info.value) and repr(text) in str(info.value)


def test_usable_devices_resolve():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == (torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu"))
    assert available_devices()[0] == "cpu"
    assert len(available_devices()) == 1 + torch.cuda.device_count() + ("mps" in available_devices())


@pytest.mark.parametrize("command", [
    ["demo", "{img}", "--checkpoint", "{ckpt}", "--out", "{out}", "--bbox", "1,1,20,20", "--no-progress"],
    ["eval", "--checkpoint", "{ckpt}", "--data", "{out}", "--out", "{out}/r.json"],
    ["train", "--preset", "cpu-small", "--data", "{out}", "--out", "{out}/run"],
    ["quickstart", "--out", "{out}/qs"],
    ["reproduce", "table1", "--budget-steps", "1", "--out", "{out}/rep"],
])
def test_every_command_with_a_device_refuses_an_absent_one(command, checkpoint, image_file, tmp_path, capsys):
    args = [a.format(img=image_file, ckpt=checkpoint, out=tmp_path) for a in command]
    code = main(args + ["--device", ABSENT_GPU])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith(f"i2lmesh {command[0]}: error: device '{ABSENT_GPU}'") and "available here: cpu" in err[0]
    assert not (tmp_path / "qs").exists() and not (tmp_path / "run").exists()  # refused before any work


def test_api_refuses_an_absent_device(checkpoint):
    for call in (lambda: Predictor.from_checkpoint(checkpoint, device=ABSENT_GPU),
                 lambda: load_network(checkpoint, device=ABSENT_GPU)):
        with pytest.raises(DeviceError, match="available here"):
            call()


# -- an outside detector that found nobody ---------------------------------------------------------------------------

def test_empty_box_list_means_nobody(checkpoint):
    image, _ = _rendered_image()
    predictor = Predictor.from_checkpoint(checkpoint, optimise=False)
    assert predictor.predict(image, boxes=[]) == []
    assert predictor.predict(image, boxes=np.zeros((0, 4))) == []
    batch = predictor.predict([image, image], boxes=[[], [[60, 25, 50, 70]]])
    assert len(batch[0]) == 0 and len(batch[1]) == 1


def test_demo_boxes_json_with_an_empty_list_writes_the_no_person_json(checkpoint, image_file, tmp_path, capsys):
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({image_file.name: []}))
    out = tmp_path / "out"
    code = main(["demo", str(image_file), "--checkpoint", str(checkpoint), "--out", str(out), "--boxes", str(boxes),
                 "--no-progress"])
    assert code == 0, capsys.readouterr().err
    doc = json.loads((out / "a.json").read_text())
    assert doc["num_people"] == 0 and doc["people"] == [] and doc["message"] == "no person found"
    assert (out / "a_overlay.png").is_file() and not (out / "a.obj").exists()


# -- DataParallel / DDP checkpoints ------------------------------------------------------------------------------------

def _prefixed(path, out, prefix="module."):
    data = torch.load(path, weights_only=False)
    data["model"] = {prefix + k: v for k, v in data["model"].items()}
    torch.save(data, out)
    return out


def test_checkpoint_with_module_prefix_loads_and_gives_the_same_outputs(checkpoint, tmp_path):
    net, _ = load_network(checkpoint)
    for prefix in ("module.", "module.module."):
        wrapped, _ = load_network(_prefixed(checkpoint, tmp_path / "ddp.pt", prefix))
        x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            torch.testing.assert_close(wrapped(x).vertices_hm, net(x).vertices_hm, rtol=0, atol=0)
    predictor = Predictor.from_checkpoint(_prefixed(checkpoint, tmp_path / "ddp.pt"), optimise=False)
    assert len(predictor.predict(_rendered_image()[0], boxes=[[60, 25, 50, 70]])) == 1


def test_init_from_a_module_prefixed_checkpoint(checkpoint, tmp_path):
    from i2lmesh.engine.checkpoint import load_initial_weights

    net = _tiny_net(seed=5)
    load_initial_weights(net, _prefixed(checkpoint, tmp_path / "ddp.pt"))
    saved = torch.load(checkpoint, weights_only=False)["model"]
    assert all(torch.equal(v, saved[k]) for k, v in net.state_dict().items())


def test_a_real_mismatch_names_the_first_missing_and_unexpected_keys(checkpoint, tmp_path):
    data = torch.load(checkpoint, weights_only=False)
    state = data["model"]
    state["extra.weight"] = torch.zeros(1)
    dropped = [k for k in state if k.endswith(".weight")][:2]
    for k in dropped:
        del state[k]
    key = next(k for k in state if k.endswith("conv_x.weight"))
    state[key] = torch.zeros(3)
    torch.save(data, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as info:
        load_network(tmp_path / "bad.pt")
    message = str(info.value)
    assert "\n" not in message and f"missing keys: {dropped[0]}, {dropped[1]}" in message
    assert "unexpected keys: extra.weight" in message and f"wrong shapes: {key} (3,)" in message


# -- boxes far from a person's shape, and empty boxes --------------------------------------------------------------

def test_box_shape_warning_limits():
    lo, hi = PERSON_BOX_ASPECT["body"]
    assert box_shape_warning(np.array([0, 0, 100, 250.0]), "body") is None  # a standing person
    assert box_shape_warning(np.array([0, 0, hi * 100 - 1, 100.0]), "body") is None
    assert "w/h = 3.00" in box_shape_warning(np.array([0, 0, 768, 256.0]), "body")
    assert box_shape_warning(np.array([0, 0, lo * 100 - 1, 100.0]), "body") is not None
    assert box_shape_warning(np.array([0, 0, 100, 100.0]), "hand") is None


def test_whole_wide_image_box_warns_in_console_and_json(checkpoint, tmp_path, caplog):
    from PIL import Image

    wide = tmp_path / "wide.png"
    Image.fromarray(np.tile(_rendered_image(width=256, height=256)[0], (1, 3, 1))).save(wide)
    out = tmp_path / "out"
    with caplog.at_level("WARNING"):
        code = main(["demo", str(wide), "--checkpoint", str(checkpoint), "--out", str(out), "--bbox", "0,0,768,256",
                     "--no-progress"])
    assert code == 0
    person = json.loads((out / "wide.json").read_text())["people"][0]
    assert len(person["warnings"]) == 1 and "far from a body's proportions" in person["warnings"][0]
    assert any("wide.png" in r.getMessage() and "w/h = 3.00" in r.getMessage() for r in caplog.records)
    code = main(["demo", str(wide), "--checkpoint", str(checkpoint), "--out", str(out), "--bbox", "300,20,90,200",
                 "--no-progress"])
    assert code == 0 and json.loads((out / "wide.json").read_text())["people"][0]["warnings"] == []


def test_zero_width_bbox_skips_each_input_and_the_run_completes(checkpoint, image_file, tmp_path, capsys):
    second = tmp_path / "b.png"
    second.write_bytes(image_file.read_bytes())
    out = tmp_path / "out"
    code = main(["demo", str(image_file), str(second), "--checkpoint", str(checkpoint), "--out", str(out), "--bbox",
                 "10,10,0,50", "--no-progress"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("i2lmesh demo:")]
    assert code == 1 and len(err) == 2  # one line per input, the run went through both
    assert all("is empty" in line for line in err) and "a.png" in err[0] and "b.png" in err[1]
    # Text that is not a box is still a usage error that stops the run.
    code = main(["demo", str(image_file), "--checkpoint", str(checkpoint), "--out", str(out), "--bbox", "10,10,x,50",
                 "--no-progress"])
    assert code == 2


# -- never NaN or inf in an output ----------------------------------------------------------------------------------

@pytest.mark.parametrize("option, value", [("--focal", "1e300"), ("--focal", "1e-300"), ("--focal", "nan"),
                                           ("--root-depth", "1e300"), ("--root-depth", "-2"),
                                           ("--root-depth", "inf")])
def test_absurd_camera_values_are_usage_errors(option, value, checkpoint, image_file, tmp_path, capsys):
    code = main(["demo", str(image_file), "--checkpoint", str(checkpoint), "--out", str(tmp_path / "out"), "--bbox",
                 "60,25,50,70", "--no-progress", option, value])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"i2lmesh demo: error: {option} must be between")
    assert not (tmp_path / "out").exists()


def test_api_refuses_absurd_values_and_huge_boxes(checkpoint):
    from i2lmesh.inference import BadInputError

    image, _ = _rendered_image()
    predictor = Predictor.from_checkpoint(checkpoint, optimise=False)
    box = [[60, 25, 50, 70]]
    for kwargs in (dict(intrinsics=1e30), dict(intrinsics=np.diag([1e-9, 1e-9, 1.0])), dict(intrinsics={"f": 1}),
                   dict(intrinsics=[[1, 0, 0], [0, 1, 0], [0, 0, 1j]]), dict(root_depth_m=1e300),
                   dict(root_depth_m=[1 + 2j]), dict(root_depth_m="far")):
        with pytest.raises(BadInputError):
            predictor.predict(image, boxes=box, **kwargs)
    with pytest.raises(BadInputError, match="within"):
        predictor.predict(image, boxes=[[0, 0, 1e308, 1e308]])
    with pytest.raises(BadInputError, match="should be numbers"):
        predictor.predict(image, boxes=[[60, 25, 50 + 1j, 70]])


def test_nan_weights_give_one_line_and_no_files(tmp_path, image_file, capsys):
    net = _tiny_net()
    with torch.no_grad():
        next(p for n, p in net.named_parameters() if "conv_x" in n).fill_(float("nan"))
    save_network(net, tmp_path / "nan.pt")
    out = tmp_path / "out"
    code = main(["demo", str(image_file), "--checkpoint", str(tmp_path / "nan.pt"), "--out", str(out), "--bbox",
                 "60,25,50,70", "--no-progress"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("i2lmesh demo:")]
    assert code == 1 and len(err) == 1 and "not finite" in err[0]
    assert not any(out.glob("a.*"))


# -- odd paths ---------------------------------------------------------------------------------------------------

@pytest.mark.skipif(not hasattr(__import__("os"), "mkfifo"), reason="needs POSIX FIFOs and symbolic links")
def test_odd_paths_each_get_their_own_line_and_the_run_completes(checkpoint, image_file, tmp_path, capsys):
    import os

    os.symlink(tmp_path / "loop1", tmp_path / "loop2")
    os.symlink(tmp_path / "loop2", tmp_path / "loop1")
    os.symlink(tmp_path / "nowhere.png", tmp_path / "broken.png")
    os.mkfifo(tmp_path / "fifo.png")
    too_long = tmp_path / ("x" * 300 + ".png")
    inputs = {"loop1": "Too many levels of symbolic links", "broken.png": "broken symbolic link",
              "fifo.png": "not a regular file", too_long.name: "cannot be opened"}
    out = tmp_path / "out"
    code = main(["demo", str(image_file), *[str(tmp_path / name) for name in inputs], "--checkpoint", str(checkpoint),
                 "--out", str(out), "--bbox", "60,25,50,70", "--no-progress"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("i2lmesh demo:")]
    assert code == 1 and len(err) == len(inputs)
    for line, (name, reason) in zip(err, inputs.items()):
        assert name in line and reason in line, line
    assert (out / "a.json").is_file()
    # An output folder that is a file: one line, exit 2.
    code = main(["demo", str(image_file), "--checkpoint", str(checkpoint), "--out", str(image_file), "--bbox",
                 "60,25,50,70", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "cannot be used as the output folder" in err[0]


def test_detector_keypoints_reach_the_result_in_original_pixels(checkpoint):
    from i2lmesh.inference.detect import Detection

    wide = np.zeros((100, 4200, 3), np.uint8)  # downscaled to 4096 px wide for processing
    scale = 4096 / 4200
    keypoints = np.array([[100.0, 20.0], [140.0, 80.0]])  # original pixels
    predictor = Predictor.from_checkpoint(checkpoint, optimise=False)
    predictor.detect = lambda rgb: [Detection(np.array([90.0, 10.0, 60.0, 80.0]) * scale, 0.9, "mediapipe",
                                              keypoints * scale, np.array([0.8, 0.4]), "test2", side="left")]
    person = predictor.predict(wide)[0]
    np.testing.assert_allclose(person.keypoints_2d_px, keypoints, rtol=1e-6)
    doc = person.to_dict()
    assert doc["detector_keypoints"] == {"set": "test2", "names": None, "xy_px": keypoints.tolist(),
                                         "scores": [0.8, 0.4]}  # names: None for a set nobody defined
    assert doc["side"] == "left" and doc["detector_score"] == 0.9


def test_reruns_into_the_same_out_stay_consistent(checkpoint, image_file, tmp_path, caplog):
    """A rerun that finds nobody removes the earlier meshes; the output folder given as input is not re-read; a
    --boxes entry that names no input gets a warning."""
    import shutil

    folder = tmp_path / "io"
    folder.mkdir()
    shutil.copy(image_file, folder / "a.png")
    args = ["demo", str(folder), "--checkpoint", str(checkpoint), "--out", str(folder), "--no-progress"]
    assert main(args + ["--bbox", "60,25,50,70"]) == 0 and (folder / "a.obj").is_file()
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"a.png": [], "nosuch.png": [[1, 2, 3, 4]]}))
    with caplog.at_level("WARNING"):
        assert main(args + ["--boxes", str(boxes)]) == 0
    assert json.loads((folder / "a.json").read_text())["num_people"] == 0
    assert not (folder / "a.obj").exists() and not (folder / "a.glb").exists()
    assert not (folder / "a_overlay_overlay.png").exists()  # its own overlay was not taken as a photo
    assert any("'nosuch.png'" in r.getMessage() for r in caplog.records)


def test_warnings_name_the_video_frame_or_list_item(checkpoint, caplog):
    image, _ = _rendered_image()
    predictor = Predictor.from_checkpoint(checkpoint, optimise=False)
    with caplog.at_level("WARNING"):
        predictor.predict([image, image], boxes=[[[60, 25, 50, 70]], [[0, 0, 150, 30]]])
    assert any(r.getMessage().startswith("<image 1 of the list>: box w/h") for r in caplog.records)
