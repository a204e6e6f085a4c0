"""Upper bounds on the evaluation's Procrustes errors that follow from the ground truth alone (engine/evaluate.py).

The similarity transform with scale 0 and translation = the ground truth's centroid is one candidate of the
Procrustes fit, so the fitted transform's squared error is at most sum_i |g_i - mean(g)|^2. The mean error is at most
the root-mean-square error, hence per sample: PA error (mean over points) <= the RMS distance of the ground-truth
points from their centroid. This holds for any prediction, trained or not; a range like 0-5000 mm does not test this.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np


def _rms_radius_mm(points_m: np.ndarray) -> float:
    """RMS distance (mm) of points (N,3) metres from their centroid."""
    return float(np.sqrt(((points_m - points_m.mean(0)) ** 2).sum(-1).mean()) * 1000.0)


def ground_truth(data, net=None) -> dict:
    """The collated meta (ground truth) of every sample of ``data``: a dataset, or a dataset folder opened as
    ``net`` is scored on it."""
    from i2lmesh.data.dataset import collate
    from i2lmesh.engine.datasets import open_datasets
    from i2lmesh.nets.factory import body_model_for

    if isinstance(data, (str, Path)):
        data = open_datasets([data], net, train=False, body_model=body_model_for(net.config))
    return collate([data[i] for i in range(len(data))])[2]


def pa_error_bounds_mm(meta: dict) -> dict[str, float]:
    """Bounds for ``pa_mpjpe_mm`` (weighted as the evaluation averages: over every valid joint of every sample with
    >= 3) and ``pa_mpvpe_mm`` (over samples with a mesh), from the ground truth ``meta`` (:func:`ground_truth`)."""
    joints = meta["joints_cam_rel_m"].double().numpy()
    valid = meta["joints_cam_valid"].numpy() > 0
    radii, weights = [], []
    for b in range(len(joints)):
        if valid[b].sum() >= 3:
            radii.append(_rms_radius_mm(joints[b][valid[b]]))
            weights.append(valid[b].sum())
    bounds = {"pa_mpjpe_mm": float(np.average(radii, weights=weights))}
    has_mesh = meta["has_mesh"].numpy() > 0
    if has_mesh.any():
        vertices = meta["vertices_cam_m"].double().numpy()[has_mesh]
        bounds["pa_mpvpe_mm"] = float(np.mean([_rms_radius_mm(v) for v in vertices]))
    return bounds
