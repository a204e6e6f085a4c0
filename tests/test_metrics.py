"""Metric tests: analytic values for MPJPE, PA-MPJPE (known similarity transform), F-score."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from i2lmesh.engine.evaluate import summarise, write_freihand_pred
from i2lmesh.metrics import f_score, mpjpe_per_joint, pa_errors, point_errors_mm


def test_mpjpe_is_root_aligned_and_in_mm():
    gt = np.random.default_rng(0).normal(size=(2, 5, 3))
    pred = gt + np.array([0.3, -0.2, 1.0])  # a global shift only
    assert np.allclose(mpjpe_per_joint(pred, gt, root_index=0), 0, atol=1e-9)
    pred2 = gt.copy()
    pred2[:, 3] += np.array([0.003, 0.004, 0.0])  # one joint off by 5 mm
    err = mpjpe_per_joint(pred2, gt, 0)
    assert err[:, 3] == pytest.approx([5.0, 5.0]) and np.allclose(np.delete(err, 3, axis=1), 0)


def test_pa_errors_undo_a_known_similarity_transform():
    rng = np.random.default_rng(1)
    gt = rng.normal(size=(3, 20, 3))
    rot = Rotation.random(3, random_state=2).as_matrix()
    pred = 1.7 * np.einsum("bij,bnj->bni", rot, gt) + rng.normal(size=(3, 1, 3))
    assert pa_errors(pred, gt).max() < 1e-6
    noisy = gt.copy()
    noisy[:, 0] += 0.01
    assert pa_errors(noisy, gt).max() > 0.5  # a non-rigid change stays


def test_f_score_identical_shifted_and_hand_computed():
    line = np.array([[[0.0, 0, 0], [0.010, 0, 0], [0.020, 0, 0]]])
    assert f_score(line, line, 0.005)[0] == 1.0
    # Shift by 7 mm along the line: predicted points' nearest ground truth are 3, 3, 7 mm away and ground-truth
    # points' nearest prediction 7, 3, 3 mm: precision = recall = 2/3 at 5 mm, 1 at 15 mm.
    shifted = line + np.array([0.007, 0, 0])
    assert f_score(shifted, line, 0.005)[0] == pytest.approx(2 / 3)
    assert f_score(shifted, line, 0.015)[0] == pytest.approx(1.0)
    # Perpendicular shift of 7 mm: nothing within 5 mm.
    assert f_score(line + np.array([0, 0.007, 0]), line, 0.005)[0] == 0.0


def test_summarise_keys_and_masks(tmp_path):
    rows = {"joint_err": [np.array([10.0, 20.0, 99.0])], "joint_valid": [np.array([True, True, False])],
            "pa_joint": [np.array([1.0, 3.0, np.nan])], "mesh_err": [4.0], "pa_mesh": [2.0], "f5": [0.5],
            "f15": [1.0], "pred_joints": [], "pred_verts": []}
    out = summarise(rows, ["a", "b", "c"], hand=True)
    assert out["mpjpe_mm"] == 15.0 and out["pa_mpjpe_mm"] == 2.0 and out["num_samples"] == 1
    assert out["per_joint_mpjpe_mm"] == {"a": 10.0, "b": 20.0, "c": None}
    assert out["mpvpe_mm"] == 4.0 and out["pa_mpvpe_mm"] == 2.0 and out["f5"] == 0.5 and out["f15"] == 1.0
    write_freihand_pred(tmp_path / "pred.json", np.zeros((2, 21, 3)), np.zeros((2, 778, 3)))
    import json
    joints, verts = json.loads((tmp_path / "pred.json").read_text())
    assert np.shape(joints) == (2, 21, 3) and np.shape(verts) == (2, 778, 3)
    assert point_errors_mm(np.zeros((1, 1, 3)), np.ones((1, 1, 3)))[0, 0] == pytest.approx(1000 * 3 ** 0.5)
