"""Rotation conversions, batched over any leading dimensions: thin wrappers over roma (naver/roma).

The conversions themselves are roma's (``rotvec_to_rotmat``, ``rotmat_to_unitquat`` + ``unitquat_to_rotvec``,
``special_gramschmidt``); what we keep here is our conventions on top of them:

- numpy in, numpy out (float64, computed through torch); torch in, torch out (dtype and device kept). Data
  preparation and augmentation work in numpy, the networks in torch.
- axis-angle vectors have an angle in [0, pi], and a rotation by exactly pi keeps the axis whose quaternion
  component is largest and positive (roma's ``shortest_arc`` would negate it), as this module always returned;
- the 6D rotation code of the reference implementation (Zhou et al., CVPR 2019, "On the Continuity of Rotation
  Representations in Neural Networks", as I2L-MeshNet's and HMR/SPIN's code reads it): the 6 numbers are a 3x2
  matrix in row-major order, i.e. its columns are a1 = x[0, 2, 4] and a2 = x[1, 3, 5] (not Zhou et al.'s own
  code, whose columns are x[0:3] and x[3:6]); the authors' checkpoints were trained with this layout.
- the camera-frame mirror of SMPL/MANO poses (official_spec.md 4.6) and the in-plane rotation of the augmentation
  (4.7), which are ours.

roma is imported inside the functions: importing it loads ``torch._dynamo`` (about 2 s), which the command line and
data workers that never convert a rotation should not pay.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

ArrayLike = np.ndarray | torch.Tensor | Sequence


def _to_torch(x: ArrayLike) -> tuple[torch.Tensor, bool]:
    """(tensor, whether the input was not a tensor): non-tensors become float64 tensors."""
    if isinstance(x, torch.Tensor):
        return x, False
    return torch.as_tensor(np.asarray(x, dtype=np.float64)), True


def axis_angle_to_matrix(axis_angle: ArrayLike) -> np.ndarray | torch.Tensor:
    """Rodrigues' formula (``roma.rotvec_to_rotmat``).

    axis_angle (...x3): rotation vectors, angle = norm in radians -> (...x3x3) rotation matrices.
    Raises AssertionError when the last dimension is not 3.
    """
    import roma

    aa, was_numpy = _to_torch(axis_angle)
    assert aa.shape[-1] == 3, "Input should be a ...x3 batch of axis-angle vectors."
    mat = roma.rotvec_to_rotmat(aa)
    return mat.numpy() if was_numpy else mat


def matrix_to_axis_angle(matrix: ArrayLike) -> np.ndarray | torch.Tensor:
    """(...x3x3) rotation matrices -> (...x3) rotation vectors with angle in [0, pi].

    Through a unit quaternion by Markley's variant of Shepperd's method (``roma.rotmat_to_unitquat``: the largest
    component first), which stays accurate near angles of pi where the arccos/skew formula loses the axis. The
    quaternion is made w >= 0 here rather than with roma's ``shortest_arc`` (which flips w == 0 too), so that a
    rotation by exactly pi keeps the sign it always had. Raises AssertionError for a shape other than ...x3x3.
    """
    import roma

    m, was_numpy = _to_torch(matrix)
    assert m.shape[-2:] == (3, 3), "Input should be a ...x3x3 batch of rotation matrices."
    q = roma.rotmat_to_unitquat(m)  # (..., 4) XYZW
    q = torch.where(q[..., 3:] < 0, -q, q)
    aa = roma.unitquat_to_rotvec(q, shortest_arc=False)
    return aa.numpy() if was_numpy else aa


def rot6d_to_matrix(x: torch.Tensor) -> torch.Tensor:
    """6D rotation code (..., 6) -> rotation matrices (..., 3, 3) by Gram-Schmidt (``roma.special_gramschmidt``).

    The code is read row-major as a 3x2 matrix (columns a1 = x[0, 2, 4], a2 = x[1, 3, 5]; see the module
    docstring): R's first column is a1 normalised, its second a2 minus its a1 part normalised, its third their
    cross product. A zero column gives a zero column instead of NaN (norms clamped at 1e-12, as
    ``torch.nn.functional.normalize``).
    """
    import roma

    assert x.shape[-1] == 6, "Input should be a ...x6 batch of 6D rotation codes."
    return roma.special_gramschmidt(x.reshape(*x.shape[:-1], 3, 2), epsilon=1e-12)


def matrix_to_rot6d(matrix: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (..., 3, 3) -> their 6D codes (..., 6): the first two columns, row-major, as
    :func:`rot6d_to_matrix` reads them (``rot6d_to_matrix(matrix_to_rot6d(R)) == R`` for rotations)."""
    assert matrix.shape[-2:] == (3, 3), "Input should be a ...x3x3 batch of rotation matrices."
    return matrix[..., :, :2].reshape(*matrix.shape[:-2], 6)


def rotation_z(angle_rad: float, dtype=np.float64) -> np.ndarray:
    """3x3 rotation about the camera's z axis (x right, y down): [[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]]."""
    c, s = math.cos(angle_rad), math.sin(angle_rad)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=dtype)


def flip_axis_angle_pose(pose: ArrayLike, flip_pairs: Sequence[tuple[int, int]]) -> np.ndarray | torch.Tensor:
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


__all__ = ["axis_angle_to_matrix", "matrix_to_axis_angle", "rot6d_to_matrix", "matrix_to_rot6d", "rotation_z",
           "flip_axis_angle_pose"]
