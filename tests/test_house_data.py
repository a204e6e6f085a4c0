"""SMPL's 24-joint set and its pose flip pairs are one definition (issue 12)."""
from __future__ import annotations

from i2lmesh.bodymodels.smpl import SMPL
from i2lmesh.data.record import SMPL_24


def test_smpl24_flip_pairs_are_the_body_models_pose_flip_pairs_and_pair_left_with_right():
    assert SMPL_24.flip_pairs is SMPL.pose_flip_pairs
    names = SMPL_24.names
    paired = {i for pair in SMPL_24.flip_pairs for i in pair}
    assert paired == {i for i, n in enumerate(names) if n.startswith(("L_", "R_"))} and len(paired) == 18
    for left, right in SMPL_24.flip_pairs:
        assert names[left].startswith("L_") and names[right] == "R_" + names[left][2:]
