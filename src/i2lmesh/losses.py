"""The five I2L-MeshNet losses (paper eqs. 8-13), in heatmap bins, with validity masks.

L = L_pose^PoseNet + L_pose^MeshNet + L_vertex + 0.1 L_normal + L_edge. Every term is L1; the z part of the
pose terms is dropped where z is unknown (2D datasets), mesh terms where no mesh ground truth exists, and
points outside the heatmap (truncated) are masked. Reduction follows the reference: each term is the plain
mean over all its elements, masked zeros included (official_spec.md section 3), so weights keep their meaning
across batches. ``fit_orig_split`` adds the reference's separate "fit" (pseudo-GT body-model) joint terms.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

NORMAL_LOSS_WEIGHT = 0.1

# The three edges of a triangle as (first, second) corner indices.
_FACE_EDGES = ((0, 1), (0, 2), (1, 2))


def coord_l1(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor,
             has_z: torch.Tensor | None = None) -> torch.Tensor:
    """Element-wise masked L1: pred, target (B,N,3); valid (B,N) or (B,N,1); has_z (B,) zeroes the z column.

    Returns (B,N,3).
    """
    valid = valid.reshape(*pred.shape[:2], 1).to(pred.dtype)
    loss = (pred - target).abs() * valid
    if has_z is not None:
        z_mask = has_z.reshape(-1, 1).to(pred.dtype)
        loss = torch.cat([loss[..., :2], loss[..., 2:] * z_mask[:, :, None]], dim=-1)
    return loss


def _face_valid(valid: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Per-face validity (B,F): the product of its three vertices' validity (B,V)."""
    v = valid.reshape(valid.shape[0], -1).to(torch.float32)
    return v[:, faces[:, 0]] * v[:, faces[:, 1]] * v[:, faces[:, 2]]


def normal_loss(pred: torch.Tensor, target: torch.Tensor, faces: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """|<unit predicted edge, ground-truth face normal>| for the 3 edges of every face (Wang et al., Pixel2Mesh).

    pred, target (B,V,3); faces (F,3); valid (B,V). Returns (B,3F): zero when the predicted face lies in the
    plane of the ground-truth face.
    """
    p = [pred[:, faces[:, k]] for k in range(3)]
    g = [target[:, faces[:, k]] for k in range(3)]
    normal_gt = F.normalize(torch.linalg.cross(F.normalize(g[1] - g[0], dim=-1), F.normalize(g[2] - g[0], dim=-1),
                                               dim=-1), dim=-1)
    face_valid = _face_valid(valid, faces).to(pred.dtype)
    terms = [(F.normalize(p[b] - p[a], dim=-1) * normal_gt).sum(-1).abs() * face_valid for a, b in _FACE_EDGES]
    return torch.cat(terms, dim=1)


def edge_length_loss(pred: torch.Tensor, target: torch.Tensor, faces: torch.Tensor,
                     valid: torch.Tensor) -> torch.Tensor:
    """| |p_a - p_b| - |g_a - g_b| | for the 3 edges of every face. pred, target (B,V,3); valid (B,V) -> (B,3F)."""
    v = valid.reshape(valid.shape[0], -1).to(pred.dtype)
    terms = []
    for a, b in _FACE_EDGES:
        ia, ib = faces[:, a], faces[:, b]
        length_pred = (pred[:, ia] - pred[:, ib]).norm(dim=-1)
        length_gt = (target[:, ia] - target[:, ib]).norm(dim=-1)
        terms.append((length_pred - length_gt).abs() * v[:, ia] * v[:, ib])
    return torch.cat(terms, dim=1)


@dataclass
class LossTargets:
    """Ground truth in heatmap bins with masks (B batch, J joints, V vertices).

    joints_hm (B,J,3) and joints_valid (B,J): the dataset's joints ("orig"), inside the heatmap.
    has_z (B,): 1 where the sample has depth ground truth (3D datasets), 0 for 2D datasets.
    vertices_hm (B,V,3) and vertices_valid (B,V): the mesh ground truth (a body-model fit), zeros where none.
    fit_joints_hm / fit_joints_valid: joints of the fitted body model, used only with ``fit_orig_split``.
    """

    joints_hm: torch.Tensor
    joints_valid: torch.Tensor
    has_z: torch.Tensor
    vertices_hm: torch.Tensor
    vertices_valid: torch.Tensor
    fit_joints_hm: torch.Tensor | None = None
    fit_joints_valid: torch.Tensor | None = None


def i2l_losses(joints_hm: torch.Tensor | None, vertices_hm: torch.Tensor, mesh_joints_hm: torch.Tensor,
               faces: torch.Tensor, targets: LossTargets, fit_orig_split: bool = False) -> dict[str, torch.Tensor]:
    """The named loss terms (scalars, weights applied); their sum is the training loss.

    joints_hm: PoseNet joints (B,J,3), None for a network without PoseNet (no PoseNet terms); vertices_hm: MeshNet vertices (B,V,3); mesh_joints_hm: J x vertices.
    Paper terms: posenet_pose, meshnet_pose, vertex, normal (x0.1), edge. With ``fit_orig_split`` the two
    pose terms also get "fit" twins on the fitted body model's joints (the reference's seven terms).
    """
    t = targets
    losses = {} if joints_hm is None else {
        "posenet_pose": coord_l1(joints_hm, t.joints_hm, t.joints_valid, t.has_z).mean()}
    losses |= {
        "meshnet_pose": coord_l1(mesh_joints_hm, t.joints_hm, t.joints_valid, t.has_z).mean(),
        "vertex": coord_l1(vertices_hm, t.vertices_hm, t.vertices_valid).mean(),
        "normal": NORMAL_LOSS_WEIGHT * normal_loss(vertices_hm, t.vertices_hm, faces, t.vertices_valid).mean(),
        "edge": edge_length_loss(vertices_hm, t.vertices_hm, faces, t.vertices_valid).mean(),
    }
    if fit_orig_split:
        if t.fit_joints_hm is None or t.fit_joints_valid is None:
            raise ValueError("fit_orig_split needs targets.fit_joints_hm and targets.fit_joints_valid")
        if joints_hm is not None:
            losses["posenet_pose_fit"] = coord_l1(joints_hm, t.fit_joints_hm, t.fit_joints_valid).mean()
        losses["meshnet_pose_fit"] = coord_l1(mesh_joints_hm, t.fit_joints_hm, t.fit_joints_valid).mean()
    return losses
