"""Inference tests: the predictor against the raw network + decoder, reference preprocessing, batching, uncertainty
units, root depth, One Euro, box parsing and NMS, bad inputs and the demo command (mesh files:
tests/test_mesh_files.py; HOG on drawn people: tests/test_detect.py). Tiny random networks only."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from i2lmesh import save_network
from i2lmesh.geometry import crop_transforms, decode_to_camera, process_bbox
from i2lmesh.inference import (BadInputError, OneEuroFilter, Predictor, k_value_root_depth, load_boxes_json,
                               non_maximum_suppression, parse_bbox, read_image)
from i2lmesh.inference.predictor import spread_to_camera_mm
from tiny_net import rendered_image as _rendered_image, tiny_net as _tiny_net

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny_body.pt"
    save_network(_tiny_net(), path)
    return path


def test_predictor_equals_raw_network_and_decoder(checkpoint):
    image, K = _rendered_image()
    predictor = Predictor.from_checkpoint(checkpoint, optimise=False)
    box = [60.0, 25.0, 50.0, 70.0]
    (person,) = predictor.predict(image, boxes=[box], intrinsics=K, root_depth_m=2.5)
    cfg = predictor.config
    processed = process_bbox(box, image.shape[1], image.shape[0])
    img2patch, patch2img = crop_transforms(processed, cfg.input_size)
    import cv2

    patch = cv2.warpAffine(image.astype(np.float32), img2patch, (cfg.input_size, cfg.input_size),
                           flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)  # the reference's float warp
    with torch.no_grad():
        out = predictor.net(torch.from_numpy(patch.transpose(2, 0, 1) / 255.0).float()[None])
    args = (patch2img, 2.5, K, cfg.input_size, cfg.heatmap_size, cfg.depth_bins, cfg.bbox_3d_size_m)
    expected_v = decode_to_camera(out.vertices_hm[0].double().numpy(), *args)
    expected_j = predictor.net.joint_regressor.double().numpy() @ expected_v  # J x the camera-space mesh
    assert person.vertices_m.shape == (40, 3) and person.joints_m.shape == (5, 3)
    assert person.joints_2d_px.shape == (5, 2) and person.faces.shape == (60, 3)
    np.testing.assert_allclose(person.vertices_m, expected_v, atol=1e-5)
    np.testing.assert_allclose(person.joints_m, expected_j, atol=1e-5)
    # 2D joints are the projections of the 3D joints (metres in, pixels out).
    uv = person.joints_m[:, :2] / person.joints_m[:, 2:] * K[0, 0] + K[:2, 2]
    np.testing.assert_allclose(person.joints_2d_px, uv, atol=1e-3)
    np.testing.assert_allclose(person.box_processed_xywh, processed)
    assert person.root_depth_source == "user" and person.intrinsics_source == "user"
    assert person.vertex_uncertainty_mm.shape == (40,) and person.vertex_uncertainty_xyz_mm.shape == (40, 3)
    assert np.all(person.vertex_uncertainty_mm > 0) and 0.0 <= person.score <= 1.0
    # Uncertainty norm is the norm of the per-axis values, all in millimetres.
    np.testing.assert_allclose(person.joint_uncertainty_mm, np.linalg.norm(person.joint_uncertainty_xyz_mm, axis=1),
                               rtol=1e-5)
    # Optimised network (BN folded, channels_last) gives the same meshes.
    fast = Predictor.from_checkpoint(checkpoint, optimise=True)
    (same,) = fast.predict(image, boxes=[box], intrinsics=K, root_depth_m=2.5)
    np.testing.assert_allclose(same.vertices_m, person.vertices_m, atol=1e-4)


def test_box_is_processed_as_the_reference():
    # (10, 20, 40, 80): x2 = 10 + 39, y2 = 20 + 79 -> w 39, h 79, centre (29.5, 59.5); square 79, x1.25 = 98.75.
    box = process_bbox([10, 20, 40, 80], 640, 480)
    np.testing.assert_allclose(box, [29.5 - 98.75 / 2, 59.5 - 98.75 / 2, 98.75, 98.75])


def test_batching_gives_the_same_results(checkpoint):
    """Batch 1 and batch 8 differ only in how the convolutions order their sums. Compared in float64 (the network
    converted with .double()), that reorders sums at ~1e-16 relative; the spread sqrt(E[x^2] - E[x]^2) loses up to
    (mean / spread)^2 <= (16 bins / 0.1 bin)^2 ~ 3e4 of it to cancellation: ~1e-11 relative, far below the
    float32 results' own rounding (1 ulp = 1.2e-7 relative), hence rtol 1e-6. (In float32 the same reasoning gives
    up to ~1e-3, which tests nothing.) The float32 path is the same code."""
    images = [_rendered_image(seed=s)[0] for s in range(3)]
    boxes = [[[60, 25, 50, 70], [10, 10, 40, 40]], [[30, 20, 60, 80]], [[5, 5, 100, 100], [80, 30, 30, 50]]]
    runs = []
    for batch_size in (1, 8):
        predictor = Predictor.from_checkpoint(checkpoint, optimise=False, batch_size=batch_size)
        predictor.net.double()
        runs.append(predictor.predict(images, boxes=boxes))
    one, many = runs
    assert [len(r) for r in many] == [2, 1, 2]
    for people_a, people_b in zip(one, many):
        for a, b in zip(people_a, people_b):
            assert a.vertices_m.dtype == np.float32  # results keep their documented dtype
            np.testing.assert_allclose(a.vertices_m, b.vertices_m, rtol=1e-6, atol=0)  # float32 output rounding
            np.testing.assert_allclose(a.vertex_uncertainty_mm, b.vertex_uncertainty_mm, rtol=1e-6, atol=0)


def test_uncertainty_units_analytic():
    # 1 bin of x spread, 256 px box, 64 bins -> 4 image px; at 2 m with f = 1000 px -> 8 mm.
    # 1 depth bin of 64 over 2 m -> 31.25 mm.
    K = np.array([[1000.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    mm = spread_to_camera_mm(np.array([[1.0, 1.0, 1.0]]), np.array([2.0]), 256.0, 256.0, K, 64, 64, 2.0)
    np.testing.assert_allclose(mm, [[8.0, 16.0, 31.25]])
    grown = spread_to_camera_mm(np.array([[2.0, 3.0, 0.5]]), np.array([2.0]), 256.0, 256.0, K, 64, 64, 2.0)
    np.testing.assert_allclose(grown, [[16.0, 48.0, 15.625]])
    farther = spread_to_camera_mm(np.array([[1.0, 1.0, 1.0]]), np.array([4.0]), 256.0, 256.0, K, 64, 64, 2.0)
    assert farther[0, 0] == pytest.approx(16.0) and farther[0, 2] == pytest.approx(31.25)


def test_k_value_root_depth_analytic_and_on_synthetic_records(tmp_path):
    # A 2 m x 2 m square at 5 m seen with f = 1000 covers 400 x 400 px.
    K = np.diag([1000.0, 1000.0, 1.0])
    assert k_value_root_depth([0, 0, 400, 400], K, "body") == pytest.approx(5.0)
    assert k_value_root_depth([0, 0, 100, 100], K, "hand") == pytest.approx(2.0)
    from i2lmesh.data.formats.i2lmesh import read_dataset
    from i2lmesh.data.synth import SynthConfig, generate

    generate(SynthConfig(kind="body", num=12, seed=3, size=128), tmp_path, workers=1, progress=False)
    errors = []
    for record in read_dataset(tmp_path):
        box = process_bbox(record.bbox_xywh, *record.image_size)
        errors.append(abs(k_value_root_depth(box, record.K, "body") / record.root_depth_m - 1.0))
    assert np.median(errors) < 0.3, f"median relative root-depth error {np.median(errors):.2f}"


def test_one_euro_filter():
    f = OneEuroFilter(min_cutoff_hz=1.0, beta=0.0)
    constant = np.full((4, 3), 1.5)
    for _ in range(10):
        np.testing.assert_allclose(f(constant, 1 / 30), constant)
    rng = np.random.default_rng(0)
    noisy = 1.0 + rng.normal(0, 0.05, 300)  # jitter around a still point
    f = OneEuroFilter(min_cutoff_hz=1.0, beta=0.0)
    smooth = np.array([f(np.array([x]), 1 / 30)[0] for x in noisy])
    assert np.abs(smooth - 1.0)[30:].mean() < 0.5 * np.abs(noisy - 1.0)[30:].mean()
    assert np.std(np.diff(smooth)) < 0.3 * np.std(np.diff(noisy))

    def frames_to_follow_a_step(beta):  # a 1 m jump: the speed term (beta) opens the filter up
        f = OneEuroFilter(min_cutoff_hz=1.0, beta=beta)
        f(np.zeros(1), 1 / 30)
        return next(i for i in range(1, 300) if f(np.ones(1), 1 / 30)[0] > 0.9)

    assert frames_to_follow_a_step(5.0) < frames_to_follow_a_step(0.0)


def test_nms_and_box_parsing(tmp_path):
    boxes = np.array([[0, 0, 10, 20], [1, 1, 10, 20], [50, 50, 10, 10], [2, 2, 4, 4]], float)
    keep = non_maximum_suppression(boxes, np.array([0.9, 0.8, 0.7, 0.95]))
    assert keep.tolist() == [3, 2]  # [3] (the best score) lies inside [0] and [1]: one person (tests/test_detect.py)
    keep = non_maximum_suppression(boxes[:3], np.array([0.9, 0.8, 0.7]))
    assert keep.tolist() == [0, 2]
    np.testing.assert_allclose(parse_bbox("10, 20,30.5,40"), [10, 20, 30.5, 40])
    for bad in ("1,2,3", "a,b,c,d", "1,2,nan,4", "1,2,inf,4"):
        with pytest.raises(ValueError, match="four finite numbers"):
            parse_bbox(bad)
    # An empty box parses; the Predictor skips the image it is given for (one line, the other inputs complete).
    assert parse_bbox("0,0,0,5").tolist() == [0, 0, 0, 5]
    (tmp_path / "b.json").write_text(json.dumps({"img.jpg": [[1, 2, 3, 4]], "other": [5, 6, 7, 8]}))
    boxes = load_boxes_json(tmp_path / "b.json")
    assert boxes["img.jpg"][0].tolist() == [1, 2, 3, 4] and boxes["other"][0].tolist() == [5, 6, 7, 8]


def test_read_image_conversions_and_errors(tmp_path):
    import cv2
    from PIL import Image

    rgb = np.random.default_rng(0).integers(0, 255, (30, 50, 3)).astype(np.uint8)
    cv2.imwrite(str(tmp_path / "16.png"), (rgb.astype(np.uint16) * 257)[:, :, ::-1])
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "a.png")
    Image.fromarray(rgb[:, :, 0]).save(tmp_path / "g.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    Image.fromarray(rgb).save(tmp_path / "r.jpg", exif=exif, quality=95)
    for name in ("16.png", "a.png", "g.png"):
        loaded = read_image(tmp_path / name)
        assert loaded.rgb.shape == (30, 50, 3) and loaded.rgb.dtype == np.uint8
    assert np.abs(read_image(tmp_path / "16.png").rgb.astype(int) - rgb).max() <= 1
    rotated = read_image(tmp_path / "r.jpg")
    assert rotated.rgb.shape == (50, 30, 3) and rotated.original_size == (30, 50)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 4)
    data = (tmp_path / "r.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "t.txt").write_text("hello")
    for name in ("bad.jpg", "cut.jpg", "empty.png", "t.txt", "missing.png"):
        with pytest.raises(BadInputError) as info:
            read_image(tmp_path / name)
        assert "\n" not in str(info.value) and name in str(info.value)


def test_predictor_rejects_box_outside_image_and_wrong_kind(checkpoint):
    image, _ = _rendered_image()
    predictor = Predictor.from_checkpoint(checkpoint, optimise=False)
    with pytest.raises(BadInputError, match="outside"):
        predictor.predict(image, boxes=[[500, 400, 50, 50]])
    with pytest.raises(BadInputError, match="body network"):
        predictor.predict(image, boxes=[[10, 10, 50, 50]], kind="hand")


def test_demo_cli_on_a_folder_with_bad_input(checkpoint, tmp_path, capsys):
    from PIL import Image

    from i2lmesh.cli import main

    folder = tmp_path / "in"
    folder.mkdir()
    image, _ = _rendered_image()
    Image.fromarray(image).save(folder / "good.png")
    Image.fromarray(image).convert("L").save(folder / "gray.png")
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00garbage" * 20)
    out = tmp_path / "out"
    code = main(["demo", str(folder), "--checkpoint", str(checkpoint), "--out", str(out), "--bbox", "60,25,50,70",
                 "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1  # some inputs failed, the others completed
    errors = [line for line in err.splitlines() if line.startswith("i2lmesh demo:")]
    assert len(errors) == 1 and "corrupt.jpg" in errors[0] and "Traceback" not in err
    for stem in ("good", "gray"):
        for suffix in ("_overlay.png", ".obj", ".glb", ".json"):
            assert (out / f"{stem}{suffix}").is_file(), f"{stem}{suffix} missing"
    doc = json.loads((out / "good.json").read_text())
    assert doc["num_people"] == 1 and len(doc["people"][0]["joints_3d_m"]) == 5
    assert doc["people"][0]["box_source"] == "user" and doc["people"][0]["root_depth_source"].startswith("k-value")
    assert not (out / "corrupt.json").exists()
    # Wrong kind: the whole run stops with one line and exit code 2.
    code = main(["demo", str(folder / "good.png"), "--checkpoint", str(checkpoint), "--out", str(out), "--kind",
                 "hand", "--bbox", "1,1,5,5", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "body network" in err[0]
    assert math.isfinite(doc["people"][0]["root_depth_m"])


def test_demo_hand_without_box_or_mediapipe_asks_for_a_box(tmp_path, capsys, monkeypatch):
    from PIL import Image

    from i2lmesh.cli import main

    # Where mediapipe is installed, run as where it is not (no wheel for the platform).
    monkeypatch.setattr("i2lmesh.inference.detect.mediapipe_available", lambda: False)

    save_network(_tiny_net(kind="hand"), tmp_path / "hand.pt")
    Image.fromarray(_rendered_image()[0]).save(tmp_path / "hand.png")
    code = main(["demo", str(tmp_path / "hand.png"), "--checkpoint", str(tmp_path / "hand.pt"), "--out",
                 str(tmp_path / "out"), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--bbox" in err[0]
    code = main(["demo", str(tmp_path / "hand.png"), "--checkpoint", str(tmp_path / "hand.pt"), "--out",
                 str(tmp_path / "out"), "--bbox", "40,20,60,60", "--no-progress"])
    assert code == 0 and (tmp_path / "out" / "hand.glb").is_file()
