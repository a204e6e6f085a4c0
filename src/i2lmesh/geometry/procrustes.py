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


def procrustes_mean(points: Array, iterations: int = 50, tolerance: float = 1e-9) -> np.ndarray:
    """The generalised Procrustes mean (Gower, Psychometrika 1975) of N point sets (N, P, 3): the shape to which
    they are, on average, closest once each is moved onto it by its best similarity transform
    (:func:`procrustes_align`). Started from the first set; each round aligns every set to the current mean and
    averages them, until the mean moves by less than ``tolerance`` x its size. Returned (P, 3) float64, centred at
    the origin, with the inputs' size (the root of the mean squared distance of their points to their centroids,
    over all sets; the input's unit). Under PA-MPJPE it is the natural "one pose for every image" reference (the
    per-point mean of differently oriented poses is a shrunken blur of them). Raises AssertionError for anything
    but (N, P, 3) with N >= 1, P >= 3."""
    x = np.asarray(points, dtype=np.float64)
    assert x.ndim == 3 and x.shape[0] >= 1 and x.shape[1] >= 3 and x.shape[2] == 3, \
        f"expected (N, P, 3) point sets with P >= 3, got {x.shape}."
    centred = x - x.mean(1, keepdims=True)
    size = float(np.sqrt((centred ** 2).sum(-1).mean()))
    mean = centred[0]
    for _ in range(iterations):
        new = procrustes_align(centred, np.repeat(mean[None], len(centred), 0)).mean(0)
        new = new - new.mean(0)
        new *= size / max(float(np.sqrt((new ** 2).sum(-1).mean())), 1e-300)
        moved = float(np.sqrt(((new - mean) ** 2).sum(-1).mean()))
        mean = new
        if moved <= tolerance * size:
            break
    return mean


__all__ = ["similarity_transform", "procrustes_align", "procrustes_mean"]
