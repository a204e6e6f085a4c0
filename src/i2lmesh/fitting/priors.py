"""Pose spaces, priors and the robust error of the fitter.

Pose spaces (how the optimiser sees the pose of the non-root bones):

- :class:`EulerRangePoseSpace`, for models that publish per-bone anatomical ranges (``body_model.pose_sampler``
  with ``low``/``high`` (K, 3) Euler angles, radians, X Z Y; the Anny body and hand): one angle per free axis (flexion,
  abduction, twist) of each posed bone; axes whose range is [0, 0] stay at rest. Prior: a quadratic hinge outside the
  range (SMPLify's bending term, Bogo et al. 2016 eq. 5, generalised to every axis) plus a Gaussian on each angle
  whose mean and spread are those of the model's own pose sampler (measured once on 4,096 samples).
- :class:`AxisAnglePoseSpace`, for any other model (SMPL, MANO): axis-angle per joint, Gaussian prior with the
  mean and spread of the model's ``sample_params`` (for SMPL/MANO a plain L2 pull towards the mean pose; SMPLify's
  mixture of Gaussians learned on CMU mocap is not available under a free licence).

Shape prior (:class:`ShapePrior`): a Gaussian with the mean and spread of the model's ``sample_params`` shapes
(SMPLify eq. 6 uses the betas' N(0, I)) plus a quadratic hinge outside the sampled range (Anny phenotypes live in
[0, 1]).

Robust error: Geman-McClure, ``rho(e) = sigma^2 e^2 / (sigma^2 + e^2)`` (Geman & McClure 1987; SMPLify eq. 3).
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch

from ..bodymodels.base import BodyModel

PRIOR_SAMPLES = 4096
EULER_ORDER = "XZY"  # pose_sampler: intrinsic flexion (X), abduction (Z), twist (Y)


def geman_mcclure(squared_error: torch.Tensor, sigma: float) -> torch.Tensor:
    """Geman-McClure of errors given squared: ``sigma^2 e^2 / (sigma^2 + e^2)`` (same units as e^2)."""
    s2 = sigma * sigma
    return s2 * squared_error / (s2 + squared_error)


class PoseSpace:
    """Non-root pose parameters <-> the body model's pose. ``bones``: the pose rotations being optimised."""

    uses_matrices: bool = False

    def to_params(self, pose: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def to_pose(self, params: torch.Tensor, root: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover

    def prior(self, params: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class EulerRangePoseSpace(PoseSpace):
    """Euler angles of the posed bones (see module docstring). ``params`` (B, P, 3) radians in ``EULER_ORDER``."""

    uses_matrices = True

    def __init__(self, body_model: BodyModel, bones_used: list[int]) -> None:
        sampler = body_model.pose_sampler
        device = body_model.joint_regressor.device
        low, high = sampler.low.float().to(device), sampler.high.float().to(device)
        used = set(bones_used)
        self.bones = [int(b) for b in sampler.posed.tolist() if int(b) in used and int(b) != 0]
        self.num_rotations = body_model.num_pose_rotations
        index = torch.tensor(self.bones, dtype=torch.long, device=device)
        self.index = index
        self.low, self.high = low[index], high[index]
        self.free = (self.high - self.low) > 0
        mean, std = _sampler_stats(body_model)
        self.mean = mean.to(device)[index]
        self.std = std.to(device)[index].clamp_min(math.radians(1.0))
        # prior() = (100 hinge + z^2) / count over the free angles, with the constants folded in
        count = float(self.free.sum().clamp_min(1))
        self._z_scale = self.free / (self.std * math.sqrt(count))
        self._hinge_scale = self.free * math.sqrt(100.0 / count)
        # R_X(a) R_Z(b) R_Y(c) entry by entry, as products of three of (cos a, cos b, cos c, sin a, sin b, sin c, 1):
        # R00 = cb cc, R01 = -sb, R02 = cb sc, R10 = ca sb cc + sa sc, R11 = ca cb, R12 = ca sb sc - sa cc,
        # R20 = sa sb cc - ca sc, R21 = sa cb, R22 = sa sb sc + ca cc.
        ca, cb, cc, sa, sb, sc, one = range(7)
        terms = [((cb, cc, one), 0, 1), ((sb, one, one), 1, -1), ((cb, sc, one), 2, 1), ((ca, sb, cc), 3, 1),
                 ((sa, sc, one), 3, 1), ((ca, cb, one), 4, 1), ((ca, sb, sc), 5, 1), ((sa, cc, one), 5, -1),
                 ((sa, sb, cc), 6, 1), ((ca, sc, one), 6, -1), ((sa, cb, one), 7, 1), ((sa, sb, sc), 8, 1),
                 ((ca, cc, one), 8, 1)]
        self._euler_terms = tuple(torch.tensor([t[0][i] for t in terms], device=device) for i in range(3))
        self._euler_signs = torch.zeros(len(terms), 9, device=device)
        for i, (_, entry, sign) in enumerate(terms):
            self._euler_signs[i, entry] = float(sign)

    def to_params(self, pose: torch.Tensor) -> torch.Tensor:
        """Pose (B, J, 3) axis-angle or (B, J, 3, 3) -> (B, P, 3) Euler angles (fixed axes zeroed)."""
        import roma

        rot = pose if pose.ndim == 4 else roma.rotvec_to_rotmat(pose.reshape(pose.shape[0], -1, 3))
        angles = roma.rotmat_to_euler(EULER_ORDER, rot[:, self.index].float())
        return angles * self.free

    def rotations(self, params: torch.Tensor) -> torch.Tensor:
        """(B, P, 3, 3) rotations of the posed bones: intrinsic X, then Z, then Y (``EULER_ORDER``), i.e.
        R_X(a) R_Z(b) R_Y(c), multiplied out: each entry is a sum of at most two products of the angles' cosines
        and sines (equal to ``roma.euler_to_rotmat("XZY", ...)`` to 1e-6, tested; a dozen tensor operations instead of
        ~60, which is what the fitter's speed depends on)."""
        angles = params * self.free
        factors = torch.cat([torch.cos(angles), torch.sin(angles), torch.ones_like(angles[..., :1])], -1)
        first, second, third = self._euler_terms
        terms = factors[..., first] * factors[..., second] * factors[..., third]  # (B, P, 13)
        return (terms @ self._euler_signs).reshape(*params.shape[:-1], 3, 3)

    def to_pose(self, params: torch.Tensor, root: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """(B, J, 3, 3) rotations: ``base`` (B, J, 3, 3) with the root replaced and the posed bones set."""
        rot = self.rotations(params)
        pose = base.clone()
        pose[:, 0] = root
        pose[:, self.index] = rot
        return pose

    def prior(self, params: torch.Tensor) -> torch.Tensor:
        """(B,) sum over free angles of the range hinge (rad^2, x100) and the squared z-score, over the count."""
        outside = torch.relu(params - self.high) + torch.relu(self.low - params)  # at most one is non-zero
        z = (params - self.mean) * self._z_scale
        return ((outside * self._hinge_scale) ** 2 + z * z).sum((1, 2))


class AxisAnglePoseSpace(PoseSpace):
    """Axis-angle of every non-root joint. ``params`` (B, J-1, 3) radians."""

    def __init__(self, body_model: BodyModel, bones_used: list[int]) -> None:
        self.num_rotations = body_model.num_pose_rotations
        self.bones = list(range(1, self.num_rotations))
        device = body_model.joint_regressor.device
        params = body_model.sample_params(PRIOR_SAMPLES, torch.Generator().manual_seed(0))["pose"]
        params = params.reshape(PRIOR_SAMPLES, self.num_rotations, 3)[:, 1:].float()
        self.mean = params.mean(0).to(device)
        self.std = params.std(0).to(device).clamp_min(0.05)

    def to_params(self, pose: torch.Tensor) -> torch.Tensor:
        import roma

        if pose.ndim == 4:
            pose = roma.rotmat_to_rotvec(pose)
        return pose.reshape(pose.shape[0], self.num_rotations, 3)[:, 1:].float()

    def to_pose(self, params: torch.Tensor, root: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
        """(B, J, 3) axis-angle: the root (given as a matrix) converted, then ``params``."""
        import roma

        return torch.cat([roma.rotmat_to_rotvec(root)[:, None], params], 1)

    def prior(self, params: torch.Tensor) -> torch.Tensor:
        return (((params - self.mean) / self.std) ** 2).sum((1, 2)) / params[0].numel()


def make_pose_space(body_model: BodyModel, bones_used: list[int]) -> PoseSpace:
    """Euler ranges where the model publishes them (``pose_sampler.low/high``), axis-angle otherwise."""
    sampler = getattr(body_model, "pose_sampler", None)
    if sampler is not None and hasattr(sampler, "low") and hasattr(sampler, "high"):
        return EulerRangePoseSpace(body_model, bones_used)
    return AxisAnglePoseSpace(body_model, bones_used)


@lru_cache(maxsize=8)
def _sampler_stats_cached(key: tuple, sampler) -> tuple[torch.Tensor, torch.Tensor]:
    import roma

    pose = sampler.sample(PRIOR_SAMPLES, torch.Generator().manual_seed(0))
    angles = roma.rotmat_to_euler(EULER_ORDER, roma.rotvec_to_rotmat(pose.double())).float()
    return angles.mean(0), angles.std(0)


def _sampler_stats(body_model: BodyModel) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-bone (K, 3) mean and std of the sampler's Euler angles."""
    sampler = body_model.pose_sampler
    return _sampler_stats_cached((body_model.name, body_model.kind, len(sampler.bone_labels)), sampler)


class ShapePrior:
    """Gaussian + range hinge from the model's sampled shapes (module docstring). ``__call__`` -> (B,)."""

    def __init__(self, body_model: BodyModel) -> None:
        shape = body_model.sample_params(PRIOR_SAMPLES, torch.Generator().manual_seed(0))["shape"].float()
        device = body_model.joint_regressor.device
        self.mean = shape.mean(0).to(device)
        self.std = shape.std(0).to(device).clamp_min(1e-3)
        self.low, self.high = shape.min(0).values.to(device), shape.max(0).values.to(device)
        self._scale = 1.0 / (self.std * math.sqrt(shape.shape[1]))  # __call__'s constants
        self._hinge_scale = 10.0 * self._scale

    def __call__(self, shape: torch.Tensor) -> torch.Tensor:
        """(B,) of shapes (B, S): (sum of squared z-scores + 100 x the squared z-distances outside the range) / S."""
        z = (shape - self.mean) * self._scale
        outside = (torch.relu(shape - self.high) + torch.relu(self.low - shape)) * self._hinge_scale
        return (z * z + outside * outside).sum(1)


__all__ = ["geman_mcclure", "PoseSpace", "EulerRangePoseSpace", "AxisAnglePoseSpace", "make_pose_space",
           "ShapePrior", "EULER_ORDER"]
