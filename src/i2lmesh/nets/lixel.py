"""Lixel (line + pixel) 1D heatmaps: the head shared by PoseNet and MeshNet, and the soft-argmax.

Paper eqs. (1)-(2) and (5)-(6): x and y heatmaps come from the 8x upsampled backbone feature marginalised
by averaging over the other image axis; the z heatmap comes from the globally pooled backbone feature
through an FC block reshaped to c' x D. Soft-argmax turns each 1D heatmap into a coordinate in bins.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


def soft_argmax_1d(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Expected bin index and spread of softmax(logits) over the last axis.

    logits (..., D) -> (coord (...), spread (...)), both in bins: coord = sum_i p_i * i in [0, D-1]
    (no +0.5 offset, as the reference), spread = sqrt(sum_i p_i (i - coord)^2), the standard deviation
    of the predicted distribution: the per-axis uncertainty the heatmap models.
    """
    prob = torch.softmax(logits, dim=-1)
    bins = torch.arange(logits.shape[-1], device=logits.device, dtype=prob.dtype)
    coord = (prob * bins).sum(-1)
    # Central form rather than E[i^2] - E[i]^2, which cancels badly in fp32 for peaky heatmaps.
    var = (prob * (bins - coord.unsqueeze(-1)).square()).sum(-1)
    return coord, var.clamp_min(1e-12).sqrt()


def pointwise_conv1d(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """A 1x1 Conv1d as a plain matrix product (B,C,L) -> (B,N,L): same numbers, BLAS speed."""
    out = torch.matmul(conv.weight[:, :, 0], x)
    return out if conv.bias is None else out + conv.bias[:, None]


@dataclass
class LixelOutput:
    """coords (B,N,3) and spreads (B,N,3) in bins, axes x, y, z."""

    coords: torch.Tensor
    spreads: torch.Tensor


def upsampling_block(in_channels: int, out_channels: int) -> list[nn.Module]:
    """Deconvolution (4x4, stride 2, no bias) -> 2D BatchNorm -> ReLU: doubles the spatial size."""
    return [nn.ConvTranspose2d(in_channels, out_channels, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True)]


class LixelHead(nn.Module):
    """Predicts lixel heatmaps of N points (joints for PoseNet, vertices for MeshNet) from F (B,C,h,w).

    x, y: three upsampling blocks (C -> c', 8h x 8w), average over y (resp. x), 1x1 Conv1d c' -> N.
    z: average over x, y of F (B,C), FC C -> c'D with 1D BatchNorm and ReLU, reshape (c', D), 1x1 Conv1d c' -> N.
    """

    def __init__(self, in_channels: int, num_points: int, depth_bins: int, channels: int = 256) -> None:
        super().__init__()
        self.depth_bins = depth_bins
        self.channels = channels
        self.deconv = nn.Sequential(*upsampling_block(in_channels, channels), *upsampling_block(channels, channels),
                                    *upsampling_block(channels, channels))
        self.conv_x = nn.Conv1d(channels, num_points, 1)
        self.conv_y = nn.Conv1d(channels, num_points, 1)
        # An FC layer written as a 1x1 Conv1d on a length-1 signal, as in the reference (same parameters).
        self.conv_z_1 = nn.Conv1d(in_channels, channels * depth_bins, 1)
        self.bn_z_1 = nn.BatchNorm1d(channels * depth_bins)
        self.conv_z_2 = nn.Conv1d(channels, num_points, 1)

    def heatmaps(self, feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits of the x, y and z lixel heatmaps: (B,N,8w), (B,N,8h), (B,N,D)."""
        upsampled = self.deconv(feature)
        hm_x = pointwise_conv1d(self.conv_x, upsampled.mean(dim=2))
        hm_y = pointwise_conv1d(self.conv_y, upsampled.mean(dim=3))
        pooled = feature.mean(dim=(2, 3))[:, :, None]
        z_feat = torch.relu(self.bn_z_1(pointwise_conv1d(self.conv_z_1, pooled)))
        # Channel o = c * D + d holds (feature c, depth bin d).
        hm_z = pointwise_conv1d(self.conv_z_2, z_feat.view(-1, self.channels, self.depth_bins))
        return hm_x, hm_y, hm_z

    def forward(self, feature: torch.Tensor) -> LixelOutput:
        hm_x, hm_y, hm_z = self.heatmaps(feature)
        results = [soft_argmax_1d(hm) for hm in (hm_x, hm_y, hm_z)]
        coords = torch.stack([c for c, _ in results], dim=-1)
        spreads = torch.stack([s for _, s in results], dim=-1)
        return LixelOutput(coords, spreads)
