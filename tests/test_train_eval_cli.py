"""End to end on the embedded default: synth -> train (cpu-small, a few steps) -> eval -> results.json."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from metric_bounds import ground_truth, pa_error_bounds_mm

from i2lmesh import load_network
from i2lmesh.cli import main
from i2lmesh.engine.datasets import open_datasets
from i2lmesh.engine.evaluate import evaluate


def test_synth_train_eval_round_trip(tmp_path, anny_body):
    data, val, run = tmp_path / "train", tmp_path / "val", tmp_path / "run"
    assert main(["synth", "--out", str(data), "--kind", "body", "--num", "8", "--seed", "1", "--size", "128",
                 "--workers", "1"]) == 0
    assert main(["synth", "--out", str(val), "--kind", "body", "--num", "4", "--seed", "2", "--size", "128",
                 "--workers", "1"]) == 0
    assert main(["train", "--preset", "cpu-small", "--data", str(data), "--val", str(val), "--out", str(run),
                 "--max-steps", "2", "--set", "batch_size=4", "num_workers=0", "log_every_steps=1",
                 "keep_epoch_checkpoints=false", "val_every_steps=1"]) == 0
    lines = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    records = [r for r in lines if "loss" in r]
    assert [r["step"] for r in records] == [1, 2]
    # validation before training, after step 1, and at the end of the epoch (step 2 = 8 samples / batch 4)
    assert [r["step"] for r in lines if "val_mpjpe_mm" in r] == [0, 1, 2]
    assert all(r["vertex"] > 0 and r["posenet_pose"] > 0 for r in records)  # mesh targets reach the loss
    out = tmp_path / "results.json"
    assert main(["eval", "--checkpoint", str(run / "checkpoints" / "last.pt"), "--data", str(val), "--out",
                 str(out), "--batch-size", "2", "--device", "cpu"]) == 0
    result = json.loads(out.read_text())
    assert result["num_samples"] == 4
    assert result["pa_mpjpe_mm"] <= result["mpjpe_mm"] + 1e-6
    assert len(result["per_joint_mpjpe_mm"]) == 29 and "L_Wrist" in result["per_joint_mpjpe_mm"]
    net, cfg = load_network(run / "checkpoints" / "last.pt")
    # The errors from the quantities themselves, not a 0-5000 mm range: PA errors below the ground truth's spread
    # (tests/metric_bounds.py), MPJPE and MPVPE recomputed from the predictions (root-aligned, in mm).
    meta = ground_truth(val, net)
    for key, bound in pa_error_bounds_mm(meta).items():
        assert 0 < result[key] <= bound, (key, result[key], bound)
    predicted = evaluate(net, open_datasets([val], net, train=False), batch_size=2, keep_predictions=True)[
        "predictions"]  # the batches the command used: the same float32 outputs
    root, regressor = net.topology["root_index"], net.joint_regressor.double().numpy()
    joints, vertices = predicted["joints_m"], predicted["vertices_m"]
    gt_joints, valid = meta["joints_cam_rel_m"].double().numpy(), meta["joints_cam_valid"].numpy() > 0
    joint_err = np.linalg.norm(joints - joints[:, root:root + 1] - gt_joints, axis=-1)[valid]
    assert result["mpjpe_mm"] == pytest.approx(1000.0 * joint_err.mean(), rel=1e-9)
    gt_vertices = meta["vertices_cam_m"].double().numpy()
    gt_vertices = gt_vertices - np.einsum("jv,bvc->bjc", regressor, gt_vertices)[:, root:root + 1]
    vertex_err = np.linalg.norm(vertices - joints[:, root:root + 1] - gt_vertices, axis=-1)
    assert result["mpvpe_mm"] == pytest.approx(1000.0 * vertex_err.mean(), rel=1e-9)
    assert cfg.input_size == 128 and isinstance(net.joint_regressor, torch.Tensor)
