"""Anny body and hand models (NAVER, Apache-2.0; ``pip install anny``) behind :class:`BodyModel`.

Model frame (Anny's native frame, kept as is): metres, **Z up**, the body **faces -Y**, its left side is at +X;
with the default root rotation the pelvis (body) or the wrist (hand) sits at the origin. Our camera frame is
x right, y down, z forward: a body standing upright and facing the camera is ``ANNY_TO_CAMERA @ v``
(a +90 degree rotation about X), which :func:`upright_root_rotvec` folds into the root rotation
(``pose[:, 0]``), optionally turned by a yaw about the vertical axis.

Anny does not ship joint regressors, a ~7k vertex topology or a pose prior; ours come from
``fit_regressor.py`` (assets ``assets/anny_body.npz`` and ``assets/anny_hand.npz``) and ``pose_sampler.py``.
See docs/body_models.md for how they were made and how accurate they are.
"""
from __future__ import annotations

import json
import os
from functools import lru_cache
from typing import Literal

import numpy as np
import torch

from .base import BodyModel, BodyModelOutput
from .fit_regressor import ASSETS_DIR, BODY_ASSET, HAND_ASSET, from_sparse, load_anny
from .joint_sets import H36M_17, MANO_21, SMPL_29
from .pose_sampler import BODY_RANGES, HAND_RANGES, PHENOTYPE_LABELS, PoseSampler, sample_phenotypes

# Anny model frame (x: body left, y: back, z: up) -> camera frame (x right, y down, z forward) for a body facing
# the camera: x stays, up becomes -y, the back points away from the camera (+z).
ANNY_TO_CAMERA = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def upright_root_rotvec(yaw_rad: torch.Tensor) -> torch.Tensor:
    """Root rotations (B, 3) axis-angle putting an Anny body upright in the camera frame, turned by ``yaw_rad`` (B,)
    about the vertical axis (0: facing the camera; pi/2: showing its left side). Use as ``pose[:, 0]``."""
    import roma

    yaw_rad = torch.as_tensor(yaw_rad, dtype=torch.float32).reshape(-1)
    yaw = roma.rotvec_to_rotmat(torch.stack([torch.zeros_like(yaw_rad)] * 2 + [yaw_rad], 1))  # about model Z
    return roma.rotmat_to_rotvec(ANNY_TO_CAMERA.to(yaw.device) @ yaw)


@lru_cache(maxsize=None)
def load_asset(name: str) -> dict[str, np.ndarray]:
    """The arrays of a package asset made by ``python -m i2lmesh.bodymodels.fit_regressor``."""
    path = ASSETS_DIR / name
    if not path.exists():
        raise FileNotFoundError(f"Anny asset {path} is missing: reinstall i2lmesh or regenerate it with "
                                f"`python -m i2lmesh.bodymodels.fit_regressor`.")
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _pose_to_delta(pose: torch.Tensor, num_bones: int) -> torch.Tensor:
    """Local-bone rotations, (B, K, 3) / (B, 3K) axis-angle or (B, K, 3, 3) matrices -> (B, K, 4, 4) deltas."""
    import roma

    if pose.ndim == 4:
        assert pose.shape[1:] == (num_bones, 3, 3), f"rotation-matrix pose should be (B, {num_bones}, 3, 3)."
        rot = pose
    else:
        assert pose.shape[1:].numel() == 3 * num_bones, f"axis-angle pose should be (B, {num_bones}, 3)."
        rot = roma.rotvec_to_rotmat(pose.reshape(-1, num_bones, 3))
    delta = torch.zeros(*rot.shape[:2], 4, 4, dtype=rot.dtype, device=rot.device)
    delta[..., :3, :3] = rot
    delta[..., 3, 3] = 1.0
    return delta


class _AnnyModel(BodyModel):
    """Shared forward: Anny (float32, local-bone) -> optional vertex subset -> optional x mirror -> + trans."""

    def __init__(self, anny_model, faces: np.ndarray, regressor: np.ndarray, joint_set, ranges,
                 vertex_ids: np.ndarray | None = None, mirror_x: bool = False) -> None:
        super().__init__(torch.as_tensor(faces, dtype=torch.long), torch.as_tensor(regressor), joint_set)
        self.anny = anny_model
        self.bone_labels: tuple[str, ...] = tuple(anny_model.bone_labels)
        self.num_bones = len(self.bone_labels)
        self.mirror_x = mirror_x
        self.register_buffer("vertex_ids", None if vertex_ids is None else torch.as_tensor(vertex_ids).long(),
                             persistent=False)
        self.pose_sampler = PoseSampler(self.bone_labels, ranges)

    @property
    def num_pose_rotations(self) -> int:
        return self.num_bones

    @property
    def num_shape_params(self) -> int:
        return len(PHENOTYPE_LABELS)

    def shape_from_network(self, raw: torch.Tensor) -> torch.Tensor:
        """Raw network output (B, 6) -> phenotypes (B, 6) in [0, 1], where Anny's are defined: a sigmoid (a raw 0
        is 0.5 each, the average young adult, where a fresh regressor starts)."""
        return torch.sigmoid(raw)

    @property
    def _device(self) -> torch.device:
        return self.joint_regressor.device

    def forward(self, pose: torch.Tensor, shape: torch.Tensor | None = None,
                trans: torch.Tensor | None = None) -> BodyModelOutput:
        """Posed mesh and joints in metres (float32, on the module's device).

        Args:
            pose: (B, K, 3) axis-angle (or (B, 3K), or (B, K, 3, 3) matrices) rotation of each of Anny's K bones
                (``self.bone_labels``; body K=104, hand K=21) relative to its rest orientation, in the bone's own
                rest frame (Anny's "local-bone": Y along the bone = twist, X = main hinge, Z = second hinge).
                ``pose[:, 0]`` is the root's rotation in the model frame: the global orientation, about the
                pelvis (body) or wrist (hand), which stays at the origin.
            shape: (B, 6) phenotypes in [0, 1], ``PHENOTYPE_LABELS`` order (gender, age, muscle, weight, height,
                proportions); None = 0.5 each (an average young adult).
            trans: (B, 3) translation in metres added last; None = 0.
        Returns:
            BodyModelOutput(vertices_m (B, V, 3), joints_m (B, J, 3) = joint_regressor x vertices).
        """
        device = self._device
        delta = _pose_to_delta(pose.to(device=device, dtype=torch.float32), self.num_bones)
        batch = delta.shape[0]
        if shape is None:
            shape = torch.full((batch, len(PHENOTYPE_LABELS)), 0.5, device=device)
        shape = shape.to(device=device, dtype=torch.float32)
        assert shape.shape == (batch, len(PHENOTYPE_LABELS)), f"shape should be (B, 6) phenotypes, got {shape.shape}."
        vertices = self.anny(pose_parameters=delta, phenotype_kwargs=shape)["vertices"].to(torch.float32)
        if self.vertex_ids is not None:
            vertices = vertices[:, self.vertex_ids]
        if self.mirror_x:
            vertices = vertices * vertices.new_tensor([-1.0, 1.0, 1.0])
        if trans is not None:
            vertices = vertices + trans.to(device=device, dtype=torch.float32).reshape(batch, 1, 3)
        return BodyModelOutput(vertices_m=vertices, joints_m=self.regress_joints(vertices))

    def sample_params(self, batch_size: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Plausible random parameters for :meth:`forward` (see ``pose_sampler``): per-bone anatomical ranges for
        the pose with the root at rest (Z up, facing -Y; see :func:`upright_root_rotvec`), mostly-adult shapes,
        zero translation. The same generator state gives the same parameters."""
        pose = self.pose_sampler.sample(batch_size, generator)
        shape = sample_phenotypes(batch_size, generator)
        device = self._device
        return {"pose": pose.to(device), "shape": shape.to(device), "trans": torch.zeros(batch_size, 3, device=device)}


class AnnyBody(_AnnyModel):
    """Anny full body: network joints ``SMPL_29`` plus an ``H36M_17`` regressor (``regress_joints(v, "h36m17")``).

    mesh: "full" is Anny's default topology (13,718 vertices, 27,420 triangles, with eyeballs and mouth
    interior); "reduced" (default) is a 6,890-vertex subset of the skin (13,776 triangles, closed, genus 0, left/right
    symmetric). ``full_to_reduced`` / ``reduced_to_full`` convert vertex arrays between the two;
    ``flip_index`` is the vertex permutation of a left/right mirror (x -> -x) of the chosen mesh.
    cache_dir: Anny's cache (see ``anny_cache``); device: where the module lives.
    """

    name = "anny"
    kind = "body"

    def __init__(self, mesh: Literal["reduced", "full"] = "reduced", cache_dir: str | os.PathLike | None = None,
                 device: torch.device | str | None = None) -> None:
        assert mesh in ("reduced", "full"), f"mesh should be 'reduced' or 'full', got {mesh!r}."
        asset = load_asset(BODY_ASSET)
        anny_model = load_anny("body", cache_dir)
        if mesh == "full":
            faces, vertex_ids = anny_model.faces.numpy(), None
        else:
            faces, vertex_ids = asset["reduced_faces"], asset["reduced_vertex_ids"]
        super().__init__(anny_model, faces, from_sparse(asset, f"{mesh}_smpl29"), SMPL_29, BODY_RANGES,
                         vertex_ids=vertex_ids)
        self.mesh = mesh
        self.add_extra_regressor(H36M_17, torch.from_numpy(from_sparse(asset, f"{mesh}_h36m17")))
        self.register_buffer("reduced_vertex_ids", torch.from_numpy(asset["reduced_vertex_ids"]).long(),
                             persistent=False)
        self.register_buffer("reduced_to_full_ids", torch.from_numpy(asset["reduced_to_full_ids"]).long(),
                             persistent=False)
        self.register_buffer("reduced_to_full_weights", torch.from_numpy(asset["reduced_to_full_weights"]),
                             persistent=False)
        self.register_buffer("flip_index", torch.from_numpy(asset[f"{mesh}_flip_index"]).long(), persistent=False)
        ids = asset["landmark_vertex_ids"] if mesh == "full" else np.searchsorted(
            asset["reduced_vertex_ids"], asset["landmark_vertex_ids"])
        self.landmark_vertices: dict[str, int] = dict(zip(asset["landmark_names"].tolist(), ids.tolist()))
        self.fit_report: dict = json.loads(str(asset["fit_report"]))
        if device is not None:
            self.to(device)

    @classmethod
    def from_options(cls, model_path: str | os.PathLike | None = None, *, gender: str = "neutral",
                     mesh: str = "reduced") -> "AnnyBody":
        """``AnnyBody(mesh)``: built in (``model_path`` is ignored) and gender is a shape phenotype (ignored)."""
        return cls(mesh=mesh)  # type: ignore[arg-type]

    def rest_rotations(self) -> torch.Tensor:
        """(104, 3, 3) identities but the root, ``ANNY_TO_CAMERA``: the rest body (Z up, facing -Y) stands upright
        facing the camera."""
        rotations = super().rest_rotations()
        rotations[0] = ANNY_TO_CAMERA
        return rotations

    def full_to_reduced(self, vertices: torch.Tensor) -> torch.Tensor:
        """(..., 13718, 3) full-mesh vertices -> (..., 6890, 3) reduced-mesh vertices (an exact subset)."""
        return vertices[..., self.reduced_vertex_ids, :]

    def reduced_to_full(self, vertices: torch.Tensor) -> torch.Tensor:
        """(..., 6890, 3) reduced-mesh vertices -> (..., 13718, 3): each full vertex is a barycentric point of the
        reduced triangle closest to it in the rest pose (exact for the kept vertices; the eyeballs and mouth
        interior land on the eyelids and lips)."""
        weights = self.reduced_to_full_weights.to(vertices.dtype)
        return (vertices[..., self.reduced_to_full_ids, :] * weights[..., None]).sum(-2)

    def topology_info(self) -> dict:
        return {**super().topology_info(), "mesh": self.mesh}


class AnnyHand(_AnnyModel):
    """Anny right hand (``rig="anny-hand.R", topology="hand.R"``): 1,609 vertices, 3,196 triangles, 21 bones,
    open at the wrist; ``MANO_21`` joints (wrist, finger joints at bone heads, 5 fingertip vertices).

    side "left" mirrors the right hand through x -> -x (faces re-wound to stay outward): the same parameters give
    the mirror image. Hand frame: the wrist at the origin, fingers along +Y, thumb towards +Z (right hand).
    """

    name = "anny-hand"
    kind = "hand"

    @classmethod
    def from_options(cls, model_path: str | os.PathLike | None = None, *, gender: str = "neutral",
                     mesh: str = "reduced") -> "AnnyHand":
        """``AnnyHand()``, the right hand: built in, one mesh (``model_path``, ``gender``, ``mesh`` are ignored)."""
        return cls()

    def __init__(self, side: Literal["right", "left"] = "right", cache_dir: str | os.PathLike | None = None,
                 device: torch.device | str | None = None) -> None:
        assert side in ("right", "left"), f"side should be 'right' or 'left', got {side!r}."
        asset = load_asset(HAND_ASSET)
        anny_model = load_anny("hand", cache_dir)
        faces = anny_model.faces.numpy()
        if side == "left":
            faces = faces[:, [0, 2, 1]]
        super().__init__(anny_model, faces, from_sparse(asset, "mano21"), MANO_21, HAND_RANGES,
                         mirror_x=side == "left")
        self.side = side
        self.landmark_vertices = dict(zip(asset["landmark_names"].tolist(), asset["landmark_vertex_ids"].tolist()))
        self.fit_report: dict = json.loads(str(asset["fit_report"]))
        if device is not None:
            self.to(device)

    def topology_info(self) -> dict:
        return {**super().topology_info(), "side": self.side}


__all__ = ["AnnyBody", "AnnyHand", "ANNY_TO_CAMERA", "upright_root_rotvec", "PHENOTYPE_LABELS", "load_asset"]
