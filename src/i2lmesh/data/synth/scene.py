"""Random cameras and body placement for synthetic images.

Frames: camera x right, y down, z forward, metres; pixels with the origin at the top-left pixel centre (the
renderer's convention, ``render.project_points``). The body model's root (pelvis or wrist) is the origin of the
posed mesh before ``trans`` is added, so a sample is fully described by the body model's own parameters: the root
rotation ``pose[:, 0]`` is the orientation *in the camera frame* and ``trans`` the root position in the camera frame,
and ``forward(pose, shape, trans)`` gives the camera-space mesh that was rendered.

What is sampled (per kind, see :data:`SCENE_SETTINGS`):
- intrinsics: a square-pixel pinhole with a field of view uniform in a range, principal point near the image centre;
- orientation: bodies stand upright (any yaw about the vertical, the camera pitched and rolled a little); hands take
  a uniformly random 3D rotation (a normalised Gaussian quaternion), redrawn when the camera would look into the
  open wrist;
- placement: the distance makes the mesh's projected extent a random fraction of the image ("fill"); the mesh's
  projected box then lies fully inside the image, except for a fraction of samples deliberately truncated at one
  border (15-45% of the box outside).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

# Anny's model frame (Z up, facing -Y) -> camera frame for an upright body facing the camera (see bodymodels.anny).
ANNY_TO_CAMERA = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


@dataclass(frozen=True)
class SceneSettings:
    """Ranges of the random camera and placement for one kind of sample (angles in degrees).

    fov_deg: horizontal field of view. principal_jitter: principal point offset from the image centre, as a
    fraction of the image size. fill: the larger side of the mesh's projected box, as a fraction of the image size.
    truncation_prob: share of samples pushed partly out of the image; truncation: the fraction of the box outside.
    pitch_deg / roll_deg: camera tilt for upright bodies (positive pitch: the camera looks down on the person).
    bbox_3d_size_m: the depth range of the network's z heatmap (design.md: 2 m body, 0.3 m hand), recorded with the
    dataset for reference. min_depth_m: the mesh's box centre is never closer to the camera (a hand seen end-on
    would otherwise come within centimetres of the lens).
    """

    fov_deg: tuple[float, float]
    fill: tuple[float, float]
    truncation_prob: float
    truncation: tuple[float, float]
    principal_jitter: float = 0.02
    pitch_deg: tuple[float, float] = (-10.0, 25.0)
    roll_deg: tuple[float, float] = (-8.0, 8.0)
    bbox_3d_size_m: float = 2.0
    min_depth_m: float = 1.0


HAND_MAX_AWAY = 0.7  # cosine: hands whose fingers point farther away from the camera are redrawn

SCENE_SETTINGS: dict[str, SceneSettings] = {
    "body": SceneSettings(fov_deg=(30.0, 65.0), fill=(0.55, 0.9), truncation_prob=0.15, truncation=(0.15, 0.45),
                          bbox_3d_size_m=2.0, min_depth_m=1.2),
    "hand": SceneSettings(fov_deg=(35.0, 70.0), fill=(0.5, 0.85), truncation_prob=0.1, truncation=(0.15, 0.4),
                          bbox_3d_size_m=0.3, min_depth_m=0.2),
}


def sample_intrinsics(rng: np.random.Generator, image_size: int, settings: SceneSettings) -> np.ndarray:
    """3x3 K (float64, pixels) for a square ``image_size`` image: f = (S/2) / tan(fov/2), square pixels, the
    principal point at the image centre ((S-1)/2 with pixel centres at integers) plus a small jitter."""
    fov = math.radians(rng.uniform(*settings.fov_deg))
    focal = (image_size / 2.0) / math.tan(fov / 2.0)
    centre = (image_size - 1) / 2.0 + rng.uniform(-1.0, 1.0, size=2) * settings.principal_jitter * image_size
    return np.array([[focal, 0.0, centre[0]], [0.0, focal, centre[1]], [0.0, 0.0, 1.0]])


def sample_root_rotation(rng: np.random.Generator, kind: str, settings: SceneSettings) -> np.ndarray:
    """Root rotation (3,) axis-angle, camera frame, for ``pose[:, 0]`` of an Anny body or hand.

    body: R = R_tilt @ ANNY_TO_CAMERA @ R_yaw, with the yaw uniform in [0, 2 pi) about the model's vertical (Z) axis
    and R_tilt = R_x(pitch) R_z(roll) a camera pitch/roll; hand: uniform on SO(3) except views looking into the
    wrist opening (the wrist-to-fingers axis, the hand frame's +Y, pointing away from the camera with z >
    ``HAND_MAX_AWAY``), which are redrawn.
    """
    if kind == "hand":
        for _ in range(32):
            q = rng.normal(size=4)
            rotation = Rotation.from_quat(q / np.linalg.norm(q))
            # The hand mesh is open at the wrist: skip views straight into the opening (fingers pointing away).
            if rotation.apply([0.0, 1.0, 0.0])[2] < HAND_MAX_AWAY:
                break
        return rotation.as_rotvec()
    yaw = rng.uniform(0.0, 2.0 * math.pi)
    pitch = math.radians(rng.uniform(*settings.pitch_deg))
    roll = math.radians(rng.uniform(*settings.roll_deg))
    # A camera looking down on the person sees its head nearer than its feet: the body's up vector (0, -1, 0)
    # turns towards the camera (-z), which is a rotation by +pitch about the camera's x axis.
    tilt = Rotation.from_euler("xz", [pitch, roll]).as_matrix()
    yaw_m = Rotation.from_rotvec([0.0, 0.0, yaw]).as_matrix()
    return Rotation.from_matrix(tilt @ ANNY_TO_CAMERA @ yaw_m).as_rotvec()


@dataclass
class Placement:
    """Where the root goes: ``trans_m`` (3,) camera metres; ``truncated``: deliberately cut by a border;
    ``box_px``: (x1, y1, x2, y2) of the projected mesh, unclipped."""

    trans_m: np.ndarray
    truncated: bool
    box_px: np.ndarray


def place_in_view(vertices_m: np.ndarray, K: np.ndarray, image_size: int, rng: np.random.Generator,
                  settings: SceneSettings) -> Placement:
    """Choose the translation of a root-centred, already oriented mesh (Vx3, camera axes, metres).

    The depth puts the mesh's larger projected side at ``fill`` x image size; the box centre is then placed
    uniformly where the box fits, or, for a truncated sample, with a random fraction of the box past one random
    border. A few fix-up steps correct for perspective (the box is computed exactly after each step).
    """
    S = float(image_size)
    focal = float(K[0, 0])
    lo, hi = vertices_m.min(0), vertices_m.max(0)
    centre = (lo + hi) / 2.0
    extent = float(max(hi[0] - lo[0], hi[1] - lo[1]))
    fill = rng.uniform(*settings.fill)
    # depth of the box centre giving the wanted fill; never closer than min_depth_m nor the mesh's half depth + 5 cm
    depth = max(focal * extent / (fill * S), float(hi[2] - lo[2]) / 2.0 + 0.05, settings.min_depth_m)
    truncated = bool(rng.uniform() < settings.truncation_prob)
    side = int(rng.integers(4))  # left, right, top, bottom
    cut = rng.uniform(*settings.truncation)
    # Target box centre (u, v) in [0, 1] of the free range, decided once so the fix-up below is deterministic.
    where = rng.uniform(0.0, 1.0, size=2)

    x, y, z = (np.ascontiguousarray(vertices_m[:, k], dtype=np.float64) for k in range(3))

    def box_at(t: np.ndarray) -> np.ndarray:
        inv_z = 1.0 / (z + t[2])
        u, v = (x + t[0]) * inv_z, (y + t[1]) * inv_z
        return np.array([u.min(), v.min(), u.max(), v.max()]) * K[[0, 1, 0, 1], [0, 1, 0, 1]] + K[[0, 1, 0, 1], 2]

    trans = np.array([-centre[0], -centre[1], depth - centre[2]])
    for _ in range(6):
        box = box_at(trans)
        w, h = box[2] - box[0], box[3] - box[1]
        target = np.empty(2)
        for axis, size in ((0, w), (1, h)):
            free = max(S - 1.0 - size, 0.0)
            target[axis] = size / 2.0 + where[axis] * free
        if truncated:
            axis, sign = (0, -1.0) if side == 0 else (0, 1.0) if side == 1 else (1, -1.0) if side == 2 else (1, 1.0)
            size = w if axis == 0 else h
            # `cut` of the box past the border (at -0.5 or S - 0.5, the image's outer pixel edges)
            target[axis] = -0.5 + (0.5 - cut) * size if sign < 0 else S - 0.5 + (cut - 0.5) * size
        shift_px = target - (box[:2] + box[2:]) / 2.0
        if np.all(np.abs(shift_px) < 0.25):
            break
        z_centre = trans[2] + centre[2]
        trans[:2] += shift_px * z_centre / focal
    box = box_at(trans)
    if not truncated:
        # Perspective may leave the box a little larger than the image: step back until it fits.
        for _ in range(20):
            if box[0] >= 0 and box[1] >= 0 and box[2] <= S - 1 and box[3] <= S - 1:
                break
            trans *= 1.05
            box = box_at(trans)
    return Placement(trans_m=trans, truncated=truncated, box_px=box)


__all__ = ["SceneSettings", "SCENE_SETTINGS", "sample_intrinsics", "sample_root_rotation", "Placement",
           "place_in_view", "ANNY_TO_CAMERA"]
