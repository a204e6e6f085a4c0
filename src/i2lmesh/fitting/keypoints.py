"""Keypoint sets by name, and the (K, V) matrix that regresses a set's keypoints from a body model's vertices.

A keypoint set is a :class:`~i2lmesh.bodymodels.joint_sets.JointSet` (names, flip pairs, skeleton). The fitter
compares detected keypoints with ``regressor @ vertices``; :func:`keypoint_regressor` finds that matrix, first match
wins:

1. the body model's own joint set (``smpl29`` for bodies, ``mano21`` for hands) or one of its extra regressors
   (``h36m17``), exactly as the network and the evaluation use them;
2. a regressor shipped with the model's underlying package: Anny ships one for COCO keypoints and COCO-WholeBody's
   six foot points (``coco23``; ``anny/data/keypoints/coco.pth``, weights over its full 13,718-vertex mesh, NAVER,
   Apache-2.0); on the reduced 6,890-vertex mesh it is composed with the model's reduced -> full barycentric map
   (``reduced_to_full``);
3. by name: each keypoint takes the row of the model joint of the same name (e.g. COCO-17 on SMPL: nose, eyes
   and ears are SMPL_29's face vertices, the limbs SMPL's joints; SMPL's hip joints sit inside the pelvis, a few
   centimetres from where COCO annotators put a hip).

A set whose names do not all resolve raises ``KeyError`` naming the missing keypoints.
"""
from __future__ import annotations

import torch

from ..bodymodels.base import BodyModel
from ..bodymodels.joint_sets import JOINT_SETS, JointSet

COCO_17 = JointSet(
    name="coco17",
    names=("Nose", "L_Eye", "R_Eye", "L_Ear", "R_Ear", "L_Shoulder", "R_Shoulder", "L_Elbow", "R_Elbow", "L_Wrist",
           "R_Wrist", "L_Hip", "R_Hip", "L_Knee", "R_Knee", "L_Ankle", "R_Ankle"),
    root_index=0,  # COCO has no pelvis; fitting never uses the root of a keypoint set
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    skeleton=((1, 2), (0, 1), (0, 2), (2, 4), (1, 3), (6, 8), (8, 10), (5, 7), (7, 9), (12, 14), (14, 16), (11, 13),
              (13, 15), (5, 6), (11, 12)),
)

# COCO-17 and the six foot keypoints of COCO-WholeBody (Jin et al., ECCV 2020), in its order: big toe, small toe,
# heel, left then right. Anny's coco.pth regresses all 23.
COCO_23 = JointSet(
    name="coco23",
    names=COCO_17.names + ("L_Big_Toe", "L_Small_Toe", "L_Heel", "R_Big_Toe", "R_Small_Toe", "R_Heel"),
    root_index=0,
    flip_pairs=COCO_17.flip_pairs + ((17, 20), (18, 21), (19, 22)),
    skeleton=COCO_17.skeleton + ((15, 17), (15, 18), (15, 19), (16, 20), (16, 21), (16, 22)),
)

# Anny's COCO labels (coco.pth) by our keypoint names.
_ANNY_COCO_LABELS = dict(zip(COCO_23.names, (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle", "left_big_toe", "left_small_toe", "left_heel", "right_big_toe", "right_small_toe", "right_heel")))

# Torso keypoints, which move (nearly) rigidly with the pelvis: used alone in the first, rigid stage of a body fit
# (SMPLify, Bogo et al. 2016, section 3.3: "we first optimize the camera translation and body orientation using
# the torso joints only"). Hands use all their keypoints there: the wrist and the four knuckles are nearly
# collinear, and the mean hand's fingers tell a palm seen from the front from one seen from the back.
RIGID_CORE_NAMES = ("L_Shoulder", "R_Shoulder", "L_Hip", "R_Hip", "Pelvis", "Torso", "Neck", "L_Thorax",
                    "R_Thorax", "Spine", "Chest")


def keypoint_sets() -> dict[str, JointSet]:
    """Every keypoint set known by name: the project's joint sets, the dataset ones (COCO-18, MuCo-21, SMPL-24) and
    COCO-17 (a set defined in ``bodymodels.joint_sets`` later takes precedence over ours)."""
    sets = {COCO_17.name: COCO_17, COCO_23.name: COCO_23}
    try:
        from ..data.record import KNOWN_JOINT_SETS
        sets.update(KNOWN_JOINT_SETS)
    except ImportError:  # pragma: no cover - data package always present in the wheel
        pass
    sets.update(JOINT_SETS)
    return sets


def get_keypoint_set(keypoint_set: str | JointSet) -> JointSet:
    """A :class:`JointSet` by name (``"coco17"``, ``"h36m17"``, ``"mano21"``, ``"smpl29"``, ...) or as given.

    Raises KeyError for an unknown name (the message lists the known ones)."""
    if isinstance(keypoint_set, JointSet):
        return keypoint_set
    sets = keypoint_sets()
    if keypoint_set not in sets:
        raise KeyError(f"unknown keypoint set {keypoint_set!r}; known: {', '.join(sorted(sets))}")
    return sets[keypoint_set]


def _package_regressor(body_model: BodyModel, joint_set: JointSet) -> torch.Tensor | None:
    """Step 2 of the module docstring: a regressor shipped with the model's package (Anny's COCO one), or None."""
    anny_model = getattr(body_model, "anny", None)
    if anny_model is None or body_model.kind != "body" or not set(joint_set.names) <= set(_ANNY_COCO_LABELS):
        return None
    from anny.keypoints import KeypointsRegressor

    labels = [_ANNY_COCO_LABELS[name] for name in joint_set.names]
    weights = KeypointsRegressor.coco(anny_model, labels=labels).regression_weights
    weights = weights.detach().to(device=body_model.joint_regressor.device, dtype=torch.float32)  # (K, V_full)
    vertex_ids = getattr(body_model, "vertex_ids", None)
    if vertex_ids is None:
        return weights
    # Reduced mesh: each full vertex is sum_j w_ij reduced[ids_ij]; push every full-vertex weight onto those.
    ids = body_model.reduced_to_full_ids.long()  # (V_full, 3) indices into the reduced mesh
    bary = body_model.reduced_to_full_weights.to(weights.dtype)  # (V_full, 3)
    reduced = torch.zeros(weights.shape[0], body_model.num_vertices, dtype=weights.dtype, device=weights.device)
    contrib = weights[:, :, None] * bary[None]  # (K, V_full, 3)
    reduced.index_add_(1, ids.reshape(-1), contrib.reshape(weights.shape[0], -1))
    return reduced / reduced.sum(1, keepdim=True)


def keypoint_regressor(body_model: BodyModel, keypoint_set: str | JointSet) -> tuple[JointSet, torch.Tensor]:
    """The keypoint set and its (K, V) float32 regressor on ``body_model``'s vertices (rows sum to 1).

    See the module docstring for where the matrix comes from. Raises KeyError for an unknown set or for keypoints
    the model cannot provide.
    """
    joint_set = get_keypoint_set(keypoint_set)
    own = {body_model.joint_set.name: body_model.joint_set, **body_model.extra_joint_sets}
    if joint_set.name in own and own[joint_set.name].names == joint_set.names:
        matrix = body_model.joint_regressor if joint_set.name == body_model.joint_set.name else getattr(
            body_model, f"regressor_{joint_set.name}")
        return joint_set, matrix.float()
    shipped = _package_regressor(body_model, joint_set)
    if shipped is not None:
        return joint_set, shipped
    rows, missing = [], []
    for name in joint_set.names:
        for js in own.values():
            if name in js.names:
                rows.append(_row(body_model, js, name))
                break
        else:
            missing.append(name)
    if missing:
        raise KeyError(f"body model {body_model.name!r} has no keypoint for {', '.join(missing)} of set "
                       f"{joint_set.name!r}; its joint sets: {', '.join(own)}")
    return joint_set, torch.stack(rows).float()


def _row(body_model: BodyModel, joint_set: JointSet, name: str) -> torch.Tensor:
    matrix = body_model.joint_regressor if joint_set.name == body_model.joint_set.name else getattr(
        body_model, f"regressor_{joint_set.name}")
    return matrix[joint_set.index(name)]


def rigid_core(joint_set: JointSet) -> list[int]:
    """Indices of the keypoints that move with the root (torso for bodies, palm for hands); all if none match."""
    core = [i for i, name in enumerate(joint_set.names) if name in RIGID_CORE_NAMES]
    return core if len(core) >= 3 else list(range(len(joint_set)))


__all__ = ["COCO_17", "COCO_23", "keypoint_sets", "get_keypoint_set", "keypoint_regressor", "rigid_core",
           "RIGID_CORE_NAMES"]
