"""One training step's forward and loss terms, for every network variant (docs/reproduction.md).

The training loop, evaluation and the tests call :func:`forward_network` and :func:`network_losses`, so the cascade
variants are handled in one place: MeshNet fed the ground-truth pose gets the targets' joints as its pose input, and
a network without PoseNet has no PoseNet pose term.
"""
from __future__ import annotations

import torch

from ..losses import LossTargets, i2l_losses
from ..nets.i2l import I2LMeshNet, I2LOutput


def forward_network(model: torch.nn.Module, net: I2LMeshNet, images: torch.Tensor,
                    targets: LossTargets | None = None) -> I2LOutput:
    """``model(images)`` (``model`` may be the DDP wrapper of ``net``), with the ground-truth pose for the
    "gt-pose" cascade (paper Table 3, last row), which needs ``targets`` at training and test time."""
    if net.config.cascade == "gt-pose":
        if targets is None:
            raise ValueError("cascade 'gt-pose' feeds MeshNet the ground-truth joints: targets are required")
        return model(images, pose_input_hm=targets.joints_hm.to(images.device))
    return model(images)


def network_losses(net: I2LMeshNet, out: I2LOutput, targets: LossTargets,
                   fit_orig_split: bool = False) -> dict[str, torch.Tensor]:
    """The named loss terms of ``out`` (their sum is the training loss), in float32 (outside autocast)."""
    return i2l_losses(out.joints_hm.float() if net.has_posenet else None, out.vertices_hm.float(),
                      out.mesh_joints_hm.float(), net.faces, targets, fit_orig_split)


__all__ = ["forward_network", "network_losses"]
