"""Keypoints of a body model as a function of its pose and shape: what the fitter evaluates at every step.

Two implementations behind one interface (:class:`KeypointModel`):

- :class:`GenericKeypointModel` (any :class:`~i2lmesh.bodymodels.base.BodyModel`: SMPL, MANO, Anny): the full
  forward, then ``regressor @ vertices``.
- :class:`AnnyKeypointModel` (models exposing an Anny module as ``.anny``): the same keypoints without the mesh.
  With linear blend skinning and a linear regressor, keypoint k is
  ``sum_j A_j m_kj + c_kj b_j`` with ``[A_j | b_j]`` bone j's skinning transform, ``c_kj = sum_v R_kv w_vj`` and
  ``m_kj = sum_v R_kv w_vj v_v`` (v_v the rest vertices, w the skinning weights, R the keypoint regressor): an exact
  rearrangement, with only the bones that move some keypoint (and their ancestors) in the kinematic chain. Anny's
  rest skeleton and ``m`` depend on the 6 phenotypes through blendshapes and a Procrustes step that cost more
  than the rest of a step together; :meth:`AnnyKeypointModel.prepare` linearises them around the current shape
  (a one-sided finite difference, one batched call), and the fitter re-linearises between its stages and computes
  its outputs with the exact forward. At the linearisation point the keypoints equal the full forward's (checked
  when the model is built: ``max_error_m``).
"""
from __future__ import annotations

import logging
from typing import Any

import torch

from ..bodymodels.base import BodyModel

log = logging.getLogger(__name__)


def _rotmats(pose: torch.Tensor, num: int) -> torch.Tensor:
    """(B, J, 3) / (B, 3J) axis-angle or (B, J, 3, 3) matrices -> (B, J, 3, 3)."""
    import roma

    if pose.ndim == 4:
        return pose
    return roma.rotvec_to_rotmat(pose.reshape(pose.shape[0], num, 3))


class KeypointModel:
    """Keypoints (B, K, 3), metres, in the body model's frame with its root rotation and without ``trans``.

    ``prepare(shape)`` (detached (B, S)) returns a context valid near that shape; ``keypoints(pose, shape, ctx)``
    takes ``pose`` (B, J, 3) axis-angle or (B, J, 3, 3) matrices in the body model's forward convention.
    ``bones_used``: pose rotations that move some keypoint (indices into ``pose[:, j]``); ``relevance`` (J,): for
    each pose rotation, the largest share of a keypoint's skinning weight carried by the bone and its descendants
    (1 where unknown): bones below ~0.1 (fingers and toes for body keypoints) are left out of a fit.
    """

    body_model: BodyModel
    regressor: torch.Tensor
    bones_used: list[int]
    relevance: torch.Tensor

    def prepare(self, shape: torch.Tensor) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def keypoints(self, pose: torch.Tensor, shape: torch.Tensor, ctx: Any) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def exact(self, pose: torch.Tensor, shape: torch.Tensor, trans: torch.Tensor | None = None):
        """The full forward: (BodyModelOutput, keypoints (B, K, 3)), with ``trans`` added."""
        if pose.ndim == 3:
            pose = pose.reshape(pose.shape[0], -1)
        out = self.body_model(pose=pose, shape=shape, trans=trans)
        return out, torch.matmul(self.regressor.to(out.vertices_m.dtype), out.vertices_m)


class GenericKeypointModel(KeypointModel):
    """Any body model: the full forward at every step (SMPL/MANO's is a few milliseconds)."""

    def __init__(self, body_model: BodyModel, regressor: torch.Tensor) -> None:
        self.body_model = body_model
        self.regressor = regressor
        self.bones_used = list(range(body_model.num_pose_rotations))
        self.relevance = torch.ones(body_model.num_pose_rotations)

    def prepare(self, shape: torch.Tensor) -> None:
        return None

    def keypoints(self, pose: torch.Tensor, shape: torch.Tensor, ctx: Any) -> torch.Tensor:
        return self.exact(pose, shape)[1]


class AnnyKeypointModel(KeypointModel):
    """Anny body or hand keypoints through the skinning moments (module docstring), with a linearised shape."""

    FD_STEP = 0.02  # phenotype step of the finite-difference Jacobian

    def __init__(self, body_model: BodyModel, regressor: torch.Tensor) -> None:
        from anny.skinning import skinning
        from anny.utils import kinematics

        self.body_model = body_model
        self.regressor = regressor
        anny_model = body_model.anny
        self.anny = anny_model
        device = regressor.device
        support = (regressor.abs().sum(0) > 0).nonzero().flatten()
        vertex_ids = getattr(body_model, "vertex_ids", None)
        self.full_ids = (vertex_ids[support] if vertex_ids is not None else support).to(device)
        weights = skinning.dense_bone_weights(anny_model.vertex_bone_weights[self.full_ids],
                                              anny_model.vertex_bone_indices[self.full_ids],
                                              anny_model.bone_count).to(device=device, dtype=torch.float32)
        reg = regressor[:, support].float()
        influence = reg @ weights  # (K, J): c_kj
        parents = [int(p) for p in anny_model.bone_parents]
        used = set((influence.abs().sum(0) > 0).nonzero().flatten().tolist())
        bones = set()
        for b in used:
            while b >= 0 and b not in bones:
                bones.add(b)
                b = parents[b]
        self.bones = sorted(bones)  # root (0) first
        index = {b: i for i, b in enumerate(self.bones)}
        sub_parents = [-1] + [index[parents[b]] for b in self.bones[1:]]
        levels, chain = kinematics.get_kinematic_chain(sub_parents)
        self.chain = (levels, chain.to(device))
        self.forward_kinematic = kinematics.forward_kinematic
        self.bones_used = self.bones
        self.influence = influence[:, self.bones].contiguous()  # (K, Jp)
        carried = self.influence.clone()

        def depth(i: int) -> int:
            return 0 if i == 0 else 1 + depth(sub_parents[i])

        for i in sorted(range(1, len(self.bones)), key=depth, reverse=True):  # leaves first
            carried[:, sub_parents[i]] += carried[:, i]
        self.relevance = torch.zeros(body_model.num_pose_rotations)
        self.relevance[self.bones] = carried.max(0).values.cpu()
        self.reg_weights = (reg[:, :, None] * weights[None, :, self.bones]).contiguous()  # (K, S, Jp)
        self.bone_index = torch.tensor(self.bones, device=device)
        ref = anny_model.reference_bone_orientations
        self.reference = None if ref is None else ref[self.bone_index].float()
        self.parameterization = anny_model.pose_parameterization
        self.corner = torch.zeros(4, 4, device=device)
        self.corner[3, 3] = 1.0
        self.mirror = torch.tensor([-1.0, 1.0, 1.0], device=device) if getattr(body_model, "mirror_x", False) else None
        self.max_error_m = self._self_check()

    def _rest(self, shape: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Exact rest skeleton (B, Jp, 4, 4) and moments m (B, K, Jp, 3) for phenotypes (B, 6)."""
        a = self.anny
        _, phen, local, facial = a.get_tensor_inputs(None, shape.float(), None, None)
        coeffs = a._get_phenotype_blendshape_coefficients(phen, local, facial)
        rest = a.get_rest_model(coeffs)
        verts = rest["rest_vertices"][:, self.full_ids].float()
        moments = torch.einsum("ksj,bsd->bkjd", self.reg_weights, verts)
        return rest["rest_bone_poses"][:, self.bone_index].float(), moments

    @torch.no_grad()
    def prepare(self, shape: torch.Tensor) -> dict[str, torch.Tensor]:
        """Linearise the rest skeleton and moments around ``shape`` (B, 6): value and Jacobian per person."""
        shape = shape.detach().float()
        batch, dims = shape.shape
        # one-sided steps pointing into [0, 1] so that the difference never leaves the phenotype range
        step = torch.where(shape < 0.5, self.FD_STEP, -self.FD_STEP)
        probes = shape[:, None, :].repeat(1, dims + 1, 1)
        probes[:, 1:] += torch.diag_embed(step)
        poses, moments = self._rest(probes.reshape(-1, dims))
        poses = poses.reshape(batch, dims + 1, *poses.shape[1:])
        moments = moments.reshape(batch, dims + 1, *moments.shape[1:])
        inv = (1.0 / step)
        d_poses = (poses[:, 1:] - poses[:, :1]) * inv.reshape(batch, dims, 1, 1, 1)
        d_moments = (moments[:, 1:] - moments[:, :1]) * inv.reshape(batch, dims, 1, 1, 1)
        return {"shape0": shape, "poses0": poses[:, 0], "d_poses": d_poses, "moments0": moments[:, 0],
                "d_moments": d_moments}

    def keypoints(self, pose: torch.Tensor, shape: torch.Tensor, ctx: dict[str, torch.Tensor]) -> torch.Tensor:
        rot = _rotmats(pose, self.body_model.num_pose_rotations)[:, self.bone_index].float()
        return self.keypoints_of_bones(rot, shape, ctx)

    def keypoints_of_bones(self, rot: torch.Tensor, shape: torch.Tensor, ctx: dict[str, torch.Tensor]) -> torch.Tensor:
        """:meth:`keypoints` from the rotations (B, Jp, 3, 3) of ``self.bones`` only (the others do not matter)."""
        delta_s = (shape.float() - ctx["shape0"])
        rest_poses = ctx["poses0"] + torch.einsum("bs,bsjxy->bjxy", delta_s, ctx["d_poses"])
        moments = ctx["moments0"] + torch.einsum("bs,bskjd->bkjd", delta_s, ctx["d_moments"])
        delta = torch.nn.functional.pad(rot, (0, 1, 0, 1)) + self.corner  # homogeneous [R 0; 0 1]
        transforms, _ = self.forward_kinematic(self.chain, rest_poses, delta, self.parameterization, self.reference)
        kp = torch.einsum("bjxy,bkjy->bkx", transforms[..., :3, :3], moments) + torch.einsum(
            "kj,bjx->bkx", self.influence, transforms[..., :3, 3])
        return kp * self.mirror if self.mirror is not None else kp

    @torch.no_grad()
    def _self_check(self) -> float:
        params = self.body_model.sample_params(2, torch.Generator().manual_seed(0))
        pose, shape = params["pose"], params["shape"]
        fast = self.keypoints(pose, shape, self.prepare(shape))
        exact = self.exact(pose, shape)[1]
        return float((fast - exact).norm(dim=-1).max())


MAX_FAST_ERROR_M = 1e-4


def _model_cache(body_model: BodyModel) -> dict:
    """A dict kept on the body model instance for what fitting derives from it (it dies with the model)."""
    return body_model.__dict__.setdefault("_i2lmesh_fitting_cache", {})


def keypoint_model(body_model: BodyModel, regressor: torch.Tensor, key: str) -> KeypointModel:
    """The fastest exact :class:`KeypointModel` for ``body_model`` and a (K, V) ``regressor``, cached per model,
    keypoint set ``key``, device and regressor. Anny models get :class:`AnnyKeypointModel` unless its self-check
    (keypoints at the linearisation point vs. the full forward) is off by more than 0.1 mm, which logs a warning
    and falls back to :class:`GenericKeypointModel`."""
    device = body_model.joint_regressor.device
    per_model = _model_cache(body_model)
    cache_key = ("keypoint_model", key, str(device), regressor.data_ptr())
    if cache_key in per_model:
        return per_model[cache_key]
    model: KeypointModel = GenericKeypointModel(body_model, regressor)
    if getattr(body_model, "anny", None) is not None:
        try:
            fast = AnnyKeypointModel(body_model, regressor)
            if fast.max_error_m <= MAX_FAST_ERROR_M:
                model = fast
            else:
                log.warning("fitting: Anny keypoint shortcut off by %.2g m; using the full forward", fast.max_error_m)
        except (AttributeError, TypeError, RuntimeError, ValueError) as exc:  # another anny version
            log.warning("fitting: Anny keypoint shortcut unavailable (%s); using the full forward", exc)
    per_model[cache_key] = model
    return model


__all__ = ["KeypointModel", "GenericKeypointModel", "AnnyKeypointModel", "keypoint_model"]
