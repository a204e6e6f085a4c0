"""Pseudo-labelling (issue 17): rejection rules as the loaders', fits from exact keypoints, resumable sharded runs,
model -> model conversion (Anny -> Anny: SMPL files are not available here), and training on the result."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from i2lmesh.bodymodels.joint_sets import H36M_17
from i2lmesh.data.formats import _common
from i2lmesh.data.formats.i2lmesh import read_dataset, write_dataset
from i2lmesh.data.record import COCO_18, SampleRecord
from i2lmesh.fitting import FitConfig
from i2lmesh.fitting.synthetic import synthetic_targets
from i2lmesh.pseudo_label import (LabelOptions, LabelStats, ModelBank, Source, blazepose_to_coco18,
                                  build_correspondence, convert_fit, label_records, pseudo_label)
from i2lmesh.pseudo_label.convert import vertex_errors_mm
from i2lmesh.pseudo_label.pipeline import shard_from_env
from i2lmesh.pseudo_label.rules import default_threshold_mm, fit_error_3d_mm, fit_error_hm

pytestmark = pytest.mark.usefixtures("one_thread")
FAST = ((10.0, 10.0, 10, 10.0), (1.0, 1.0, 5, 1.0))


def _records(body, num: int, seed: int, with_3d: bool = True) -> tuple[list[SampleRecord], dict]:
    """Synthetic people with exact Human3.6M keypoints (2D px and 3D camera m), 512 px images (not written)."""
    t = synthetic_targets(body, num, seed, "h36m17")
    out = []
    for i in range(num):
        uv = t["keypoints_2d"][i].numpy().astype(np.float64)
        lo, hi = uv.min(0), uv.max(0)
        out.append(SampleRecord(image_path=f"/nonexistent/{i}.jpg", image_size=(512, 512),
                                bbox_xywh=np.r_[lo, hi - lo], K=t["K"][i].numpy().astype(np.float64),
                                joint_set=H36M_17, joints_img_px=uv,
                                joints_cam_m=t["keypoints_3d"][i].numpy().astype(np.float64),
                                joints_valid=np.ones(17), has_3d=with_3d, sample_id=str(i), dataset="synthetic"))
    return out, t


def test_rules_are_the_loaders_rules():
    rng = np.random.default_rng(0)
    # 3D: Human3.6M joints, the loader's fit_error_3d_mm on the fit's H36M joints
    gt = rng.normal(size=(17, 3))
    fit = gt + rng.normal(scale=0.02, size=(17, 3)) + 5.0
    ours = fit_error_3d_mm(gt, fit, np.ones(17))
    assert ours == pytest.approx(_common.fit_error_3d_mm(gt, H36M_17, fit), abs=1e-9)
    assert ours > 0 and fit_error_3d_mm(gt, fit, np.zeros(17)) is None
    # 2D: MSCOCO's 17 + Pelvis rule, the fit's Pelvis = mean of its projected hips
    K = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    fit3d = np.c_[rng.uniform(-0.5, 0.5, (17, 2)), rng.uniform(3, 4, 17)]
    fit_px = _common.project(fit3d, K)
    joints = np.concatenate([fit_px, fit_px[11:13].mean(0, keepdims=True)]) + rng.normal(scale=4, size=(18, 2))
    valid = (rng.uniform(size=18) > 0.2).astype(float)
    box = np.array([200.0, 100, 150, 300])
    expected = _common.coco_fit_error_hm(joints, valid, fit3d, K, box, (640, 480))
    fit_px18 = np.concatenate([fit_px, fit_px[11:13].mean(0, keepdims=True)])
    assert fit_error_hm(joints, valid, fit_px18, box, (640, 480)) == pytest.approx(expected, abs=1e-9)
    assert default_threshold_mm("body") == 25.0 and default_threshold_mm("hand") == pytest.approx(3.75)


def test_blazepose_maps_to_coco_by_name():
    from i2lmesh.inference.keypoints import BLAZEPOSE_33

    xy = np.arange(66, dtype=float).reshape(33, 2)
    scores = np.full(33, 0.9)
    scores[BLAZEPOSE_33.index("L_Hip")] = 0.3
    joints, valid, sc = blazepose_to_coco18(xy, scores)
    for k, name in enumerate(COCO_18.names[:17]):
        assert np.array_equal(joints[k], xy[BLAZEPOSE_33.index(name)]), name
    assert np.allclose(joints[17], (xy[23] + xy[24]) / 2)  # Pelvis = mean of the hips
    assert valid[11] == 0 and valid[17] == 0 and valid[12] == 1 and sc[17] == pytest.approx(0.3)
    with pytest.raises(ValueError, match="BlazePose"):
        blazepose_to_coco18(xy[:17], scores[:17])


def test_fits_from_exact_keypoints_and_rejection(anny_body):
    records, target = _records(anny_body, 5, 1000)
    bad = records[4]
    bad.joints_cam_m = bad.joints_cam_m.copy()
    bad.joints_cam_m[[3, 6, 13, 16]] += np.array([0.0, 0.0, 0.25])  # ankles and wrists 25 cm off in depth
    bank = ModelBank({("body", ""): anny_body})
    out = label_records(records, LabelOptions(stages=FAST), bank)
    assert [r.sample_id for r in out] == [str(i) for i in range(5)]
    assert all(r.body_model == "anny" and r.extra["fit_rule"] == "3d" for r in out)
    errors = np.array([r.extra["fit_error_mm"] for r in out])
    assert [r.fit_valid for r in out] == list(errors <= 25.0) and not out[4].fit_valid  # the corrupted one
    good = [i for i in range(4) if out[i].fit_valid]
    assert len(good) >= 3, errors
    params = {k: torch.as_tensor(np.stack([np.asarray(out[i].body_params[k], np.float32) for i in good]))
              for k in ("pose", "shape", "trans")}
    vertices = anny_body(**params).vertices_m
    mpvpe, pa = vertex_errors_mm(vertices, target["vertices_m"][good])
    assert np.median(pa) < 45 and np.median(mpvpe) < 80, (pa, mpvpe)
    # 2D only: the MSCOCO-style heatmap rule; a person with too few keypoints is skipped, not fitted
    records2d, _ = _records(anny_body, 3, 2000, with_3d=False)
    records2d[2].joints_valid = np.r_[np.ones(4), np.zeros(13)]
    stats = LabelStats()
    out2d = label_records(records2d, LabelOptions(stages=FAST), bank, stats)
    assert len(out2d) == 2 and stats.skipped == {"too few keypoints": 1}
    assert all(r.extra["fit_rule"] == "2d" and r.extra["fit_error_hm"] < 3 and r.fit_valid for r in out2d)


def test_sharded_resumable_run(anny_body, tmp_path, monkeypatch):
    records, _ = _records(anny_body, 5, 3000)
    src = tmp_path / "src"
    write_dataset(records, src)
    out = tmp_path / "out"
    bank = ModelBank({("body", ""): anny_body})
    source = Source(format="i2lmesh", root=str(src))
    options = LabelOptions(stages=FAST)
    kw = dict(chunk_size=2, progress=False, models=bank)

    class Crash(Exception):
        pass

    def crash(chunk):
        raise Crash

    with pytest.raises(Crash):  # killed after its first chunk of shard 0 (chunks 0 and 2)
        pseudo_label(source, out, options, shard=0, num_shards=2, on_chunk=crash, **kw)
    assert sorted(p.name for p in (out / "shards").iterdir()) == ["chunk_000000"]
    first = pseudo_label(source, out, options, shard=0, num_shards=2, **kw)
    assert (first.chunks_done, first.chunks_skipped, first.summary) == (1, 1, None)  # chunk 1 is shard 1's
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert shard_from_env(None, None) == (1, 2)
    second = pseudo_label(source, out, options, **kw)
    assert (second.chunks_done, second.num_chunks) == (1, 3)
    summary = json.loads((out / "summary.json").read_text())
    assert summary == second.summary and summary["fitted"] == 5 and summary["rule_3d"]["count"] == 5
    merged = read_dataset(out)
    assert [r.sample_id for r in merged] == [str(i) for i in range(5)]
    assert all(r.body_model == "anny" and np.shape(r.body_params["pose"]) == (104, 3) for r in merged)
    again = pseudo_label(source, out, options, **kw)
    assert again.chunks_done == 0 and again.summary["fitted"] == 5
    with pytest.raises(ValueError, match="other settings"):
        pseudo_label(source, out, LabelOptions(stages=FAST, use_3d=False), **kw)
    assert not list((out / "shards").glob(".*"))  # no temporary chunk left behind


def test_anny_to_anny_conversion_round_trip(anny_body):
    g = torch.Generator().manual_seed(7)
    params = anny_body.sample_params(3, g)
    params["trans"] = torch.tensor([[0.0, 0.0, 3.0]]).expand(3, 3)
    truth = anny_body(**params).vertices_m
    fast = FitConfig(joint=True, stages=FAST)
    by_keypoints = convert_fit(anny_body, params, anny_body, "keypoints", config=fast)
    corr = build_correspondence(anny_body, anny_body, num_points=96, config=fast)
    assert corr.target_ids.shape == corr.source_ids.shape == (96,)
    by_surface = convert_fit(anny_body, params, anny_body, "surface", correspondence=corr, config=fast)
    mpvpe_k, pa_k = vertex_errors_mm(by_keypoints.vertices_m, truth)
    mpvpe_s, pa_s = vertex_errors_mm(by_surface.vertices_m, truth)
    assert np.median(mpvpe_k) < 60 and np.median(mpvpe_s) < 40, (mpvpe_k, mpvpe_s)
    with pytest.raises(ValueError, match="correspondence"):
        convert_fit(anny_body, params, anny_body, "surface")


def test_train_on_a_pseudo_labelled_dataset(tmp_path, anny_body):
    from i2lmesh.cli import main

    data, labelled, run = tmp_path / "synth", tmp_path / "labelled", tmp_path / "run"
    assert main(["synth", "--out", str(data), "--kind", "body", "--num", "4", "--seed", "3", "--size", "128",
                 "--workers", "1"]) == 0
    # 2D only, as MSCOCO: the renders' joints (SMPL_29) are fitted on SMPL_29, the heatmap rule decides fit_valid
    assert main(["pseudo-label", "--format", "i2lmesh", "--root", str(data), "--out", str(labelled), "--2d-only",
                 "--fast", "--no-progress"]) == 0
    summary = json.loads((labelled / "summary.json").read_text())
    assert summary["fitted"] == 4 and summary["rule_2d"]["count"] == 4
    records = read_dataset(labelled)
    assert all(r.body_model == "anny" and r.extra["fit_keypoint_set"] == "smpl29" for r in records)
    for r in records:
        r.fit_valid = True  # train on every fit (a rejected one would only mask its mesh loss)
        r.has_3d = False
    write_dataset(records, labelled)
    assert main(["train", "--preset", "cpu-small", "--data", str(labelled), "--out", str(run), "--max-steps", "8",
                 "--set", "batch_size=4", "num_workers=0", "log_every_steps=1", "keep_epoch_checkpoints=false",
                 "augment=false", "lr=0.001"]) == 0
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in lines if "loss" in r]
    vertex = [r["vertex"] for r in lines if "vertex" in r]
    assert len(losses) == 8 and all(v > 0 for v in vertex)  # the pseudo-labelled meshes reach the loss
    assert losses[-1] < 0.9 * losses[0] and losses[-1] < min(losses[:3]), losses


def test_bad_inputs_are_one_line(tmp_path):
    from i2lmesh.cli import main

    assert main(["pseudo-label", "--out", str(tmp_path / "o")]) == 2
    assert main(["pseudo-label", "--images", str(tmp_path / "missing"), "--out", str(tmp_path / "o")]) == 2
    assert main(["pseudo-label", "--format", "coco", "--out", str(tmp_path / "o")]) == 2
    assert main(["pseudo-label", "--images", str(tmp_path), "--out", str(tmp_path / "o"), "--batch-size", "0"]) == 2
    assert main(["pseudo-label", "--format", "coco", "--root", str(tmp_path), "--out", str(tmp_path / "o"),
                 "--from-fits"]) == 2
    with pytest.raises(ValueError, match="num_shards"):
        shard_from_env(2, 2)
