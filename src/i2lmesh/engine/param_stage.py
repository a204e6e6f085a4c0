"""The parameter stage ("+ SMPL regress", paper Sec. 5.3 and Tables 5-6; official_spec.md 1.6, 3 "Param stage").

After the lixel stage the lixel network is frozen and only ``ParamRegressor`` learns: from the detached mesh joints
(heatmap bins) to one rotation per bone and the shape values, which the body model turns into a mesh. Everything
here is in camera metres and root-relative (each skeleton minus its own root joint), the frame of the dataset's
camera-space ground truth (``meta`` of ``i2lmesh.data``), including the augmentation's in-plane rotation.

Loss terms (all L1 with weight 1; each the plain mean over all its elements, masked zeros included, as the
reference reduces; official_spec.md 3):

* ``param_pose``: rotation matrices vs the ground-truth parameters' (samples with parameters of this body model);
* ``param_shape``: shape values (Anny phenotypes in [0, 1], SMPL/MANO betas);
* ``param_joint``: J x mesh vs the dataset's 3D joints; ``param_joint_fit``: vs the fit's joints;
* ``param_vertex`` (ours, not the reference's): the mesh vs the fit's mesh where the sample has one. It supervises
  samples without parameters (Anny bodies seen mirrored: Anny's local bones have no mirror rule for parameters).

Training: :class:`ParamStageTrainer`, the ``Trainer`` of ``stage: param`` (``train`` picks it from the config).
"""
from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, fields
from typing import Any, Iterator

import numpy as np
import torch

from ..bodymodels.base import BodyModel, BodyModelOutput
from ..geometry.rotations import axis_angle_to_matrix
from ..losses import LossTargets, coord_l1
from ..nets.factory import body_model_for
from ..nets.heads import matrix_to_rot6d
from ..nets.i2l import I2LMeshNet, ParamRegressor
from .checkpoint import load_imagenet_weights, load_initial_weights
from .objective import forward_network
from .trainer import Trainer

logger = logging.getLogger(__name__)

_META_KEYS = ("joints_cam_rel_m", "joints_cam_valid", "fit_joints_cam_rel_m", "fit_joints_cam_valid",
              "vertices_cam_rel_m", "has_mesh", "body_params")


def model_shape(body_model: BodyModel, raw_shape: torch.Tensor) -> torch.Tensor:
    """The regressor's shape output (B,S) -> the body model's shape parameters (B,S): ``shape_from_network``.

    Anny's phenotypes are only defined in [0, 1]: a sigmoid keeps them there (a raw 0 is 0.5, the average adult,
    where a fresh regressor starts). SMPL/MANO betas are used as they are, as the reference (and its checkpoints).
    """
    return body_model.shape_from_network(raw_shape)


def param_mesh(body_model: BodyModel, rotations: torch.Tensor, shape: torch.Tensor) -> BodyModelOutput:
    """Differentiable root-relative mesh (B,V,3) and joints (B,J,3) = J x mesh, camera metres.

    rotations (B,R,3,3): the rotations of the body model's axis-angle pose parameters (root first, in the camera
    frame); shape (B,S): body-model shape parameters (see :func:`model_shape`). The body model's
    ``pose_from_rotations`` makes its pose argument: MANO adds its mean hand to the finger axis-angles (the
    reference's ``flat_hand_mean=False``), so its rotations go through axis-angle; Anny and SMPL take the matrices.
    The targets (``ParamTargets``) are the rotations of the dataset's pose parameters, which MANO's forward offsets
    the same way, so the mesh of a target's rotations is its ground-truth mesh (tests/test_house_param.py; for
    axis-angles up to pi, which the matrix -> axis-angle step returns).
    """
    assert rotations.ndim == 4 and rotations.shape[-2:] == (3, 3), "rotations should be a BxRx3x3 tensor."
    out = body_model(pose=body_model.pose_from_rotations(rotations), shape=shape)
    root = out.joints_m[:, body_model.root_index:body_model.root_index + 1]
    return BodyModelOutput(vertices_m=out.vertices_m - root, joints_m=out.joints_m - root)


def param_prediction(body_model: BodyModel, rotations: torch.Tensor, raw_shape: torch.Tensor) -> BodyModelOutput:
    """The parameter regressor's output (``I2LOutput.param_rotations``, ``param_shape``) as a root-relative mesh."""
    return param_mesh(body_model, rotations.float(), model_shape(body_model, raw_shape.float()))


@dataclass
class ParamTargets:
    """Camera-space ground truth of a batch in metres, root-relative (B batch, J joints, V vertices, R rotations).

    joints_cam_rel_m (B,J,3), joints_cam_valid (B,J): the dataset's 3D joints; fit_joints_cam_rel_m,
    fit_joints_cam_valid: the fit's joints; vertices_cam_rel_m (B,V,3), has_mesh (B,): the fit's mesh;
    rotations (B,R,3,3), shape (B,S), has_params (B,): the ground-truth parameters (identity / 0 where absent).
    """

    joints_cam_rel_m: torch.Tensor
    joints_cam_valid: torch.Tensor
    fit_joints_cam_rel_m: torch.Tensor
    fit_joints_cam_valid: torch.Tensor
    vertices_cam_rel_m: torch.Tensor
    has_mesh: torch.Tensor
    rotations: torch.Tensor
    shape: torch.Tensor
    has_params: torch.Tensor

    @classmethod
    def from_meta(cls, meta: dict[str, Any], body_model: BodyModel,
                  device: torch.device | str | None = None) -> "ParamTargets":
        """From a batch's ``meta`` (``i2lmesh.data`` collation). Parameters count only when they belong to
        ``body_model`` (same name, R rotations, at most S shape values; fewer betas are zero-padded)."""
        missing = [k for k in _META_KEYS if k not in meta]
        if missing:
            raise KeyError(f"the parameter stage needs the camera-space ground truth of i2lmesh.data datasets; "
                           f"the batch's meta lacks {', '.join(missing)}")
        num_rot, num_shape = body_model.num_pose_rotations, body_model.num_shape_params
        params, names = meta["body_params"], meta.get("body_model") or [None] * len(meta["body_params"])
        rotations = np.tile(np.eye(3), (len(params), num_rot, 1, 1))
        shape = np.zeros((len(params), num_shape))
        has_params = np.zeros(len(params))
        for b, (p, name) in enumerate(zip(params, names)):
            if p is None or (name is not None and name != body_model.name):
                continue
            pose = np.asarray(p["pose"], np.float64).reshape(-1, 3)
            betas = np.zeros(0) if p.get("shape") is None else np.asarray(p["shape"], np.float64).reshape(-1)
            if len(pose) != num_rot or len(betas) > num_shape:
                continue
            rotations[b] = axis_angle_to_matrix(pose)
            shape[b, :len(betas)] = betas
            has_params[b] = 1.0
        f32 = dict(dtype=torch.float32, device=device)
        return cls(joints_cam_rel_m=torch.as_tensor(meta["joints_cam_rel_m"], **f32),
                   joints_cam_valid=torch.as_tensor(meta["joints_cam_valid"], **f32),
                   fit_joints_cam_rel_m=torch.as_tensor(meta["fit_joints_cam_rel_m"], **f32),
                   fit_joints_cam_valid=torch.as_tensor(meta["fit_joints_cam_valid"], **f32),
                   vertices_cam_rel_m=torch.as_tensor(meta["vertices_cam_rel_m"], **f32),
                   has_mesh=torch.as_tensor(meta["has_mesh"], **f32),
                   rotations=torch.as_tensor(rotations, **f32), shape=torch.as_tensor(shape, **f32),
                   has_params=torch.as_tensor(has_params, **f32))

    def to(self, device: torch.device | str) -> "ParamTargets":
        return ParamTargets(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})


def param_losses(body_model: BodyModel, rotations: torch.Tensor, shape: torch.Tensor,
                 targets: ParamTargets) -> dict[str, torch.Tensor]:
    """The named param-stage loss terms (scalars; their sum is the training loss). See the module docstring.

    rotations (B,R,3,3) and shape (B,S) are body-model parameters (:func:`model_shape` of the regressor's shape).
    The pose term is L1 on rotation matrices rather than the reference's L1 on axis-angle: a rotation has one
    matrix but many axis-angle vectors (angle t about u equals 2pi - t about -u), so the reference penalises
    correct rotations whose ground truth is written with an angle above pi, and axis-angle jumps there; matrix
    entries are continuous in the rotation and the 6D output maps to them without a conversion.
    """
    t = targets
    mesh = param_mesh(body_model, rotations, shape)
    has_params = t.has_params.to(rotations.dtype)
    num_vertices = mesh.vertices_m.shape[1]
    return {
        "param_pose": ((rotations - t.rotations).abs() * has_params[:, None, None, None]).mean(),
        "param_shape": ((shape - t.shape).abs() * has_params[:, None]).mean(),
        "param_joint": coord_l1(mesh.joints_m, t.joints_cam_rel_m, t.joints_cam_valid).mean(),
        "param_joint_fit": coord_l1(mesh.joints_m, t.fit_joints_cam_rel_m, t.fit_joints_cam_valid).mean(),
        "param_vertex": coord_l1(mesh.vertices_m, t.vertices_cam_rel_m,
                                 t.has_mesh[:, None].expand(-1, num_vertices)).mean(),
    }


def init_param_regressor(regressor: ParamRegressor, body_model: BodyModel) -> None:
    """Start a fresh regressor at the body model's rest pose, a body upright and facing the camera
    (``body_model.rest_rotations()``, as the "param" target's head): ``fc_pose``'s bias = their 6D codes.

    The reference zeroes the bias; its 6D output then starts near zero, where Gram-Schmidt turns small random
    vectors into arbitrary rotations, one per sample and bone. With this bias the first meshes are near the
    rest pose (and, after :func:`model_shape`, the average shape).
    """
    with torch.no_grad():
        regressor.fc_pose.bias.copy_(matrix_to_rot6d(body_model.rest_rotations()).reshape(-1))


@contextlib.contextmanager
def without_param_regressor(net: I2LMeshNet) -> Iterator[ParamRegressor | None]:
    """``net``'s forward without its parameter regressor (yielded), restored on exit: the param stage runs the
    frozen lixel part alone under ``no_grad`` and then the regressor itself, with gradients, once per step."""
    regressor = net.param_regressor
    net.param_regressor = None
    try:
        yield regressor
    finally:
        net.param_regressor = regressor


def check_body_model(net: I2LMeshNet, body_model: BodyModel) -> None:
    """ValueError unless ``body_model`` has the network's vertices, rotations and shape values (what the regressor
    drives)."""
    cfg = net.config
    want = (cfg.num_vertices, cfg.param_num_rotations, cfg.param_shape_dim)
    have = (body_model.num_vertices, body_model.num_pose_rotations, body_model.num_shape_params)
    if want != have:
        raise ValueError(f"stage 'param': body model {body_model.name!r} has {have[0]} vertices, {have[1]} rotations "
                         f"and {have[2]} shape values, the network expects {want[0]}, {want[1]} and {want[2]}")


class ParamStageTrainer(Trainer):
    """``stage: param``: the lixel network frozen, only its parameter regressor trained with :func:`param_losses`
    (the optimizer, DDP and ``freeze_bn`` see the regressor alone). Epochs continue the lixel stage's count
    (``TrainConfig.stage_epochs``). ``body_model`` turns the regressor's output into meshes (default: the one the
    network's config names; SMPL/MANO need their files, so pass them); validation scores its mesh too.
    """

    def prepare(self) -> None:
        """ValueError for a network without a parameter regressor or a body model that does not fit it; the body
        model goes to the training device."""
        if self.net.param_regressor is None:
            raise ValueError("stage 'param' trains the parameter regressor, but the network has none "
                             "(build it from TrainConfig.model_config(), which sets model.param_regressor)")
        body_model = self.body_model if self.body_model is not None else body_model_for(self.net.config)
        check_body_model(self.net, body_model)
        self.body_model = body_model.to(self.env.device)

    def initialise_weights(self) -> None:
        """``init_from`` (the lixel stage's network or checkpoint); a regressor it lacks starts at the rest pose
        (:func:`init_param_regressor`). Without ``init_from``: ImageNet backbones if asked, and a warning."""
        cfg = self.cfg
        if cfg.init_from:
            if not load_initial_weights(self.net, cfg.init_from):
                init_param_regressor(self.net.param_regressor, self.body_model)
        elif cfg.imagenet_weights != "none":
            load_imagenet_weights(self.net, cfg.imagenet_weights)
        if not cfg.init_from:
            logger.warning("stage 'param' without init_from: training the regressor on the network's current "
                           "weights")

    def trained_module(self) -> torch.nn.Module:
        return self.net.param_regressor

    def train_mode(self) -> None:
        """Only the regressor in train mode; the frozen lixel part in eval mode, so its BatchNorms use (and keep)
        the lixel stage's running statistics. The reference calls ``model.train()`` on everything, so there the
        frozen BNs normalise with batch statistics under no_grad and their running statistics drift during the
        param stage. ``freeze_bn``: the regressor's BNs in eval mode too."""
        self.net.eval()
        self.net.param_regressor.train()
        self._freeze_bn(self.net.param_regressor)

    def compute_losses(self, images: torch.Tensor, targets: LossTargets, meta: dict[str, Any]
                       ) -> dict[str, torch.Tensor]:
        """The frozen lixel part without gradients (under autocast with AMP), then the regressor (``self.model``,
        DDP-wrapped under torchrun) on its mesh joints (B,J,3 heatmap bins), scored by :func:`param_losses`
        against the camera-space ground truth in ``meta``."""
        body_model, device = self.body_model, self.env.device
        with torch.no_grad(), torch.autocast(device.type, enabled=self.use_amp), without_param_regressor(self.net):
            out = forward_network(self.net, self.net, images, targets)
        rotations, raw_shape = self.model(out.mesh_joints_hm.float())
        return param_losses(body_model, rotations, model_shape(body_model, raw_shape),
                            ParamTargets.from_meta(meta, body_model, device))

    def evaluate_kwargs(self) -> dict[str, Any]:
        return {"body_model": self.body_model}


__all__ = ["ParamTargets", "model_shape", "param_mesh", "param_prediction", "param_losses", "init_param_regressor",
           "without_param_regressor", "check_body_model", "ParamStageTrainer"]
