"""Similarity Procrustes alignment (Umeyama, IEEE TPAMI 1991) for PA-MPJPE: a numpy/torch wrapper over roma.

The solver is ``roma.rigid_points_registration(..., compute_scaling=True)``: no reflections, scale
c = trace(D S) / (mean squared norm of the centred source) and t = mu_B - c R mu_A, as the reference after its
2020-11 fix (the pre-fix code forgot c in t). What we keep is the numpy-in/numpy-out interface the metrics use.
roma is imported inside the functions (it loads ``torch._dynamo``, about 2 s; see :mod:`.rotations`).
"""
from __future__ import annotations

import numpy as np
import torch


Array = np.ndarray | torch.Tensor


def similarity_transform(source: Array, target: Array) -> tuple[Array, Array, Array]:
    """The similarity (c, R, t) minimising sum_i |c R a_i + t - b_i|^2 over point sets a = source, b = target.

    source, target (...xNx3), any unit (both the same). Returns c (...), R (...x3x3) a proper rotation (det +1,
    also when the best orthogonal map is a reflection), t (...x3) in the input's unit. numpy inputs are computed in
    float64 and give numpy; torch inputs give torch in the source's dtype. A source whose points all coincide has
    no defined scale (c is NaN or infinite). Raises AssertionError for mismatched or non-3D point sets.
    """
    import roma

    was_numpy = not isinstance(source, torch.Tensor)
    a = torch.as_tensor(np.asarray(source, dtype=np.float64)) if was_numpy else source
    b = torch.as_tensor(np.asarray(target, dtype=np.float64)) if was_numpy else target.to(a.dtype)
    assert a.shape == b.shape and a.shape[-1] == 3, "source and target should be matching ...xNx3 point sets."
    rot, trans, scale = roma.rigid_points_registration(a, b, compute_scaling=True)
    if was_numpy:
        return scale.numpy(), rot.numpy(), trans.numpy()
    return scale, rot, trans


def procrustes_align(source: Array, target: Array) -> Array:
    """``source`` (...xNx3) moved onto ``target`` (...xNx3) by the best similarity transform: c R a + t, same
    shape and unit (numpy float64 for numpy inputs, torch for torch inputs)."""
    scale, rot, trans = similarity_transform(source, target)
    if isinstance(source, torch.Tensor):
        return scale[..., None, None] * source @ rot.transpose(-1, -2) + trans[..., None, :]
    source = np.asarray(source, dtype=np.float64)
    return scale[..., None, None] * source @ np.swapaxes(rot, -1, -2) + trans[..., None, :]


__all__ = ["similarity_transform", "procrustes_align"]
