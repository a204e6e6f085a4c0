"""The parameter stage's MANO convention (issue 12): targets are the rotations of the dataset's pose parameters,
which MANO's forward offsets by its mean hand (the reference's ``flat_hand_mean=False``); ``pose_from_rotations``
turns them back into those parameters, so the stage's mesh of the target rotations is the ground-truth mesh."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from i2lmesh.bodymodels.model_files import write_synthetic_smpl_file
from i2lmesh.bodymodels.smpl import MANO, SMPL
from i2lmesh.engine.param_stage import ParamTargets, param_losses, param_mesh


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    write_synthetic_smpl_file(folder / "SMPL_NEUTRAL.pkl", "smpl", seed=1)
    write_synthetic_smpl_file(folder / "MANO_RIGHT.pkl", "mano", seed=3)
    return {"smpl": SMPL(folder).eval(), "mano": MANO(folder).eval()}


def _meta(model, pose: np.ndarray, betas: np.ndarray) -> dict:
    """A batch's meta with the parameters and, as ground truth, the model's root-relative mesh of them."""
    with torch.no_grad():
        out = model(pose=torch.as_tensor(pose, dtype=torch.float32), shape=torch.as_tensor(betas, dtype=torch.float32))
    root = out.joints_m[:, model.root_index:model.root_index + 1]
    joints, vertices = (out.joints_m - root).numpy(), (out.vertices_m - root).numpy()
    b, j = joints.shape[:2]
    return {"joints_cam_rel_m": joints, "joints_cam_valid": np.ones((b, j)), "fit_joints_cam_rel_m": joints,
            "fit_joints_cam_valid": np.ones((b, j)), "vertices_cam_rel_m": vertices, "has_mesh": np.ones(b),
            "body_params": [{"pose": p, "shape": s} for p, s in zip(pose, betas)], "body_model": [model.name] * b}


@pytest.mark.parametrize("name", ["mano", "smpl"])
def test_the_meshes_of_the_target_rotations_are_the_ground_truth(models, name):
    model = models[name]
    rng = np.random.default_rng(0)
    pose = rng.normal(0, 0.4, (3, model.num_pose_rotations * 3))  # finger / joint angles well below pi
    betas = rng.normal(0, 1, (3, model.num_shape_params))
    meta = _meta(model, pose, betas)
    targets = ParamTargets.from_meta(meta, model)
    assert targets.has_params.tolist() == [1.0, 1.0, 1.0]
    with torch.no_grad():
        mesh = param_mesh(model, targets.rotations, targets.shape)
        losses = param_losses(model, targets.rotations, targets.shape, targets)
    # float32 noise of the axis-angle -> matrix -> axis-angle round trip and the skinning: ~1e-7 m on ~0.1-1 m
    np.testing.assert_allclose(mesh.vertices_m.numpy(), meta["vertices_cam_rel_m"], rtol=0, atol=2e-6)
    assert max(v.item() for v in losses.values()) < 2e-6
    if name == "mano":  # the mean hand matters: skinning the rotations as they are (no mean) is another hand
        assert model.hands_mean.abs().max() > 0.05
        with torch.no_grad():
            flat = model(pose=targets.rotations, shape=targets.shape)
        flat_rel = flat.vertices_m - flat.joints_m[:, model.root_index:model.root_index + 1]
        assert (flat_rel - mesh.vertices_m).norm(dim=-1).max() > 1e-3
