"""Named joint sets: names, root, left/right flip pairs and skeleton edges.

Orders and edges follow the reference implementation (I2L-MeshNet_RELEASE, common/utils/smpl.py,
common/utils/mano.py, data/Human36M/Human36M.py) so that dataset joints map onto ours by name.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class JointSet:
    """Joint metadata. ``flip_pairs`` are (left, right) index pairs swapped by a horizontal flip."""

    name: str
    names: tuple[str, ...]
    root_index: int
    flip_pairs: tuple[tuple[int, int], ...]
    skeleton: tuple[tuple[int, int], ...]

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        return self.names.index(name)


SMPL_29 = JointSet(
    name="smpl29",
    names=(
        "Pelvis", "L_Hip", "R_Hip", "Torso", "L_Knee", "R_Knee", "Spine", "L_Ankle", "R_Ankle", "Chest",
        "L_Toe", "R_Toe", "Neck", "L_Thorax", "R_Thorax", "Head", "L_Shoulder", "R_Shoulder", "L_Elbow",
        "R_Elbow", "L_Wrist", "R_Wrist", "L_Hand", "R_Hand", "Nose", "L_Eye", "R_Eye", "L_Ear", "R_Ear",
    ),
    root_index=0,
    flip_pairs=((1, 2), (4, 5), (7, 8), (10, 11), (13, 14), (16, 17), (18, 19), (20, 21), (22, 23), (25, 26),
                (27, 28)),
    skeleton=((0, 1), (1, 4), (4, 7), (7, 10), (0, 2), (2, 5), (5, 8), (8, 11), (0, 3), (3, 6), (6, 9), (9, 14),
              (14, 17), (17, 19), (19, 21), (21, 23), (9, 13), (13, 16), (16, 18), (18, 20), (20, 22), (9, 12),
              (12, 24), (24, 15), (24, 25), (24, 26), (25, 27), (26, 28)),
)

H36M_17 = JointSet(
    name="h36m17",
    names=(
        "Pelvis", "R_Hip", "R_Knee", "R_Ankle", "L_Hip", "L_Knee", "L_Ankle", "Torso", "Neck", "Nose",
        "Head_top", "L_Shoulder", "L_Elbow", "L_Wrist", "R_Shoulder", "R_Elbow", "R_Wrist",
    ),
    root_index=0,
    flip_pairs=((4, 1), (5, 2), (6, 3), (11, 14), (12, 15), (13, 16)),
    skeleton=((0, 7), (7, 8), (8, 9), (9, 10), (8, 11), (11, 12), (12, 13), (8, 14), (14, 15), (15, 16), (0, 1),
              (1, 2), (2, 3), (0, 4), (4, 5), (5, 6)),
)

# The 14 joints scored in Human3.6M / 3DPW evaluation (all but Pelvis, Torso and Nose).
H36M_EVAL_INDICES: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8, 10, 11, 12, 13, 14, 15, 16)

MANO_21 = JointSet(
    name="mano21",
    names=(
        "Wrist", "Thumb_1", "Thumb_2", "Thumb_3", "Thumb_4", "Index_1", "Index_2", "Index_3", "Index_4",
        "Middle_1", "Middle_2", "Middle_3", "Middle_4", "Ring_1", "Ring_2", "Ring_3", "Ring_4",
        "Pinky_1", "Pinky_2", "Pinky_3", "Pinky_4",
    ),
    root_index=0,
    flip_pairs=(),
    skeleton=((0, 1), (0, 5), (0, 9), (0, 13), (0, 17), (1, 2), (2, 3), (3, 4), (5, 6), (6, 7), (7, 8), (9, 10),
              (10, 11), (11, 12), (13, 14), (14, 15), (15, 16), (17, 18), (18, 19), (19, 20)),
)

JOINT_SETS: dict[str, JointSet] = {js.name: js for js in (SMPL_29, H36M_17, MANO_21)}
