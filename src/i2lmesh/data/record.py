"""One canonical sample record for every dataset, and the dataset-side joint sets.

Every loader (ours and the real datasets') produces :class:`SampleRecord` objects in the same units: pixels for
image things, metres in the camera frame (x right, y down, z forward) for 3D things, whatever the dataset's own
units are (Human3.6M and MuCo store millimetres; their loaders divide by 1000).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from ..bodymodels.joint_sets import H36M_17, JOINT_SETS, MANO_21, SMPL_29, JointSet
from ..bodymodels.smpl import SMPL_POSE_FLIP_PAIRS

log = logging.getLogger(__name__)

Kind = Literal["body", "hand"]

# Dataset joint sets (reference: data/MSCOCO/MSCOCO.py, data/MuCo/MuCo.py; SURREAL is SMPL's 24 joints).
COCO_18 = JointSet(
    name="coco18",
    names=("Nose", "L_Eye", "R_Eye", "L_Ear", "R_Ear", "L_Shoulder", "R_Shoulder", "L_Elbow", "R_Elbow", "L_Wrist",
           "R_Wrist", "L_Hip", "R_Hip", "L_Knee", "R_Knee", "L_Ankle", "R_Ankle", "Pelvis"),
    root_index=17,
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    skeleton=((1, 2), (0, 1), (0, 2), (2, 4), (1, 3), (6, 8), (8, 10), (5, 7), (7, 9), (12, 14), (14, 16), (11, 13),
              (13, 15), (5, 6), (11, 12)),
)
MUCO_21 = JointSet(
    name="muco21",
    names=("Head_top", "Thorax", "R_Shoulder", "R_Elbow", "R_Wrist", "L_Shoulder", "L_Elbow", "L_Wrist", "R_Hip",
           "R_Knee", "R_Ankle", "L_Hip", "L_Knee", "L_Ankle", "Pelvis", "Spine", "Head", "R_Hand", "L_Hand", "R_Toe",
           "L_Toe"),
    root_index=14,
    flip_pairs=((2, 5), (3, 6), (4, 7), (8, 11), (9, 12), (10, 13), (17, 18), (19, 20)),
    skeleton=((0, 16), (16, 1), (1, 15), (15, 14), (14, 8), (14, 11), (8, 9), (9, 10), (10, 19), (11, 12), (12, 13),
              (13, 20), (1, 2), (2, 3), (3, 4), (4, 17), (1, 5), (5, 6), (6, 7), (7, 18)),
)
# SMPL's 24 joints are the joints its 24 pose rotations turn about (rotation i at joint i), so their left/right
# pairs are the body model's pose flip pairs (``SMPL.pose_flip_pairs``): one fact, defined there.
SMPL_24 = JointSet(name="smpl24", names=SMPL_29.names[:24], root_index=0, flip_pairs=SMPL_POSE_FLIP_PAIRS,
                   skeleton=tuple(e for e in SMPL_29.skeleton if max(e) < 24))

KNOWN_JOINT_SETS: dict[str, JointSet] = {**JOINT_SETS, **{js.name: js for js in (COCO_18, MUCO_21, SMPL_24)}}


def get_joint_set(name: str) -> JointSet:
    if name not in KNOWN_JOINT_SETS:
        raise KeyError(f"unknown joint set {name!r}; known: {', '.join(KNOWN_JOINT_SETS)}")
    return KNOWN_JOINT_SETS[name]


def map_joints(values: np.ndarray, source: JointSet, target: JointSet) -> np.ndarray:
    """Copy per-joint rows (J_src x ...) onto ``target``'s joints by name; unmatched target rows are zero.

    The reference's ``transform_joint_to_other_db``. Validity maps the same way (zeros = invalid).
    """
    out = np.zeros((len(target),) + values.shape[1:], dtype=values.dtype)
    for i, name in enumerate(target.names):
        if name in source.names:
            out[i] = values[source.index(name)]
    return out


class DatasetError(ValueError):
    """A dataset (folder or file) that cannot be used: one line naming it and the problem (exit code 2 from the
    command line). Re-raised by a DataLoader worker, it still reads as the original one line."""

    def __str__(self) -> str:
        text = super().__str__()
        if text.startswith("Caught ") and "\nOriginal Traceback" in text:  # DataLoader's re-raise: keep our line
            last = text.rstrip().splitlines()[-1]
            return last.split(": ", 1)[1] if ": " in last else last
        return text


@dataclass
class SampleRecord:
    """One person (or hand) in one image.

    image_path: absolute path (or relative to ``image_root`` of the dataset). image_size: (width, height) px.
    bbox_xywh (4,) px: the annotated box; ``bbox_is_final`` marks a box already squared and enlarged (the
    reference's RootNet test boxes) that must not go through ``process_bbox`` again.
    K (3,3): intrinsics in pixels (default f = 1500, centre principal point when unknown).
    joint_set: the dataset's joint set. joints_img_px (J,2), joints_cam_m (J,3) camera metres, joints_valid (J,):
    the dataset's own joints ("orig"); any may be None when the dataset has none (FreiHAND eval, 3DPW).
    has_3d: joints_cam_m carries depth ground truth (False for 2D datasets such as COCO).
    body_model: "smpl", "mano", "anny" or None. body_params: e.g. {"pose": (72,), "shape": (10,), "trans": (3,)},
    camera frame, metres, axis-angle. body_gender: SMPL gender. vertices_cam_m (V,3): the mesh in camera metres,
    when stored instead of (or besides) parameters. fit_valid: the body-model fit is a usable mesh target
    (the reference's is_valid_fit, e.g. False when the fit error exceeds 25 mm).
    root_depth_m: absolute root depth to decode predictions at test time (RootNet or ground truth), if known.
    vertex_flip_index (V,) optional: the vertex permutation of a left/right mirror, for flipping vertices-only meshes.
    """

    image_path: str
    image_size: tuple[int, int]
    bbox_xywh: np.ndarray
    K: np.ndarray
    kind: Kind = "body"
    joint_set: JointSet | None = None
    joints_img_px: np.ndarray | None = None
    joints_cam_m: np.ndarray | None = None
    joints_valid: np.ndarray | None = None
    has_3d: bool = False
    body_model: str | None = None
    body_params: dict[str, np.ndarray] | None = None
    body_gender: str = "neutral"
    vertices_cam_m: np.ndarray | None = None
    fit_valid: bool = False
    bbox_is_final: bool = False
    root_depth_m: float | None = None
    vertex_flip_index: np.ndarray | None = None
    sample_id: str = ""
    dataset: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def problems(self) -> list[str]:
        """Why this record cannot be used (empty list when it is fine): non-finite numbers, empty box, bad shapes."""
        issues = []
        box = np.asarray(self.bbox_xywh, dtype=np.float64)
        if box.shape != (4,) or not np.all(np.isfinite(box)):
            issues.append("box is not 4 finite numbers")
        elif box[2] <= 0 or box[3] <= 0:
            issues.append(f"empty box {box.tolist()}")
        if np.asarray(self.K).shape != (3, 3) or not np.all(np.isfinite(self.K)) or self.K[0, 0] <= 0:
            issues.append("intrinsics K are not a finite 3x3 matrix with positive focal")
        w, h = self.image_size
        if w <= 0 or h <= 0:
            issues.append(f"image size {self.image_size}")
        for name in ("joints_img_px", "joints_cam_m", "vertices_cam_m"):
            value = getattr(self, name)
            if isinstance(value, np.memmap):
                continue  # a row of a memory-mapped side file: checked when the sample is built, not read here
            if value is not None and not np.all(np.isfinite(value)):
                issues.append(f"{name} has NaN/inf")
        if self.joint_set is not None:
            for name, width in (("joints_img_px", 2), ("joints_cam_m", 3)):
                value = getattr(self, name)
                if value is not None and np.shape(value) != (len(self.joint_set), width):
                    issues.append(f"{name} shape {np.shape(value)} != ({len(self.joint_set)}, {width})")
        if self.body_params:
            for key, value in self.body_params.items():
                if not np.all(np.isfinite(np.asarray(value, dtype=np.float64))):
                    issues.append(f"body parameter {key!r} has NaN/inf")
        return issues


def validate_records(records: list[SampleRecord], source: str) -> list[SampleRecord]:
    """Keep the usable records; log how many were rejected and why (a few examples with their image paths)."""
    kept, rejected = [], []
    for record in records:
        issues = record.problems()
        (rejected.append((record, issues)) if issues else kept.append(record))
    if rejected:
        examples = "; ".join(f"{r.image_path}: {', '.join(i)}" for r, i in rejected[:3])
        log.warning("%s: rejected %d of %d annotations (NaN/inf, empty box or bad shapes), e.g. %s", source,
                    len(rejected), len(records), examples)
    return kept


def finite(*values: Any) -> bool:
    """True when every number in the arguments is finite (nested lists / arrays allowed)."""
    try:
        return all(np.all(np.isfinite(np.asarray(v, dtype=np.float64))) for v in values if v is not None)
    except (TypeError, ValueError):
        return False


def joint_set_to_dict(js: JointSet) -> dict[str, Any]:
    return {"name": js.name, "names": list(js.names), "root_index": js.root_index,
            "flip_pairs": [list(p) for p in js.flip_pairs], "skeleton": [list(e) for e in js.skeleton]}


def joint_set_from_dict(data: dict[str, Any]) -> JointSet:
    return JointSet(name=data["name"], names=tuple(data["names"]), root_index=int(data["root_index"]),
                    flip_pairs=tuple(tuple(p) for p in data.get("flip_pairs", ())),
                    skeleton=tuple(tuple(e) for e in data.get("skeleton", ())))



__all__ = ["SampleRecord", "Kind", "DatasetError", "COCO_18", "MUCO_21", "SMPL_24", "H36M_17", "MANO_21", "SMPL_29",
           "KNOWN_JOINT_SETS", "get_joint_set", "map_joints", "validate_records", "finite", "joint_set_to_dict",
           "joint_set_from_dict"]
