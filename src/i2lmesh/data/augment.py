"""Training augmentation of the paper / reference (official_spec.md 4.3, 4.6, 4.7), and the flips it needs.

A horizontal flip is made exact by flipping the camera with the image: the mirrored image u' = W - 1 - u is what
a camera with principal point cx' = W - 1 - cx sees of the mirrored world x' = -x. So a flipped sample lives in a
"virtual" view (mirrored image, mirrored camera-space points, ``flip_intrinsics(K)``) in which projection, crop and
decoding stay consistent. Left/right joint pairs are swapped; SMPL/MANO parameters are flipped in parameter space
(pairs swapped, y and z of every axis-angle negated, translation moved so the root joint is mirrored); meshes
stored as vertices are mirrored and re-indexed with a vertex mirror map.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..bodymodels.joint_sets import JointSet
from ..bodymodels.smpl import SMPL_POSE_FLIP_PAIRS  # re-exported: SMPL.pose_flip_pairs, for callers of flip_body_params
from ..geometry.rotations import axis_angle_to_matrix, flip_axis_angle_pose, matrix_to_axis_angle, rotation_z

SCALE_FACTOR = 0.25      # scale in [0.75, 1.25]
ROTATION_FACTOR_DEG = 30.0  # rot = clip(N(0,1), -2, 2) * 30 -> +-60 degrees
ROTATION_PROB = 0.6
FLIP_PROB = 0.5
COLOUR_FACTOR = 0.2      # per-channel multiplier in [0.8, 1.2]


@dataclass(frozen=True)
class Augmentation:
    """One draw of the augmentation. rot_deg: the crop shows the image rotated by -rot_deg (reference sense)."""

    scale: float = 1.0
    rot_deg: float = 0.0
    flip: bool = False
    colour: tuple[float, float, float] = (1.0, 1.0, 1.0)


NO_AUGMENTATION = Augmentation()


def sample_augmentation(rng: np.random.Generator, allow_flip: bool = True) -> Augmentation:
    """The reference's ``get_aug_config``: scale, rotation (p = 0.6), flip (p = 0.5, off for hands), colour."""
    scale = float(np.clip(rng.standard_normal(), -1.0, 1.0) * SCALE_FACTOR + 1.0)
    rot = float(np.clip(rng.standard_normal(), -2.0, 2.0) * ROTATION_FACTOR_DEG) if rng.random() <= ROTATION_PROB \
        else 0.0
    flip = bool(allow_flip and rng.random() <= FLIP_PROB)
    colour = tuple(float(c) for c in rng.uniform(1.0 - COLOUR_FACTOR, 1.0 + COLOUR_FACTOR, 3))
    return Augmentation(scale, rot, flip, colour)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ flips

def flip_image(image: np.ndarray) -> np.ndarray:
    """Mirror an (H, W[, C]) image left-right."""
    return np.ascontiguousarray(image[:, ::-1])


def flip_intrinsics(K: np.ndarray, image_width: int) -> np.ndarray:
    """K of the mirrored camera: cx' = W - 1 - cx (then project(mirror(X)) = W - 1 - project(X))."""
    K = np.array(K, dtype=np.float64)
    K[0, 2] = image_width - 1.0 - K[0, 2]
    return K


def flip_bbox(bbox_xywh: np.ndarray, image_width: int) -> np.ndarray:
    """The box of the mirrored image: centre cx -> W - 1 - cx, same size."""
    x, y, w, h = np.asarray(bbox_xywh, dtype=np.float64)
    return np.array([image_width - 1.0 - (x + w / 2.0) - w / 2.0, y, w, h])


def swap_pairs(values: np.ndarray, flip_pairs) -> np.ndarray:
    """Swap rows of left/right pairs (J x ...)."""
    values = np.array(values, copy=True)
    for a, b in flip_pairs:
        values[[a, b]] = values[[b, a]]
    return values


def flip_joints_img(joints_px: np.ndarray, valid: np.ndarray, image_width: int,
                    joint_set: JointSet) -> tuple[np.ndarray, np.ndarray]:
    """u -> W - 1 - u, pairs swapped (with their validity)."""
    joints = np.array(joints_px, dtype=np.float64, copy=True)
    joints[:, 0] = image_width - 1.0 - joints[:, 0]
    return swap_pairs(joints, joint_set.flip_pairs), swap_pairs(valid, joint_set.flip_pairs)


def mirror_points(points_cam: np.ndarray) -> np.ndarray:
    """Camera-space mirror x -> -x (...x3)."""
    return np.asarray(points_cam, dtype=np.float64) * np.array([-1.0, 1.0, 1.0])


def flip_joints_cam(joints_cam: np.ndarray, joint_set: JointSet) -> np.ndarray:
    return swap_pairs(mirror_points(joints_cam), joint_set.flip_pairs)


def flip_vertices(vertices_cam: np.ndarray, vertex_flip_index: np.ndarray) -> np.ndarray:
    """Mirror a mesh and re-index it so vertex i is again the anatomical vertex i (``flip_index[i]`` is i's mirror)."""
    return mirror_points(vertices_cam)[np.asarray(vertex_flip_index)]


def flip_body_params(params: dict[str, np.ndarray], pose_flip_pairs, root_joint_rest_m: np.ndarray | None
                     ) -> dict[str, np.ndarray]:
    """Mirror SMPL/MANO-style parameters (axis-angle ``pose``, ``shape``, ``trans``) through x -> -x.

    pose: rows of the pairs swapped, y and z of every rotation negated. trans: the model rotates about its root
    joint J0 (rest pose, shaped; ``root_joint_rest_m``), so the root sits at J0 + trans; mirroring it gives
    trans' = (-trans_x - 2 J0_x, trans_y, trans_z). Twice is the identity.
    """
    out = dict(params)
    out["pose"] = flip_axis_angle_pose(np.asarray(params["pose"], dtype=np.float64), pose_flip_pairs)
    if params.get("trans") is not None:
        trans = np.array(params["trans"], dtype=np.float64).reshape(3)
        j0x = 0.0 if root_joint_rest_m is None else float(root_joint_rest_m[0])
        trans[0] = -trans[0] - 2.0 * j0x
        out["trans"] = trans
    return out


def rotate_root_pose(params: dict[str, np.ndarray], rot_deg: float) -> dict[str, np.ndarray]:
    """Root orientation rotated by Rz(-rot) in the camera, matching the crop rotation (official_spec.md 4.7)."""
    if rot_deg == 0.0:
        return params
    out = dict(params)
    pose = np.array(params["pose"], dtype=np.float64).reshape(-1)
    root = axis_angle_to_matrix(pose[:3])
    pose[:3] = matrix_to_axis_angle(rotation_z(np.deg2rad(-rot_deg)) @ root)
    out["pose"] = pose
    return out


def rotate_points_z(points: np.ndarray, rot_deg: float) -> np.ndarray:
    """Root-relative camera points (...x3) rotated by Rz(-rot)."""
    return np.asarray(points, dtype=np.float64) @ rotation_z(np.deg2rad(-rot_deg)).T


def apply_colour(image: np.ndarray, colour) -> np.ndarray:
    """Per-channel multiplicative colour jitter on a float 0..255 RGB image, clipped to [0, 255]."""
    return np.clip(image * np.asarray(colour, dtype=np.float32)[None, None, :], 0.0, 255.0)


__all__ = ["Augmentation", "NO_AUGMENTATION", "sample_augmentation", "flip_image", "flip_intrinsics", "flip_bbox",
           "swap_pairs", "flip_joints_img", "mirror_points", "flip_joints_cam", "flip_vertices", "flip_body_params",
           "rotate_root_pose", "rotate_points_z", "apply_colour", "SMPL_POSE_FLIP_PAIRS"]
