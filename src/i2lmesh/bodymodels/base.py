"""One interface for every body model: Anny body/hand (default), SMPL and MANO (user files).

The network only needs the mesh topology and a joint regression matrix J (J x V); data generation and
the parameter regressor need a differentiable forward from model parameters. Everything is batch-first,
float32, and lives on whatever device the module is moved to.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

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
    metadata below, and implement :meth:`forward` and :meth:`sample_params`.
    """

    name: str = "body-model"
    kind: Kind = "body"

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
