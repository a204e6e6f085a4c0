"""Tiny random networks and test images shared by the inference, output, bad-input and fuzz tests."""
from __future__ import annotations

import numpy as np
import torch

from i2lmesh import get_preset
from i2lmesh.nets import I2LMeshNet


def tiny_net(kind: str = "body", seed: int = 0) -> I2LMeshNet:
    """ResNet-18 at 64 px, 5 joints, 40 vertices, random weights (eval mode): a network in seconds."""
    config = get_preset("cpu-small", backbone_depth=18, input_size=64, depth_bins=16, deconv_channels=16,
                        num_joints=5, num_vertices=40, kind=kind)
    torch.manual_seed(seed)
    reg = torch.rand(5, 40)
    reg = reg / reg.sum(1, keepdim=True)
    net = I2LMeshNet(config, reg, torch.randint(0, 40, (60, 3)))
    with torch.no_grad():  # make the heads' outputs depend visibly on the input
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    net.topology = {"kind": kind, "joint_names": [f"j{i}" for i in range(5)], "root_index": 0}
    return net.eval()


def rendered_image(width: int = 160, height: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A lit sphere over a noise background (RGB uint8), rendered by our rasteriser, and its K."""
    from i2lmesh.render import icosphere, render_mesh

    rng = np.random.default_rng(seed)
    vertices, faces = icosphere(2, 0.3)
    K = np.array([[200.0, 0, width / 2], [0, 200.0, height / 2], [0, 0, 1]])
    out = render_mesh(vertices + [0.1, 0.0, 2.0], faces, K, (height, width), backend="numba")
    background = rng.integers(0, 255, (height, width, 3)).astype(np.float32) / 255
    image = np.where(out.mask[..., None], out.color, background)
    return (image * 255).astype(np.uint8), K
