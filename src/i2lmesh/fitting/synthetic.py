"""Fitting targets with exact ground truth, and the errors of a fit against them (benchmarks and tests).

:func:`synthetic_targets` poses bodies with the model's own sampler (``sample_params``: Anny's anatomical pose
ranges and phenotypes) and places them with the synthetic generator's camera model (``data/synth/scene.py``:
orientation, field of view, distance, truncated at a border for 15% of bodies / 10% of hands), exactly as
``i2lmesh synth`` does, without rendering images. :func:`fit_errors` scores a :class:`~.fit.FitResult`.
"""
from __future__ import annotations

import numpy as np
import torch

from ..bodymodels.base import BodyModel
from ..bodymodels.joint_sets import H36M_EVAL_INDICES, JointSet
from ..geometry.camera import project
from ..metrics import pa_errors, point_errors_mm
from .keypoints import keypoint_regressor


@torch.no_grad()
def synthetic_targets(body_model: BodyModel, num: int, seed: int, keypoint_set: str | JointSet = "coco17",
                      image_size: int = 512) -> dict[str, torch.Tensor]:
    """``num`` random people in front of random cameras, as the synthetic dataset generator places them.

    Returns a dict of tensors on the body model's device: pose (N, J, 3), shape (N, S), trans (N, 3) (the model's
    forward arguments, camera frame), K (N, 3, 3), vertices_m (N, V, 3), joints_m (N, J, 3), keypoints_3d (N, K, 3)
    metres, keypoints_2d (N, K, 2) pixels (exact projections; points outside the image are kept).
    """
    from ..data.synth.scene import SCENE_SETTINGS, place_in_view, sample_intrinsics, sample_root_rotation

    settings = SCENE_SETTINGS[body_model.kind]
    params = body_model.sample_params(num, torch.Generator().manual_seed(seed))
    rng = np.random.default_rng(seed)
    num_rot = body_model.num_pose_rotations
    pose = params["pose"].reshape(num, num_rot, 3).clone()
    Ks = []
    for i in range(num):
        Ks.append(sample_intrinsics(rng, image_size, settings))
        pose[i, 0] = torch.as_tensor(sample_root_rotation(rng, body_model.kind, settings), dtype=torch.float32)
    out = body_model(pose=pose.reshape(num, -1) if pose.shape[-1] == 3 else pose, shape=params["shape"])
    root = out.vertices_m
    trans = torch.stack([torch.as_tensor(place_in_view(root[i].cpu().double().numpy(), Ks[i], image_size, rng,
                                                       settings).trans_m, dtype=torch.float32)
                         for i in range(num)]).to(root.device)
    K = torch.as_tensor(np.stack(Ks), dtype=torch.float32, device=root.device)
    out = body_model(pose=pose.reshape(num, -1), shape=params["shape"], trans=trans)
    _, regressor = keypoint_regressor(body_model, keypoint_set)
    kp3d = regressor.to(out.vertices_m) @ out.vertices_m
    return {"pose": pose, "shape": params["shape"], "trans": trans, "K": K, "vertices_m": out.vertices_m,
            "joints_m": out.joints_m, "keypoints_3d": kp3d, "keypoints_2d": project(kp3d, K)}


def fit_errors(result, target: dict[str, torch.Tensor], body_model: BodyModel) -> dict[str, np.ndarray]:
    """Per-person errors (mm) of a fit against :func:`synthetic_targets` ground truth.

    pa_mpjpe: Procrustes-aligned joint error (bodies: the 14 Human3.6M evaluation joints regressed from both meshes,
    as the paper's tables; hands: the 21 MANO joints); pa_mpvpe: Procrustes-aligned vertex error (PA on the
    vertices); mpjpe: joint error after aligning the roots (bodies: H36M pelvis; hands: wrist); mpjpe_abs: camera-
    frame joint error without any alignment; keypoints_mpjpe: error of the fitted keypoints in the camera frame.
    """
    pred_v, gt_v = result.vertices_m, target["vertices_m"]
    if body_model.kind == "body" and "h36m17" in body_model.extra_joint_sets:
        idx = list(H36M_EVAL_INDICES)
        pred_j = body_model.regress_joints(pred_v, "h36m17")
        gt_j = body_model.regress_joints(gt_v, "h36m17")
        root = 0
    else:
        idx = list(range(body_model.num_joints))
        pred_j, gt_j = body_model.regress_joints(pred_v), body_model.regress_joints(gt_v)
        root = body_model.root_index
    pred_rel = pred_j - pred_j[:, root:root + 1]
    gt_rel = gt_j - gt_j[:, root:root + 1]
    return {
        "pa_mpjpe": pa_errors(pred_j[:, idx], gt_j[:, idx]).mean(1),
        "pa_mpvpe": pa_errors(pred_v, gt_v).mean(1),
        "mpjpe": point_errors_mm(pred_rel[:, idx], gt_rel[:, idx]).mean(1),
        "mpjpe_abs": point_errors_mm(pred_j[:, idx], gt_j[:, idx]).mean(1),
        "keypoints_mpjpe": point_errors_mm(result.keypoints_m, target["keypoints_3d"]).mean(1),
    }


def mean_pose_result(body_model: BodyModel, target: dict[str, torch.Tensor]):
    """A baseline "fit": the true global orientation and translation with the rest pose and the mean shape."""
    from types import SimpleNamespace

    from .priors import ShapePrior

    num = target["pose"].shape[0]
    pose = torch.zeros_like(target["pose"])
    pose[:, 0] = target["pose"][:, 0]
    shape = ShapePrior(body_model).mean.expand(num, -1)
    out = body_model(pose=pose.reshape(num, -1), shape=shape, trans=target["trans"])
    _, regressor = keypoint_regressor(body_model, "coco17" if body_model.kind == "body" else "mano21")
    return SimpleNamespace(vertices_m=out.vertices_m, keypoints_m=regressor.to(out.vertices_m) @ out.vertices_m)


__all__ = ["synthetic_targets", "fit_errors", "mean_pose_result"]
