"""Rotation conversions: axis-angle <-> rotation matrix, batched over any leading dimensions.

Torch in, torch out; numpy in, numpy out (computed in float64 through torch). Used for the SMPL parameter flip
and the in-plane rotation augmentation of root orientations (official_spec.md 4.6, 4.7).
"""
from __future__ import annotations

import math

import numpy as np
import torch


def _to_torch(x) -> tuple[torch.Tensor, bool]:
    if isinstance(x, torch.Tensor):
        return x, False
    return torch.as_tensor(np.asarray(x, dtype=np.float64)), True


def axis_angle_to_matrix(axis_angle):
    """Rodrigues' formula. axis_angle (...x3): rotation vectors (radians) -> (...x3x3) rotation matrices."""
    aa, was_numpy = _to_torch(axis_angle)
    assert aa.shape[-1] == 3, "Input should be a ...x3 batch of axis-angle vectors."
    angle = aa.norm(dim=-1, keepdim=True)[..., None]  # (...,1,1)
    # Near zero use the Taylor expansion of sin(t)/t and (1-cos t)/t^2: no division by a tiny angle.
    small = angle < 1e-6
    safe = torch.where(small, torch.ones_like(angle), angle)
    a = torch.where(small, 1 - angle ** 2 / 6, torch.sin(safe) / safe)
    b = torch.where(small, 0.5 - angle ** 2 / 24, (1 - torch.cos(safe)) / safe ** 2)
    x, y, z = aa.unbind(-1)
    zero = torch.zeros_like(x)
    skew = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(*aa.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=aa.dtype, device=aa.device).expand_as(skew)
    mat = eye + a * skew + b * (skew @ skew)
    return mat.numpy() if was_numpy else mat


def matrix_to_axis_angle(matrix):
    """(...x3x3) rotation matrices -> (...x3) rotation vectors with angle in [0, pi].

    Goes through a unit quaternion (Shepperd's method picks the largest component), which stays accurate near
    angles of pi where the usual arccos/skew formula loses the axis.
    """
    m, was_numpy = _to_torch(matrix)
    assert m.shape[-2:] == (3, 3), "Input should be a ...x3x3 batch of rotation matrices."
    m00, m11, m22 = m[..., 0, 0], m[..., 1, 1], m[..., 2, 2]
    candidates = torch.stack([
        torch.stack([1 + m00 + m11 + m22, m[..., 2, 1] - m[..., 1, 2], m[..., 0, 2] - m[..., 2, 0],
                     m[..., 1, 0] - m[..., 0, 1]], -1),
        torch.stack([m[..., 2, 1] - m[..., 1, 2], 1 + m00 - m11 - m22, m[..., 0, 1] + m[..., 1, 0],
                     m[..., 0, 2] + m[..., 2, 0]], -1),
        torch.stack([m[..., 0, 2] - m[..., 2, 0], m[..., 0, 1] + m[..., 1, 0], 1 - m00 + m11 - m22,
                     m[..., 1, 2] + m[..., 2, 1]], -1),
        torch.stack([m[..., 1, 0] - m[..., 0, 1], m[..., 0, 2] + m[..., 2, 0], m[..., 1, 2] + m[..., 2, 1],
                     1 - m00 - m11 + m22], -1),
    ], -2)  # (...,4,4): row k is 4*q_k*q (w,x,y,z)
    diag = torch.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22, 1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1)
    best = diag.argmax(-1)
    q = torch.gather(candidates, -2, best[..., None, None].expand(*best.shape, 1, 4)).squeeze(-2)
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[..., :1] < 0, -q, q)  # w >= 0 -> angle in [0, pi]
    w, xyz = q[..., 0].clamp(-1, 1), q[..., 1:]
    sin_half = xyz.norm(dim=-1)
    angle = 2 * torch.atan2(sin_half, w)
    # angle / sin(angle/2), with its limit 2 near zero.
    factor = torch.where(sin_half < 1e-8, torch.full_like(angle, 2.0),
                         angle / torch.where(sin_half < 1e-8, torch.ones_like(sin_half), sin_half))
    aa = xyz * factor[..., None]
    return aa.numpy() if was_numpy else aa


def rotation_z(angle_rad: float, dtype=np.float64) -> np.ndarray:
    """3x3 rotation about the camera's z axis (x right, y down): [[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]]."""
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=dtype)


def flip_axis_angle_pose(pose, flip_pairs):
    """Mirror an axis-angle pose through the camera's YZ plane (x -> -x).

    pose (...xK*3 or ...xKx3): per-joint rotation vectors. flip_pairs: (left, right) joint index pairs (< K) whose
    rows are swapped. Mirroring conjugates every rotation by diag(-1, 1, 1), i.e. negates the y and z components
    (official_spec.md 4.6). Applying it twice gives the input back.
    """
    pose_t, was_numpy = _to_torch(pose)
    flat = pose_t.shape[-1] != 3
    p = pose_t.reshape(*pose_t.shape[:-1], -1, 3) if flat else pose_t
    p = p.clone()
    for left, right in flip_pairs:
        p[..., [left, right], :] = p[..., [right, left], :]
    p = p * p.new_tensor([1.0, -1.0, -1.0])
    p = p.reshape(pose_t.shape)
    return p.numpy() if was_numpy else p


__all__ = ["axis_angle_to_matrix", "matrix_to_axis_angle", "rotation_z", "flip_axis_angle_pose"]
