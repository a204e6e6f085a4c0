"""Synthetic data generator: determinism (seed, workers), exact ground truth (silhouette, projection, parameters),
our on-disk format, backgrounds from a folder. Small images and few samples to stay fast."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from i2lmesh.data.synth import CHUNK_SIZE, SynthConfig, SynthRenderer, generate
from i2lmesh.data.synth.backgrounds import BackgroundSource
from i2lmesh.render import project_points

SIZE = 128


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_generator_same_seed_same_bytes_any_workers(tmp_path):
    """Same seed: identical images and annotations with 1 and 2 workers; another seed: different images."""
    out = tmp_path / "ds"  # the same folder each run: the annotations hold absolute image paths
    config = SynthConfig(kind="body", num=CHUNK_SIZE + 4, seed=3, size=SIZE)  # one full and one partial chunk
    generate(config, out, workers=1, progress=False)
    first = _files(out)
    assert len([n for n in first if n.startswith("images/")]) == config.num
    for p in out.rglob("*.jpg"):
        p.unlink()
    generate(config, out, workers=2, progress=False)
    assert _files(out) == first

    other = tmp_path / "other"
    generate(SynthConfig(kind="body", num=4, seed=4, size=SIZE), other, workers=1, progress=False)
    changed = _files(other)
    assert all(changed[name] != first[name] for name in changed if name.startswith("images/"))
    # a dataset of N samples is the first N of a larger one
    prefix = tmp_path / "prefix"
    generate(SynthConfig(kind="body", num=3, seed=3, size=SIZE), prefix, workers=1, progress=False)
    assert all(data == first[name] for name, data in _files(prefix).items() if name.startswith("images/"))


def test_written_dataset_reads_back(tmp_path):
    from i2lmesh.data.formats.i2lmesh import read_dataset

    generate(SynthConfig(kind="hand", num=3, seed=0, size=SIZE), tmp_path, workers=1, progress=False)
    records = read_dataset(tmp_path)
    assert len(records) == 3
    for r in records:
        assert r.kind == "hand" and r.joint_set.name == "mano21" and r.has_3d and r.fit_valid
        assert r.joints_cam_m.shape == (21, 3) and r.joints_img_px.shape == (21, 2)
        assert r.body_model == "anny-hand" and r.body_params["pose"].shape == (21, 3)
        assert Path(r.image_path).is_file() and r.image_size == (SIZE, SIZE)


@pytest.mark.parametrize("kind", ["body", "hand"])
def test_ground_truth_matches_the_picture(kind, request):
    model = request.getfixturevalue("anny_body" if kind == "body" else "anny_hand")
    renderer = SynthRenderer(SynthConfig(kind=kind, num=CHUNK_SIZE, seed=1, size=SIZE), model=model)
    samples = renderer.render_chunk(0)
    assert len(samples) == CHUNK_SIZE
    again = renderer.render_chunk(0)
    assert all(a.jpeg == b.jpeg for a, b in zip(samples, again)), "same renderer, same chunk, same bytes"

    r0 = samples[0].record
    pose = torch.from_numpy(np.stack([s.record.body_params["pose"] for s in samples]))
    shape = torch.from_numpy(np.stack([s.record.body_params["shape"] for s in samples]))
    trans = torch.from_numpy(np.stack([s.record.body_params["trans"] for s in samples]))
    with torch.no_grad():
        out = model(pose, shape, trans)
    kept = 0
    for k, sample in enumerate(samples):
        record = sample.record
        assert record.kind == kind and record.joint_set is model.joint_set
        # the recorded parameters give the rendered mesh and the recorded joints
        np.testing.assert_allclose(out.vertices_m[k].numpy(), sample.vertices_cam_m, atol=1e-5)
        np.testing.assert_allclose(out.joints_m[k].numpy(), record.joints_cam_m, atol=1e-5)
        # 2D joints are the projection of the camera-space joints with K
        np.testing.assert_allclose(record.joints_img_px, project_points(record.joints_cam_m, record.K), atol=1e-9)
        # every projected vertex inside the image lies on the silhouette (depth-hidden ones too: the silhouette is
        # the union of all triangles). A pixel is drawn when its centre is covered, so a vertex on the outline (or
        # on a sub-pixel finger) may fall between drawn centres: count it when one of the 4 pixel centres around
        # it is drawn (the mask read bilinearly is > 0 there).
        uv = project_points(sample.vertices_cam_m, record.K)
        inside = np.all((uv > -0.5) & (uv < SIZE - 0.5), axis=1)
        lo = np.floor(uv[inside]).astype(int)
        covered = np.zeros(len(lo), bool)
        for du in (0, 1):
            for dv in (0, 1):
                u, v = (lo[:, 0] + du).clip(0, SIZE - 1), (lo[:, 1] + dv).clip(0, SIZE - 1)
                covered |= sample.body_mask[v, u]
        assert covered.mean() >= 0.99
        if record.extra["truncated"]:
            assert not inside.all()
        else:
            assert inside.all(), "an untruncated sample is fully in view"
            kept += 1
        # the box is the silhouette's
        ys, xs = np.nonzero(sample.body_mask)
        np.testing.assert_array_equal(record.bbox_xywh, [xs.min(), ys.min(), np.ptp(xs) + 1, np.ptp(ys) + 1])
        assert np.all(record.joints_valid == 1) and record.root_depth_m == pytest.approx(record.joints_cam_m[0, 2])
        if sample.occluder_mask is None:
            assert record.extra["occluded_fraction"] == 0.0
    assert kept >= CHUNK_SIZE // 2
    assert r0.image_size == (SIZE, SIZE) and samples[0].image.shape == (SIZE, SIZE, 3)


def test_backgrounds_from_a_folder(tmp_path, caplog):
    from PIL import Image

    rng = np.random.default_rng(0)
    for name, size in (("a.png", (60, 40)), ("sub/b.jpg", (30, 90))):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(tmp_path / name)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    source = BackgroundSource(tmp_path)
    assert len(source.images.paths) == 3
    with caplog.at_level(logging.WARNING):
        images = [source.sample(np.random.default_rng(s), (32, 48)) for s in range(12)]
    assert all(im.shape == (32, 48, 3) and im.dtype == np.float32 and 0 <= im.min() <= im.max() <= 1
               for im in images)
    assert "broken.png" in caplog.text
    again = source.sample(np.random.default_rng(5), (32, 48))
    np.testing.assert_array_equal(again, images[5])
    with pytest.raises(FileNotFoundError, match="no images"):
        (tmp_path / "empty").mkdir()
        BackgroundSource(tmp_path / "empty")


def test_cli(tmp_path, capsys):
    from i2lmesh.cli import main

    out = tmp_path / "cli"
    assert main(["synth", "--out", str(out), "--kind", "hand", "--num", "2", "--size", "64", "--no-progress",
                 "--preview"]) == 0
    assert (out / "annotations.json").is_file() and (out / "preview.png").is_file()
    assert len(list((out / "images").glob("*.jpg"))) == 2
    assert main(["synth", "--out", str(out), "--num", "2", "--backgrounds", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err
