"""Pose2Feat: the 3D Gaussian heatmap of PoseNet's joints joined with the early image feature (paper eq. 4).

The reference materialises the Gaussian volume (B, J*D, H, W) and runs a 3x3 convolution over
64 + J*D channels (~9 GFLOP per image for the body). The Gaussian is separable,
G[j,z,y,x] = g_z[j,z] g_y[j,y] g_x[j,x], so the convolution of the heatmap channels is

    S[o,y,x] = sum_j sum_{ky,kx} A[o,j,ky,kx] g_y[j, y+ky-1] g_x[j, x+kx-1],
    A[o,j,ky,kx] = sum_z W[o, j*D+z, ky, kx] g_z[j,z],

the same numbers (zero padding included) for a few hundred times less work and memory.
``gaussian_heatmap_3d`` and the "materialised" mode are kept as the test oracle and for benchmarks.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


def gaussian_1d(coords: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """exp(-(i - c)^2 / (2 sigma^2)) for bins i = 0..size-1; coords (B,J) -> (B,J,size). Unnormalised, peak 1."""
    bins = torch.arange(size, device=coords.device, dtype=coords.dtype)
    return torch.exp(-(bins - coords.unsqueeze(-1)).square() / (2.0 * sigma * sigma))


def gaussian_heatmap_3d(joints_hm: torch.Tensor, depth: int, height: int, width: int,
                        sigma: float) -> torch.Tensor:
    """The reference's materialised volume (paper eq. 3): joints (B,J,3) in bins -> (B,J,D,H,W)."""
    gx = gaussian_1d(joints_hm[..., 0], width, sigma)
    gy = gaussian_1d(joints_hm[..., 1], height, sigma)
    gz = gaussian_1d(joints_hm[..., 2], depth, sigma)
    return gz[..., :, None, None] * gy[..., None, :, None] * gx[..., None, None, :]


class Pose2Feat(nn.Module):
    """3x3 conv -> BN -> ReLU over [image feature (C channels), Gaussian heatmap (J*D channels, j-major)].

    ``conv`` holds the full weight (out, C + J*D, 3, 3), exactly the reference's parameters, whichever mode
    computes the output. The joints enter without gradient (the paper: no backpropagation before P^HG).
    """

    def __init__(self, feat_channels: int, num_joints: int, depth_bins: int, sigma: float,
                 out_channels: int = 64, mode: str = "separable") -> None:
        super().__init__()
        self.feat_channels, self.num_joints, self.depth_bins, self.sigma = feat_channels, num_joints, depth_bins, sigma
        self.mode = mode
        self.conv = nn.Conv2d(feat_channels + num_joints * depth_bins, out_channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, image_feat: torch.Tensor, joints_hm: torch.Tensor) -> torch.Tensor:
        joints_hm = joints_hm.detach()
        if self.mode == "materialised":
            out = self._conv_materialised(image_feat, joints_hm)
        else:
            out = self._conv_separable(image_feat, joints_hm)
        return torch.relu(self.bn(out))

    def _conv_materialised(self, image_feat: torch.Tensor, joints_hm: torch.Tensor) -> torch.Tensor:
        b, _, h, w = image_feat.shape
        with torch.no_grad():
            volume = gaussian_heatmap_3d(joints_hm.to(image_feat.dtype), self.depth_bins, h, w, self.sigma)
        volume = volume.reshape(b, self.num_joints * self.depth_bins, h, w)
        return self.conv(torch.cat([image_feat, volume], dim=1))

    def _conv_separable(self, image_feat: torch.Tensor, joints_hm: torch.Tensor) -> torch.Tensor:
        _, c, h, w = image_feat.shape
        weight = self.conv.weight
        out = F.conv2d(image_feat, weight[:, :c], self.conv.bias, padding=1)
        with torch.no_grad():
            joints_hm = joints_hm.to(image_feat.dtype)
            gx = F.pad(gaussian_1d(joints_hm[..., 0], w, self.sigma), (1, 1))  # (B,J,W+2), zero padding
            gy = F.pad(gaussian_1d(joints_hm[..., 1], h, self.sigma), (1, 1))
            gz = gaussian_1d(joints_hm[..., 2], self.depth_bins, self.sigma)  # (B,J,D)
            # Shifted copies for the three kernel taps: (B,J,3,W) and (B,J,3,H).
            taps_x = torch.stack([gx[..., k:k + w] for k in range(3)], dim=2)
            taps_y = torch.stack([gy[..., k:k + h] for k in range(3)], dim=2)
        w_heat = weight[:, c:].reshape(weight.shape[0], self.num_joints, self.depth_bins, 3, 3)
        a = torch.einsum("ojdkl,bjd->bojkl", w_heat, gz)  # contract depth first: (B,O,J,3,3)
        t = torch.einsum("bojkl,bjky->bojly", a, taps_y)  # (B,O,J,3,H)
        return out + torch.einsum("bojly,bjlx->boyx", t, taps_x)
