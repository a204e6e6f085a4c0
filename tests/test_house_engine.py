"""Evaluation's batched Procrustes (issue 12): the same numbers as aligning each sample alone."""
from __future__ import annotations

import numpy as np
import torch

from i2lmesh.engine.evaluate import _ROW_KEYS, _score
from i2lmesh.geometry.procrustes import procrustes_align
from i2lmesh.metrics import f_score, pa_errors, point_errors_mm

# float64 noise: the batched and single roma calls differ at most by rounding in the SVD and the sums, a few
# hundred ulps of errors that are ~1e2 mm; 1e-12 relative is ~4500 ulps and still far below a real difference.
RTOL = 1e-12


def _per_sample_score(verts, joints, meta, regressor, root, hand):
    """The evaluation's per-sample loop before batching (one Procrustes per sample), as the reference."""
    rows = {k: [] for k in _ROW_KEYS}
    gt_rel = meta["joints_cam_rel_m"].double().numpy()
    valid = meta["joints_cam_valid"].numpy() > 0
    pred_rel = joints - joints[:, root:root + 1]
    for b in range(len(verts)):
        if valid[b].sum() >= 3:
            err = np.full(valid.shape[1], np.nan)
            err[valid[b]] = pa_errors(pred_rel[b][valid[b]][None], gt_rel[b][valid[b]][None])[0]
            rows["pa_joint"].append(err)
        if bool(meta["has_mesh"][b]):
            gt_v = meta["vertices_cam_m"][b].double().numpy()
            gt_v = gt_v - (regressor @ gt_v)[root]
            pred_v = verts[b] - joints[b, root]
            rows["mesh_err"].append(point_errors_mm(pred_v[None], gt_v[None])[0].mean())
            rows["pa_mesh"].append(pa_errors(pred_v[None], gt_v[None])[0].mean())
            if hand:
                aligned = procrustes_align(pred_v[None], gt_v[None])
                rows["f5"].append(f_score(aligned, gt_v[None], 0.005)[0])
                rows["f15"].append(f_score(aligned, gt_v[None], 0.015)[0])
    return rows


def test_batched_procrustes_scores_equal_the_per_sample_ones():
    rng = np.random.default_rng(3)
    b, j, v = 7, 6, 40
    gt_verts = rng.normal(0, 0.3, (b, v, 3)) + [0.0, 0.0, 4.0]
    regressor = rng.uniform(0, 1, (j, v))
    regressor /= regressor.sum(1, keepdims=True)
    gt_joints = np.einsum("jv,bvc->bjc", regressor, gt_verts)
    # predictions: the ground truth rotated, scaled, shifted and noisy (PA removes all but the noise)
    angle = rng.uniform(-0.5, 0.5, b)
    rot = np.stack([[[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]] for a in angle])
    verts = 1.1 * gt_verts @ rot.transpose(0, 2, 1) + rng.normal(0, 0.01, (b, v, 3)) + [0.05, -0.02, 0.3]
    joints = np.einsum("jv,bvc->bjc", regressor, verts)
    valid = np.ones((b, j))
    valid[1, [0, 4]] = 0  # a group of its own
    valid[2, [0, 4]] = 0  # ... shared with sample 1
    valid[3, 2:] = 0  # 2 valid joints: no alignment
    valid[5, 5] = 0
    meta = {"joints_cam_rel_m": torch.as_tensor(gt_joints - gt_joints[:, :1]),
            "joints_cam_valid": torch.as_tensor(valid),
            "has_mesh": torch.tensor([1, 0, 1, 1, 0, 1, 1], dtype=torch.bool),
            "vertices_cam_m": torch.as_tensor(gt_verts)}
    for hand in (False, True):
        rows = {k: [] for k in _ROW_KEYS}
        _score(rows, verts, joints, meta, regressor, 0, hand, False)
        want = _per_sample_score(verts, joints, meta, regressor, 0, hand)
        assert len(rows["pa_joint"]) == 6 and len(rows["pa_mesh"]) == 5 and len(rows["f5"]) == (5 if hand else 0)
        for key in ("pa_joint", "mesh_err", "pa_mesh", "f5", "f15"):
            assert len(rows[key]) == len(want[key])
            np.testing.assert_allclose(np.asarray(rows[key], np.float64), np.asarray(want[key], np.float64),
                                       rtol=RTOL, atol=0)
        pa = np.asarray(rows["pa_joint"])
        assert np.isnan(pa[1, [0, 4]]).all() and np.isfinite(pa[1, [1, 2, 3, 5]]).all()
        # the noise (1 cm per vertex, ~1 mm on the joints) survives the alignment, the similarity (~5 cm or more
        # after root alignment) does not
        assert 0.1 < np.nanmean(pa) < 10.0 and np.mean(rows["pa_mesh"]) < 25.0 < min(rows["mesh_err"])
