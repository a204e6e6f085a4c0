"""One interface for every body model: Anny body/hand (default), SMPL and MANO (user files).

The network only needs the mesh topology and a joint regression matrix J (J x V); data generation and
the parameter regressor need a differentiable forward from model parameters. Everything is batch-first,
float32, and lives on whatever device the module is moved to.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import nn

from .joint_sets import JointSet

Kind = Literal["body", "hand"]


@dataclass
class BodyModelOutput:
    """Result of a body-model forward pass.

    vertices_m: (B, V, 3) camera/model-frame vertices in metres.
    joints_m: (B, J, 3) joints regressed from the vertices with the model's joint regressor (J x mesh).
    """

    vertices_m: torch.Tensor
    joints_m: torch.Tensor


class BodyModel(nn.Module):
    """Base class: topology, joint regressor and joint metadata, plus a parametric forward.

    Subclasses set the buffers ``faces`` (F, 3) int64 and ``joint_regressor`` (J, V) float32 and the
    metadata below, and implement :meth:`forward`, :meth:`sample_params` and :meth:`from_options`. What the
    network, training and data code need to know about a model's parameters is asked of the model, never of its
    name: :attr:`needs_user_files`, :meth:`rest_rotations`, :meth:`shape_from_network`,
    :meth:`pose_from_rotations`, :attr:`pose_flip_pairs` and :meth:`rest_root_joint`; each has a documented
    default here that subclasses override where they differ.
    """

    name: str = "body-model"
    kind: Kind = "body"
    # True for models built from files the user supplies (licensed SMPL/MANO); False for built-in ones (Anny).
    needs_user_files: ClassVar[bool] = False
    # Left/right index pairs of the pose rotations (rows of ``forward``'s pose) that a mirror x -> -x swaps, for
    # mirroring parameters in parameter space (``data.augment.flip_body_params``). Default: none (hands; models
    # whose parameters are mirrored through their mesh instead, such as Anny's).
    pose_flip_pairs: tuple[tuple[int, int], ...] = ()

    faces: torch.Tensor
    joint_regressor: torch.Tensor

    def __init__(self, faces: torch.Tensor, joint_regressor: torch.Tensor, joint_set: JointSet) -> None:
        super().__init__()
        self.joint_set = joint_set
        self.extra_joint_sets: dict[str, JointSet] = {}
        faces = torch.as_tensor(faces, dtype=torch.long)
        joint_regressor = torch.as_tensor(joint_regressor, dtype=torch.float32)
        assert faces.ndim == 2 and faces.shape[1] == 3, "faces should be an (F, 3) array of vertex indices."
        assert joint_regressor.ndim == 2, "joint_regressor should be a (J, V) matrix."
        assert int(faces.max()) < joint_regressor.shape[1], "faces index past the regressor's vertex count."
        self.register_buffer("faces", faces, persistent=False)
        self.register_buffer("joint_regressor", joint_regressor, persistent=False)
        assert joint_regressor.shape[0] == len(joint_set), "one regressor row per joint of the joint set."

    # Joint metadata of the network's joint set (the rows of ``joint_regressor``).
    @property
    def joint_names(self) -> tuple[str, ...]:
        return self.joint_set.names

    @property
    def root_index(self) -> int:
        return self.joint_set.root_index

    @property
    def flip_pairs(self) -> tuple[tuple[int, int], ...]:
        return self.joint_set.flip_pairs

    @property
    def skeleton(self) -> tuple[tuple[int, int], ...]:
        return self.joint_set.skeleton

    def add_extra_regressor(self, joint_set: JointSet, regressor: torch.Tensor) -> None:
        """Register another joint set's regressor (e.g. the 17 Human3.6M joints used for evaluation)."""
        regressor = torch.as_tensor(regressor, dtype=torch.float32)
        assert regressor.shape == (len(joint_set), self.num_vertices), "extra regressor must be (J_extra, V)."
        self.extra_joint_sets[joint_set.name] = joint_set
        self.register_buffer(f"regressor_{joint_set.name}", regressor, persistent=False)

    @property
    def num_vertices(self) -> int:
        return int(self.joint_regressor.shape[1])

    @property
    def num_joints(self) -> int:
        return int(self.joint_regressor.shape[0])

    @property
    def num_pose_rotations(self) -> int:
        """Rotations in a pose (the parameter regressor predicts one per bone/joint): Anny body 104, hand 21,
        SMPL 24, MANO 16."""
        raise NotImplementedError  # pragma: no cover - abstract

    @property
    def num_shape_params(self) -> int:
        """Values in a shape vector: Anny's 6 phenotypes, SMPL/MANO's 10 betas."""
        raise NotImplementedError  # pragma: no cover - abstract

    def regress_joints(self, vertices: torch.Tensor, joint_set: str | None = None) -> torch.Tensor:
        """Joints = J x mesh for vertices (..., V, 3) in any units; returns (..., J, 3) in the same units.

        ``joint_set`` names an extra regressor (e.g. "h36m17"); None uses the network's joint set.
        """
        matrix = self.joint_regressor if joint_set in (None, self.joint_set.name) else getattr(
            self, f"regressor_{joint_set}")
        return torch.matmul(matrix.to(vertices.dtype), vertices)

    def joint_index(self, name: str) -> int:
        return self.joint_names.index(name)

    def forward(self, **params: torch.Tensor) -> BodyModelOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def sample_params(self, batch_size: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Random plausible parameters (pose within joint ranges, shape within its prior) for ``forward``."""
        raise NotImplementedError  # pragma: no cover - abstract

    @classmethod
    def from_options(cls, model_path: str | os.PathLike | None = None, *, gender: str = "neutral",
                     mesh: str = "reduced") -> "BodyModel":
        """Build the model from the options a config or a dataset gives: ``model_path`` (the user's model file or
        folder; ignored by built-in models), ``gender`` ("neutral"|"male"|"female"; models without genders ignore
        it) and ``mesh`` ("reduced"|"full"; Anny body only). Each subclass picks the options it uses."""
        raise NotImplementedError  # pragma: no cover - abstract

    def rest_rotations(self) -> torch.Tensor:
        """Per-rotation matrices (R, 3, 3), R = :attr:`num_pose_rotations`, float32 on CPU, of the model standing
        upright and facing the camera (camera frame: x right, y down, z forward), the rest pose otherwise: where a
        parameter-regression head starts. Default: all identities (a model frame that already is the camera frame,
        e.g. hands, which start at their rest pose); bodies override the root rotation ``[0]``."""
        return torch.eye(3).repeat(self.num_pose_rotations, 1, 1)

    def shape_from_network(self, raw: torch.Tensor) -> torch.Tensor:
        """A network's unconstrained shape output (B, S) -> this model's shape parameters (B, S) for ``forward``.
        Default: used as they are (SMPL/MANO betas, as the reference and its checkpoints)."""
        return raw

    def pose_from_rotations(self, rotations: torch.Tensor) -> torch.Tensor:
        """Rotations (B, R, 3, 3) of the pose parameters (root first) -> the ``pose`` argument of ``forward``.
        Default: the matrices themselves (models whose forward takes rotation matrices as they are)."""
        return rotations

    def rest_root_joint(self, shape: torch.Tensor | None = None) -> torch.Tensor | None:
        """The root joint J0 (B, 3), metres, of the shaped rest pose: the point the root rotation turns the body
        about, so that the posed root sits at J0 + trans. shape: (B, <=S) or None (the mean shape, B = 1).
        Default: None, for models whose root stays at the origin whatever the shape (Anny's pelvis or wrist),
        which mirroring treats as J0 = 0."""
        return None

    def topology_info(self) -> dict:
        """What a checkpoint or a dataset needs to know about the mesh and joints (no tensors of weights)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "num_vertices": self.num_vertices,
            "num_joints": self.num_joints,
            "joint_names": list(self.joint_names),
            "root_index": self.root_index,
            "joint_set": self.joint_set.name,
            "flip_pairs": [list(p) for p in self.flip_pairs],
            "skeleton": [list(e) for e in self.skeleton],
        }


class BodyModelFileError(FileNotFoundError):
    """A body-model file the user must supply is missing or unreadable; the message says which and where."""
