"""Standard 3D pose and mesh metrics, in millimetres, batched (numpy or torch in, numpy out).

Protocols (docs/evaluation.md): MPJPE/MPVPE after aligning the roots (the root joint of each skeleton is
subtracted from its joints and mesh), PA-* after a similarity Procrustes alignment (Umeyama with scale, the
corrected translation), F@5 mm / F@15 mm as FreiHAND (precision/recall of nearest-neighbour distances between
the aligned predicted and ground-truth vertices).
"""
from __future__ import annotations

import numpy as np
import torch

from .geometry.procrustes import procrustes_align


def _np(x) -> np.ndarray:
    return x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float64)


def point_errors_mm(pred_m, gt_m) -> np.ndarray:
    """Euclidean distance per point (B,N) in mm between (B,N,3) point sets in metres."""
    return np.linalg.norm(_np(pred_m) - _np(gt_m), axis=-1) * 1000.0


def root_align(points_m, joints_m, root_index: int) -> np.ndarray:
    """Subtract the root joint (B,J,3)[:, root] from points (B,N,3)."""
    return _np(points_m) - _np(joints_m)[:, root_index:root_index + 1]


def mpjpe_per_joint(pred_joints_m, gt_joints_m, root_index: int) -> np.ndarray:
    """Root-aligned joint errors (B,J) in mm."""
    return point_errors_mm(root_align(pred_joints_m, pred_joints_m, root_index),
                           root_align(gt_joints_m, gt_joints_m, root_index))


def pa_errors(pred_m, gt_m) -> np.ndarray:
    """Per-point errors (B,N) in mm after aligning each predicted set onto its ground truth by a similarity."""
    return point_errors_mm(procrustes_align(_np(pred_m), _np(gt_m)), gt_m)


def f_score(pred_m, gt_m, threshold_m: float) -> np.ndarray:
    """FreiHAND F-score per sample (B,): harmonic mean of precision (predicted points within ``threshold_m`` of
    the nearest ground-truth point) and recall (ground-truth points within it of the nearest predicted point)."""
    pred, gt = torch.as_tensor(_np(pred_m)), torch.as_tensor(_np(gt_m))
    dist = torch.cdist(pred, gt)  # (B, N_pred, N_gt)
    precision = (dist.min(dim=2).values < threshold_m).double().mean(1)
    recall = (dist.min(dim=1).values < threshold_m).double().mean(1)
    denom = precision + recall
    score = torch.where(denom > 0, 2 * precision * recall / denom.clamp_min(1e-12), torch.zeros_like(denom))
    return score.numpy()


__all__ = ["point_errors_mm", "root_align", "mpjpe_per_joint", "pa_errors", "f_score"]
