"""Similarity Procrustes alignment (Umeyama, IEEE TPAMI 1991) for PA-MPJPE, batched, numpy or torch."""
from __future__ import annotations

import numpy as np
import torch


def similarity_transform(source, target):
    """The similarity (c, R, t) minimising sum |c R a_i + t - b_i|^2 over point sets (...xNx3).

    Returns c (...), R (...x3x3), t (...x3). As the reference after its 2020-11 fix: H = (A - mu_A)^T (B - mu_B),
    U S V^T = svd(H), R = V U^T with the last singular direction negated when det < 0 (no reflections),
    c = trace(S') / sum of the per-axis population variances of A, and t = mu_B - c R mu_A (the pre-fix code
    forgot c in t).
    """
    was_numpy = not isinstance(source, torch.Tensor)
    a = torch.as_tensor(np.asarray(source, dtype=np.float64)) if was_numpy else source
    b = torch.as_tensor(np.asarray(target, dtype=np.float64)) if was_numpy else target.to(a.dtype)
    assert a.shape == b.shape and a.shape[-1] == 3, "source and target should be matching ...xNx3 point sets."
    mu_a, mu_b = a.mean(-2, keepdim=True), b.mean(-2, keepdim=True)
    a0, b0 = a - mu_a, b - mu_b
    h = a0.transpose(-1, -2) @ b0 / a.shape[-2]
    u, s, vt = torch.linalg.svd(h)
    d = torch.sign(torch.linalg.det(vt.transpose(-1, -2) @ u.transpose(-1, -2)))
    d = torch.where(d == 0, torch.ones_like(d), d)
    sign = torch.stack([torch.ones_like(d), torch.ones_like(d), d], -1)
    rot = vt.transpose(-1, -2) @ (sign[..., :, None] * u.transpose(-1, -2))
    var_a = (a0 ** 2).sum((-1, -2)) / a.shape[-2]
    scale = (s * sign).sum(-1) / var_a
    trans = mu_b.squeeze(-2) - scale[..., None] * (rot @ mu_a.squeeze(-2)[..., None]).squeeze(-1)
    if was_numpy:
        return scale.numpy(), rot.numpy(), trans.numpy()
    return scale, rot, trans


def procrustes_align(source, target):
    """``source`` (...xNx3) moved onto ``target`` by the best similarity transform: c R a + t."""
    scale, rot, trans = similarity_transform(source, target)
    if isinstance(source, torch.Tensor):
        return scale[..., None, None] * source @ rot.transpose(-1, -2) + trans[..., None, :]
    source = np.asarray(source, dtype=np.float64)
    return scale[..., None, None] * source @ np.swapaxes(rot, -1, -2) + trans[..., None, :]


__all__ = ["similarity_transform", "procrustes_align"]
