"""Seeded sampler of plausible Anny poses and shapes (i.i.d. random rotations look broken; this does not).

Anny's "local-bone" pose parameterisation gives each bone a rotation in its own rest frame, Blender style: Y runs
along the bone (head to tail), so a Y rotation is the *twist*, X is the main *hinge* (flexion) and Z the secondary
hinge (abduction / lateral bend). Measured on anny 0.6.2 (rig "anny"), for the left side and the midline:

- +X flexes: knee, elbow, fingers, thumb, spine and neck bend forward, the ankle plantar-flexes, the shoulder
  raises the arm forwards; at the hip +X *extends* (the leg goes back), so hip flexion is negative.
- +Z on the left arm raises it sideways (abduction); on the left leg it adducts (the knee goes inwards).
- Every right bone's rest frame is the mirror of its left twin's with the X axis flipped
  (``R_right = diag(-1,1,1) R_left diag(-1,1,1)``), so a left rotation vector (x, y, z) mirrors to (x, -y, -z):
  the same flexion, opposite twist and abduction. The ranges below are written for the left side and mirrored.

Each angle of a sample is uniform in its range times a per-sample "activity" in [0.3, 1] (calmer and wilder
people), and every range contains 0 (the rest pose, an A-pose), so each angle stays within its range.
Bones not listed (toes, metacarpals, eyes, pelvis.L/R, shoulder01) keep their rest rotation.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch

Range = tuple[float, float]
# bone (left or midline name) -> ((x_lo, x_hi), (z_lo, z_hi), (y_lo, y_hi)) in degrees: flexion, abduction, twist.
BoneRanges = Mapping[str, tuple[Range, Range, Range]]

FINGER_RANGES: dict[str, tuple[Range, Range, Range]] = {
    # thumb: carpometacarpal (finger1-1), metacarpophalangeal (finger1-2), interphalangeal (finger1-3)
    "finger1-1": ((-10.0, 35.0), (-20.0, 20.0), (-15.0, 15.0)),
    "finger1-2": ((-5.0, 50.0), (-5.0, 5.0), (0.0, 0.0)),
    "finger1-3": ((-5.0, 70.0), (0.0, 0.0), (0.0, 0.0)),
    **{f"finger{k}-1": ((-10.0, 80.0), (-10.0, 10.0), (-5.0, 5.0)) for k in (2, 3, 4, 5)},
    **{f"finger{k}-2": ((0.0, 100.0), (0.0, 0.0), (0.0, 0.0)) for k in (2, 3, 4, 5)},
    **{f"finger{k}-3": ((0.0, 70.0), (0.0, 0.0), (0.0, 0.0)) for k in (2, 3, 4, 5)},
}

BODY_RANGES: dict[str, tuple[Range, Range, Range]] = {
    # trunk and head (midline: abduction and twist ranges symmetric)
    "spine05": ((-5.0, 15.0), (-5.0, 5.0), (-5.0, 5.0)),
    "spine04": ((-8.0, 15.0), (-6.0, 6.0), (-8.0, 8.0)),
    "spine03": ((-8.0, 15.0), (-6.0, 6.0), (-8.0, 8.0)),
    "spine02": ((-8.0, 15.0), (-6.0, 6.0), (-8.0, 8.0)),
    "spine01": ((-5.0, 10.0), (-5.0, 5.0), (-8.0, 8.0)),
    "neck01": ((-20.0, 25.0), (-15.0, 15.0), (-25.0, 25.0)),
    "neck02": ((-8.0, 8.0), (-5.0, 5.0), (-10.0, 10.0)),
    "neck03": ((-8.0, 8.0), (-5.0, 5.0), (-10.0, 10.0)),
    "head": ((-20.0, 20.0), (-10.0, 10.0), (-20.0, 20.0)),
    # arm (rest: A-pose, arm ~42 degrees from vertical)
    "clavicle.L": ((-8.0, 8.0), (-5.0, 15.0), (-5.0, 5.0)),
    "upperarm01.L": ((-40.0, 110.0), (-30.0, 90.0), (-45.0, 45.0)),
    "upperarm02.L": ((0.0, 0.0), (0.0, 0.0), (-30.0, 30.0)),
    "lowerarm01.L": ((0.0, 140.0), (-3.0, 3.0), (-10.0, 10.0)),
    "lowerarm02.L": ((0.0, 0.0), (0.0, 0.0), (-50.0, 50.0)),
    "wrist.L": ((-50.0, 60.0), (-20.0, 20.0), (-10.0, 10.0)),
    # leg (+X at the hip extends; flexion is negative)
    "upperleg01.L": ((-100.0, 25.0), (-40.0, 15.0), (-30.0, 30.0)),
    "upperleg02.L": ((0.0, 0.0), (0.0, 0.0), (-15.0, 15.0)),
    "lowerleg01.L": ((0.0, 130.0), (-3.0, 3.0), (-10.0, 10.0)),
    "lowerleg02.L": ((0.0, 0.0), (0.0, 0.0), (-10.0, 10.0)),
    "foot.L": ((-25.0, 40.0), (-15.0, 15.0), (-15.0, 15.0)),
    **{f"{name}.L": r for name, r in FINGER_RANGES.items()},
}

HAND_RANGES: dict[str, tuple[Range, Range, Range]] = {f"{name}.L": r for name, r in FINGER_RANGES.items()}

ACTIVITY_RANGE: Range = (0.3, 1.0)
PHENOTYPE_LABELS: tuple[str, ...] = ("gender", "age", "muscle", "weight", "height", "proportions")


def _range_table(bone_labels: Sequence[str], ranges: BoneRanges) -> tuple[torch.Tensor, torch.Tensor]:
    """(K, 3) low and high Euler angles (radians, order X, Z, Y) per bone; right bones mirrored from left ones."""
    low = torch.zeros(len(bone_labels), 3, dtype=torch.float64)
    high = torch.zeros(len(bone_labels), 3, dtype=torch.float64)
    for k, label in enumerate(bone_labels):
        mirrored = label.endswith(".R")
        key = label[:-2] + ".L" if mirrored else label
        if key not in ranges:
            continue
        for axis, (lo, hi) in enumerate(ranges[key]):
            assert lo <= 0.0 <= hi, f"range of {key} axis {axis} must contain the rest angle 0, got {(lo, hi)}."
            if mirrored and axis > 0:  # Z and Y flip sign on the right side (see module docstring)
                lo, hi = -hi, -lo
            low[k, axis], high[k, axis] = math.radians(lo), math.radians(hi)
    return low, high


def euler_xzy_to_rotvec(angles: torch.Tensor) -> torch.Tensor:
    """Intrinsic X (flexion), then Z (abduction), then Y (twist) angles (..., 3) in radians -> rotation vectors."""
    import roma

    rotmat = roma.euler_to_rotmat("XZY", angles.reshape(-1, 3))
    return roma.rotmat_to_rotvec(rotmat).reshape(angles.shape)


class PoseSampler:
    """Random plausible local-bone rotations for one Anny rig.

    bone_labels: the rig's bone names (``anny_model.bone_labels``); ranges: per-bone ranges (see ``BODY_RANGES``).
    ``sample(B, generator)`` -> (B, K, 3) float32 axis-angle rotations, root (index 0) at identity.
    """

    def __init__(self, bone_labels: Sequence[str], ranges: BoneRanges) -> None:
        self.bone_labels = tuple(bone_labels)
        self.low, self.high = _range_table(self.bone_labels, ranges)
        self.posed = ((self.high - self.low).abs().sum(1) > 0).nonzero().flatten()

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
        u = torch.rand(batch_size, len(self.bone_labels), 3, generator=generator, dtype=torch.float64)
        activity = torch.empty(batch_size, 1, 1, dtype=torch.float64).uniform_(*ACTIVITY_RANGE, generator=generator)
        angles = activity * (self.low + (self.high - self.low) * u)
        rotvec = torch.zeros_like(angles)
        rotvec[:, self.posed] = euler_xzy_to_rotvec(angles[:, self.posed])
        return rotvec.float()


def sample_phenotypes(batch_size: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, 6) phenotypes in ``PHENOTYPE_LABELS`` order, each in [0, 1].

    Mostly adults: Anny's age 0 / 1/3 / 2/3 / 1 are baby / child / young adult / old; 90% of samples take an age in
    [0.5, 1] (teenager to old), 10% in [0.25, 0.5] (children). Gender, muscle and weight are uniform in [0, 1],
    proportions in [0, 0.8] (1 is Anny's "uncommon proportions") and height in [0.2, 0.8]: Anny's height spans
    1.1 m (height 0, age 0.5) to 2.4 m (height 1, age 1), and at those extremes its knee bone head drifts several
    centimetres away from the knee of the mesh (see docs/body_models.md).
    """
    u = torch.rand(batch_size, 6, generator=generator, dtype=torch.float64)
    child = torch.rand(batch_size, generator=generator, dtype=torch.float64) < 0.1
    shape = u.clone()
    shape[:, 1] = torch.where(child, 0.25 + 0.25 * u[:, 1], 0.5 + 0.5 * u[:, 1])
    shape[:, 4] = 0.2 + 0.6 * u[:, 4]
    shape[:, 5] = 0.8 * u[:, 5]
    return shape.float()
