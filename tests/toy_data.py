"""A tiny learnable dataset for engine tests: a bright blob whose position and size fix the targets."""
from __future__ import annotations

import torch
from torch.utils.data import Dataset

from i2lmesh import get_preset
from i2lmesh.nets import I2LMeshNet

J, V, SIZE, HM, D = 5, 40, 64, 16, 16


def toy_config(**kw):
    base = dict(backbone_depth=18, input_size=SIZE, depth_bins=D, deconv_channels=16, num_joints=J, num_vertices=V)
    base.update(kw)
    return get_preset("cpu-small", **base)


def toy_network(seed: int = 0, **kw) -> I2LMeshNet:
    torch.manual_seed(seed)
    reg = torch.zeros(J, V)
    for j in range(J):
        reg[j, j * 8:(j + 1) * 8] = 1 / 8
    faces = torch.tensor([[i, i + 1, i + 2] for i in range(V - 2)])
    return I2LMeshNet(toy_config(**kw), reg, faces)


class ToyDataset(Dataset):
    """Sample i: a blob at a seeded position; joints/vertices on a ring around it, z from the blob's size.
    ``set_epoch`` changes a per-(epoch, index) brightness jitter, standing in for seeded augmentation."""

    def __init__(self, num: int = 16, seed: int = 0, repeat: int = 1) -> None:
        self.repeat = repeat
        g = torch.Generator().manual_seed(seed)
        self.centres = torch.rand(num, 2, generator=g) * (HM - 6) + 3
        self.sizes = torch.rand(num, generator=g) * 3 + 1.5
        self.epoch, self.seed = 0, seed

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.centres) * self.repeat

    def __getitem__(self, i: int):
        i = i % len(self.centres)
        c, s = self.centres[i], self.sizes[i]
        yy, xx = torch.meshgrid(torch.arange(SIZE).float(), torch.arange(SIZE).float(), indexing="ij")
        cx, cy = c * SIZE / HM
        blob = torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * (s * 3) ** 2))
        jitter = 0.9 + 0.2 * torch.rand(1, generator=torch.Generator().manual_seed(
            self.seed * 1_000_003 + self.epoch * 10_007 + i)).item()
        image = torch.stack([blob * jitter, blob * 0.5, 1 - blob])
        angles = torch.linspace(0, 6.283, V + 1)[:-1]
        verts = torch.stack([c[0] + s * torch.cos(angles), c[1] + s * torch.sin(angles),
                             torch.full((V,), 4.0 * s)], dim=-1)
        joints = torch.stack([verts[j * 8:(j + 1) * 8].mean(0) for j in range(J)])
        targets = {"joints_hm": joints, "joints_valid": torch.ones(J), "has_z": torch.tensor(1.0),
                   "vertices_hm": verts, "vertices_valid": torch.ones(V), "fit_joints_hm": joints,
                   "fit_joints_valid": torch.ones(J)}
        return image, {k: v.numpy() for k, v in targets.items()}, {}
