"""What nets, engine and data ask a body model instead of its name: the value of each ``BodyModel`` method for
Anny (body, hand), SMPL and MANO (synthetic files in the official layout; no licensed data needed)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from i2lmesh.bodymodels import BodyModelFileError, body_model_class, create_body_model
from i2lmesh.bodymodels.anny import ANNY_TO_CAMERA, AnnyBody, AnnyHand
from i2lmesh.bodymodels.base import BodyModel
from i2lmesh.bodymodels.joint_sets import SMPL_29
from i2lmesh.bodymodels.smpl import MANO, SMPL, SMPL_POSE_FLIP_PAIRS
from i2lmesh.config import ModelConfig
from i2lmesh.data.targets import BodyModelBank
from i2lmesh.nets.factory import body_model_for


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    pytest.importorskip("smplx")
    from i2lmesh.bodymodels.model_files import write_synthetic_smpl_file

    folder = tmp_path_factory.mktemp("models")
    write_synthetic_smpl_file(folder / "SMPL_NEUTRAL.pkl", "smpl", seed=1)
    write_synthetic_smpl_file(folder / "SMPL_FEMALE.pkl", "smpl", seed=2)
    write_synthetic_smpl_file(folder / "MANO_RIGHT.pkl", "mano", seed=3)
    return folder


@pytest.fixture(scope="module")
def smpl(model_dir):
    return SMPL(model_dir).eval()


@pytest.fixture(scope="module")
def mano(model_dir):
    return MANO(model_dir).eval()


def test_registry_resolves_model_and_config_names():
    assert body_model_class("anny") is AnnyBody
    assert body_model_class("anny", "hand") is AnnyHand
    assert body_model_class("anny-hand") is AnnyHand
    assert body_model_class("smpl") is SMPL and body_model_class("mano", "hand") is MANO
    with pytest.raises(ValueError, match="unknown body model 'star'"):
        body_model_class("star")
    with pytest.raises(ValueError, match="unknown body model"):
        create_body_model("star")


def test_needs_user_files_and_pose_flip_pairs_per_class():
    assert BodyModel.needs_user_files is False and BodyModel.pose_flip_pairs == ()
    assert not AnnyBody.needs_user_files and not AnnyHand.needs_user_files
    assert SMPL.needs_user_files and MANO.needs_user_files
    assert AnnyBody.pose_flip_pairs == () and AnnyHand.pose_flip_pairs == () and MANO.pose_flip_pairs == ()
    # SMPL: the left/right pairs of SMPL_29 among its 24 pose joints, e.g. L_Hip 1 <-> R_Hip 2, L_Hand 22 <-> 23.
    assert SMPL.pose_flip_pairs == SMPL_POSE_FLIP_PAIRS
    assert len(SMPL_POSE_FLIP_PAIRS) == 9 and (1, 2) in SMPL_POSE_FLIP_PAIRS and (22, 23) in SMPL_POSE_FLIP_PAIRS
    assert all(SMPL_29.names[a].replace("L_", "R_") == SMPL_29.names[b] for a, b in SMPL_POSE_FLIP_PAIRS)


def test_anny_body(anny_body):
    rest = anny_body.rest_rotations()
    assert rest.shape == (104, 3, 3) and rest.dtype == torch.float32
    assert torch.equal(rest[0], ANNY_TO_CAMERA) and torch.equal(rest[1:], torch.eye(3).expand(103, 3, 3))
    raw = torch.tensor([[0.0, 2.0, -2.0, 0.0, 0.0, 0.0]])
    assert torch.allclose(anny_body.shape_from_network(raw), torch.sigmoid(raw))
    assert anny_body.shape_from_network(torch.zeros(1, 6)).eq(0.5).all()
    rotations = torch.eye(3).expand(2, 104, 3, 3)
    assert anny_body.pose_from_rotations(rotations) is rotations
    assert anny_body.rest_root_joint(torch.full((1, 6), 0.5)) is None


def test_anny_hand(anny_hand):
    assert torch.equal(anny_hand.rest_rotations(), torch.eye(3).expand(21, 3, 3))
    assert anny_hand.shape_from_network(torch.zeros(1, 6)).eq(0.5).all()
    assert anny_hand.rest_root_joint() is None


def test_anny_from_options_and_config(anny_body, anny_hand):
    body = body_model_for(ModelConfig(body_model="anny", kind="body", mesh="reduced"))
    assert isinstance(body, AnnyBody) and body.mesh == "reduced" and body.num_vertices == anny_body.num_vertices
    hand = body_model_for(ModelConfig(body_model="anny", kind="hand"))
    assert isinstance(hand, AnnyHand) and hand.side == "right" and hand.num_vertices == anny_hand.num_vertices


def test_smpl(smpl, model_dir):
    rest = smpl.rest_rotations()
    assert rest.shape == (24, 3, 3)
    assert torch.equal(rest[0], torch.diag(torch.tensor([1.0, -1.0, -1.0])))
    assert torch.equal(rest[1:], torch.eye(3).expand(23, 3, 3))
    raw = torch.randn(2, 10)
    assert smpl.shape_from_network(raw) is raw
    rotations = torch.eye(3).expand(2, 24, 3, 3)
    assert smpl.pose_from_rotations(rotations) is rotations
    # J0: row 0 of the model's own regressor on the shaped rest mesh (zero axis-angles), the forward's pivot.
    betas = torch.tensor([[1.0, -0.5, 0.3, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], [0.0] * 10])
    j0 = smpl.rest_root_joint(betas)
    with torch.no_grad():
        verts = smpl(pose=torch.zeros(2, 72), shape=betas).vertices_m
    assert j0.shape == (2, 3)
    assert torch.allclose(j0, torch.einsum("v,bvc->bc", smpl.kinematic_regressor[0], verts), atol=1e-7)
    assert torch.allclose(smpl.rest_root_joint(), j0[1:], atol=1e-7)  # None = zero betas
    assert not torch.allclose(j0[0], j0[1], atol=1e-4)  # the pivot moves with the shape
    # The global rotation turns the body about J0: a rotated rest mesh keeps J0 fixed.
    pose = torch.zeros(1, 72)
    pose[0, :3] = torch.tensor([0.3, -1.2, 0.5])
    with torch.no_grad():
        turned = smpl(pose=pose, shape=betas[:1]).vertices_m
    assert torch.allclose(smpl.kinematic_regressor[0] @ turned[0], j0[0], atol=1e-6)
    female = SMPL.from_options(model_dir, gender="female", mesh="full")
    assert isinstance(female, SMPL) and female.gender == "female"
    assert not torch.equal(female.v_template, smpl.v_template)
    neutral = body_model_for(ModelConfig(body_model="smpl", kind="body"), model_dir)
    assert isinstance(neutral, SMPL) and neutral.gender == "neutral" and torch.equal(neutral.v_template,
                                                                                     smpl.v_template)


def test_mano(mano, model_dir):
    assert torch.equal(mano.rest_rotations(), torch.eye(3).expand(16, 3, 3))
    raw = torch.randn(1, 10)
    assert mano.shape_from_network(raw) is raw
    # Rotations -> (B, 48) axis-angle, so forward adds the mean hand: the same mesh as the axis-angle pose.
    axis_angle = 0.4 * torch.randn(2, 16, 3)
    from i2lmesh.geometry.rotations import axis_angle_to_matrix

    pose = mano.pose_from_rotations(axis_angle_to_matrix(axis_angle))
    assert pose.shape == (2, 48) and torch.allclose(pose, axis_angle.reshape(2, 48), atol=1e-5)
    assert mano.hands_mean.abs().sum() > 0
    with torch.no_grad():
        assert torch.allclose(mano(pose=pose).vertices_m, mano(pose=axis_angle.reshape(2, 48)).vertices_m, atol=1e-6)
    # J0 of the rest pose without the mean hand (identity rotations), which a zero axis-angle pose would add.
    j0 = mano.rest_root_joint()
    with torch.no_grad():
        flat = mano(pose=torch.eye(3).expand(1, 16, 3, 3)).vertices_m[0]
    assert j0.shape == (1, 3) and torch.allclose(j0[0], mano.kinematic_regressor[0] @ flat, atol=1e-7)
    hand = MANO.from_options(model_dir, gender="female")
    assert isinstance(hand, MANO) and hand.side == "right" and not hand.flat_hand_mean
    assert isinstance(body_model_for(ModelConfig(body_model="mano", kind="hand"), model_dir), MANO)


def test_missing_user_files_raise(tmp_path):
    pytest.importorskip("smplx")
    with pytest.raises(BodyModelFileError, match="SMPL neutral model file not found"):
        SMPL.from_options(tmp_path)
    with pytest.raises(BodyModelFileError, match="MANO right model file not found"):
        MANO.from_options(tmp_path)


def test_bank_builds_only_user_file_models(model_dir, smpl):
    bank = BodyModelBank(model_path=model_dir)
    assert bank.get("anny") is None and bank.get("anny-hand") is None and bank.get("star") is None
    assert isinstance(bank.get("smpl", "female"), SMPL) and bank.get("smpl", "female").gender == "female"
    assert isinstance(bank.get("mano"), MANO)
    shape = np.array([0.5, -1.0, 0.0, 0.2])
    j0 = bank.rest_root_joint("smpl", "neutral", shape)
    expected = smpl.rest_root_joint(torch.as_tensor(shape, dtype=torch.float32)[None])[0].double().numpy()
    assert j0.shape == (3,) and j0.dtype == np.float64 and np.array_equal(j0, expected)
    assert BodyModelBank().get("smpl") is None  # no folder: nothing to build
