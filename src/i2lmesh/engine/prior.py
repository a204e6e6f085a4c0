"""Training-set statistics for a fast start: the lixel heads' body prior and the mean-pose baseline.

Not in the paper. With the reference's initialisation (heads N(0, 0.001)) every heatmap starts uniform, so every
joint and vertex starts at the heatmap centre and the first minutes of training go to learning the average body.
``head_prior`` networks (``ModelConfig.head_prior``) add fixed prior logits per point and bin: a Gaussian at each
point's mean training position with the training targets' spread (docs/network.md, "Body prior"). The training
loop fills them from the training set when a run starts from scratch (:func:`init_head_prior`).

:func:`mean_pose_baseline` scores what "learning nothing from the image" gives: always answering the training
set's mean root-relative pose (and mesh) — the reference line of the quickstart and ``benchmarks/bench_learning.py``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from ..data.dataset import collate
from ..nets.i2l import I2LMeshNet
from ..nets.lixel import LixelHead

logger = logging.getLogger(__name__)


@dataclass
class TargetStatistics:
    """Mean and standard deviation of the training targets in heatmap bins (x, y on the input_size // 4 grid, z in
    depth bins): joints (J,3) and vertices (V,3); ``num_samples`` images were drawn."""

    joints_mean: torch.Tensor
    joints_std: torch.Tensor
    vertices_mean: torch.Tensor
    vertices_std: torch.Tensor
    num_samples: int


def sample_indices(num_items: int, num_samples: int) -> list[int]:
    """``num_samples`` indices spread evenly over ``range(num_items)`` (all of them when there are fewer)."""
    if num_items <= num_samples:
        return list(range(num_items))
    return np.linspace(0, num_items - 1, num_samples).round().astype(int).tolist()


def _moments(points: torch.Tensor, weights: torch.Tensor, fallback_mean: torch.Tensor,
             fallback_std: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted mean and std over the batch: points (B,N,3), weights (B,N,3) in {0, 1} -> ((N,3), (N,3)); where
    a point has no valid sample the fallback (3,) values."""
    total = weights.sum(0)
    mean = (points * weights).sum(0) / total.clamp_min(1)
    var = ((points - mean).square() * weights).sum(0) / total.clamp_min(1)
    none = total == 0
    mean = torch.where(none, fallback_mean.expand_as(mean), mean)
    std = torch.where(none, fallback_std.expand_as(var), var.sqrt())
    return mean, std


@torch.no_grad()
def target_statistics(net: I2LMeshNet, dataset: Dataset, num_samples: int = 128,
                      num_workers: int = 0) -> TargetStatistics:
    """Mean and std of the joint and vertex targets (bins) over ``num_samples`` evenly spaced training items, with
    their augmentation (as training sees them) and validity masks (z only where the sample has depth)."""
    cfg = net.config
    indices = sample_indices(len(dataset), num_samples)
    loader = DataLoader(Subset(dataset, indices), batch_size=16, num_workers=num_workers, collate_fn=collate,
                        generator=torch.Generator().manual_seed(0))  # leaves the global RNG alone
    joints, joint_w, verts, vert_w = [], [], [], []
    for _, targets, _ in loader:
        has_z = targets.has_z.float().reshape(-1, 1, 1)
        jw = targets.joints_valid.float().reshape(*targets.joints_hm.shape[:2], 1).expand(-1, -1, 3).clone()
        jw[..., 2:] *= has_z[:, :, :1].expand(-1, jw.shape[1], 1)
        joints.append(targets.joints_hm.float())
        joint_w.append(jw)
        verts.append(targets.vertices_hm.float())
        vert_w.append(targets.vertices_valid.float().reshape(*targets.vertices_hm.shape[:2], 1).expand(-1, -1, 3))
    centre = torch.tensor([cfg.heatmap_size - 1, cfg.heatmap_size - 1, cfg.depth_bins - 1]) / 2.0
    wide = torch.tensor([cfg.heatmap_size, cfg.heatmap_size, cfg.depth_bins]) / 4.0
    j_mean, j_std = _moments(torch.cat(joints), torch.cat(joint_w), centre, wide)
    v_mean, v_std = _moments(torch.cat(verts), torch.cat(vert_w), centre, wide)
    return TargetStatistics(j_mean, j_std, v_mean, v_std, len(indices))


def head_prior_is_set(net: I2LMeshNet) -> bool:
    """Whether any lixel head of ``net`` holds a prior that is not all zeros (zeros: built, never set)."""
    return any(bool(getattr(h, name).any()) for h in (net.pose_net, net.mesh_net)
               if isinstance(h, LixelHead) and h.has_prior for name in ("prior_x", "prior_y", "prior_z"))


def init_head_prior(net: I2LMeshNet, dataset: Dataset, num_samples: int = 128, num_workers: int = 0) -> bool:
    """Fill the body prior of ``net``'s lixel heads (PoseNet: joints; MeshNet: vertices) from the training targets;
    returns False (and does nothing) when the network has no prior (``head_prior: false`` or a non-lixel MeshNet
    output)."""
    heads = [(h, kind) for h, kind in ((net.pose_net, "joints"), (net.mesh_net, "vertices"))
             if isinstance(h, LixelHead) and h.has_prior]
    if not heads:
        return False
    stats = target_statistics(net, dataset, num_samples, num_workers)
    for head, kind in heads:
        head.set_prior(getattr(stats, f"{kind}_mean"), getattr(stats, f"{kind}_std"))
    logger.info("head prior: set from %d training samples", stats.num_samples)
    return True


def mean_pose_baseline(train_set: Dataset, val_set: Dataset, regressor: np.ndarray | None = None,
                       root_index: int = 0, num_samples: int = 256) -> dict[str, float]:
    """Errors (mm) on ``val_set`` of always answering the training set's mean root-relative pose: what "learning
    nothing from the image" scores. Keys mpjpe_mm, pa_mpjpe_mm, and, when both sets have meshes and ``regressor``
    (J,V) is given, mpvpe_mm, pa_mpvpe_mm (vertices relative to the mesh's own root joint, as the evaluation).
    The mean is per point in camera space: the best constant answer for MPJPE, but for training poses that face
    every way a shrunken, yaw-averaged body. So also procrustes_mean_pa_mpjpe_mm (and _pa_mpvpe_mm): PA errors of
    always answering the training poses' generalised Procrustes mean (``geometry.procrustes.procrustes_mean``,
    training samples with every joint valid), one body in the average articulated pose: what a network scores
    under PA metrics that learned everything but the limbs' pose."""
    from ..geometry.procrustes import procrustes_mean
    from ..metrics import pa_errors, point_errors_mm

    _, _, meta_train = collate([train_set[i] for i in sample_indices(len(train_set), num_samples)])
    _, _, meta_val = collate([val_set[i] for i in range(len(val_set))])
    gt = meta_val["joints_cam_rel_m"].double().numpy()
    valid = meta_val["joints_cam_valid"].numpy() > 0
    mean = meta_train["joints_cam_rel_m"].double().numpy().mean(0, keepdims=True).repeat(len(gt), 0)
    err = point_errors_mm(mean, gt)
    pa = np.concatenate([pa_errors(mean[b][valid[b]][None], gt[b][valid[b]][None])[0] for b in range(len(gt))
                         if valid[b].sum() >= 3] or [np.array([np.nan])])
    result = {"mpjpe_mm": float(err[valid].mean()), "pa_mpjpe_mm": float(np.nanmean(pa))}
    train_joints = meta_train["joints_cam_rel_m"].double().numpy()
    complete = (meta_train["joints_cam_valid"].numpy() > 0).all(1)
    if complete.any():
        shape = procrustes_mean(train_joints[complete])
        pa = [pa_errors(shape[valid[b]][None], gt[b][valid[b]][None])[0] for b in range(len(gt)) if valid[b].sum() >= 3]
        if pa:
            result["procrustes_mean_pa_mpjpe_mm"] = float(np.concatenate(pa).mean())
    if regressor is not None and "vertices_cam_m" in meta_train and "vertices_cam_m" in meta_val:
        def rooted(meta: dict) -> np.ndarray | None:
            has = meta["has_mesh"].numpy() > 0
            if not has.any():
                return None
            v = meta["vertices_cam_m"].double().numpy()[has]
            return v - np.einsum("jv,bvc->bjc", regressor, v)[:, root_index:root_index + 1]

        v_train, v_val = rooted(meta_train), rooted(meta_val)
        if v_train is not None and v_val is not None:
            v_mean = v_train.mean(0, keepdims=True).repeat(len(v_val), 0)
            result["mpvpe_mm"] = float(point_errors_mm(v_mean, v_val).mean())
            result["pa_mpvpe_mm"] = float(pa_errors(v_mean, v_val).mean())
            shape = np.repeat(procrustes_mean(v_train)[None], len(v_val), 0)
            result["procrustes_mean_pa_mpvpe_mm"] = float(pa_errors(shape, v_val).mean())
    return result


__all__ = ["TargetStatistics", "target_statistics", "init_head_prior", "head_prior_is_set", "mean_pose_baseline",
           "sample_indices"]
