"""Lixel (line + pixel) 1D heatmaps: the head shared by PoseNet and MeshNet, and the soft-argmax.

Paper eqs. (1)-(2) and (5)-(6): x and y heatmaps come from the 8x upsampled backbone feature marginalised
by averaging over the other image axis; the z heatmap comes from the globally pooled backbone feature
through an FC block reshaped to c' x D. Soft-argmax turns each 1D heatmap into a coordinate in bins.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn


def marginal_moments(prob: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation, in bins, of 1D distributions ``prob`` (..., L) over the bins 0..L-1.

    coord = sum_i p_i * i in [0, L-1] (no +0.5 offset, as the reference); spread = sqrt(sum_i p_i (i - coord)^2),
    the per-axis uncertainty the heatmap models. Both (...). The one place every head takes moments.
    """
    bins = torch.arange(prob.shape[-1], device=prob.device, dtype=prob.dtype)
    coord = (prob * bins).sum(-1)
    # Central form rather than E[i^2] - E[i]^2, which cancels badly in fp32 for peaky heatmaps.
    var = (prob * (bins - coord.unsqueeze(-1)).square()).sum(-1)
    return coord, var.clamp_min(1e-12).sqrt()


def soft_argmax_1d(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Expected bin index and spread of softmax(logits) over the last axis (the soft-argmax): logits (..., D) ->
    (coord (...), spread (...)) in bins, see :func:`marginal_moments`."""
    return marginal_moments(torch.softmax(logits, dim=-1))


def stack_axes(moments: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-axis (coord (...), spread (...)) pairs, e.g. x, y, z -> (coords (..., K), spreads (..., K))."""
    return torch.stack([c for c, _ in moments], dim=-1), torch.stack([s for _, s in moments], dim=-1)


def pointwise_conv1d(conv: nn.Conv1d, x: torch.Tensor) -> torch.Tensor:
    """A 1x1 Conv1d as a plain matrix product (B,C,L) -> (B,N,L): same numbers, BLAS speed."""
    out = torch.matmul(conv.weight[:, :, 0], x)
    return out if conv.bias is None else out + conv.bias[:, None]


@dataclass
class LixelOutput:
    """coords (B,N,3) and spreads (B,N,3) in bins, axes x, y, z."""

    coords: torch.Tensor
    spreads: torch.Tensor


def upsampling_block(in_channels: int, out_channels: int, dims: int = 2) -> list[nn.Module]:
    """Deconvolution (4, stride 2, no bias) -> BatchNorm -> ReLU: doubles the spatial size (2D, or 1D for early
    marginalisation)."""
    deconv, norm = (nn.ConvTranspose2d, nn.BatchNorm2d) if dims == 2 else (nn.ConvTranspose1d, nn.BatchNorm1d)
    return [deconv(in_channels, out_channels, 4, stride=2, padding=1, bias=False), norm(out_channels),
            nn.ReLU(inplace=True)]


def upsampler(in_channels: int, channels: int, num_blocks: int, dims: int = 2) -> nn.Sequential:
    """``num_blocks`` upsampling blocks (the paper's three: 8x); zero blocks keep the backbone feature as is."""
    layers: list[nn.Module] = []
    for k in range(num_blocks):
        layers += upsampling_block(in_channels if k == 0 else channels, channels, dims)
    return nn.Sequential(*layers)


def rescale_bins(coords: torch.Tensor, spreads: torch.Tensor, factor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinates on a grid ``factor`` times coarser -> the fine grid: bin i covers fine bins [i f, (i+1) f), so
    its centre is i f + (f - 1) / 2 (identity for factor 1)."""
    if factor == 1:
        return coords, spreads
    return coords * factor + (factor - 1) / 2, spreads * factor


def z_heatmap(head: nn.Module, feature: torch.Tensor) -> torch.Tensor:
    """The z branch: pool F (B,C,h,w), FC (``head.conv_z_1``, C -> c'D) + ``head.bn_z_1`` + ReLU, reshape (c', D),
    ``head.conv_z_2`` c' -> N: logits (B,N,D). Shared by every head with a lixel z axis."""
    pooled = feature.mean(dim=(2, 3))[:, :, None]
    z_feat = torch.relu(head.bn_z_1(pointwise_conv1d(head.conv_z_1, pooled)))
    # Channel o = c * D + d holds (feature c, depth bin d).
    return pointwise_conv1d(head.conv_z_2, z_feat.view(-1, head.conv_z_2.in_channels, head.depth_bins))


class LixelHead(nn.Module):
    """Predicts lixel heatmaps of N points (joints for PoseNet, vertices for MeshNet) from F (B,C,h,w).

    x, y: three upsampling blocks (C -> c', 8h x 8w), average over y (resp. x), 1x1 Conv1d c' -> N.
    z: average over x, y of F (B,C), FC C -> c'D with 1D BatchNorm and ReLU, reshape (c', D), 1x1 Conv1d c' -> N.

    Ablations (paper Tables 2, 8, 9; MeshNet only): ``num_upsample`` < 3 gives coarser x/y heatmaps (coordinates
    are still returned on the 8h x 8w grid); ``marginalisation`` "max" or "weighted" (a learned (8h,1) / (1,8w)
    convolution without padding) instead of the average; ``early`` marginalises F itself and upsamples in 1D.
    """

    def __init__(self, in_channels: int, num_points: int, depth_bins: int, channels: int = 256,
                 num_upsample: int = 3, marginalisation: str = "average", early: bool = False,
                 feature_size: int | None = None, prior: bool = False) -> None:
        super().__init__()
        self.depth_bins = depth_bins
        self.channels = channels
        self.marginalisation = marginalisation
        self.early = early
        self.scale = 2 ** (3 - num_upsample)  # fine (8h) bins per predicted bin
        xy_channels = channels if num_upsample else in_channels
        self.deconv = upsampler(in_channels, channels, num_upsample, dims=1 if early else 2)
        if marginalisation == "weighted":
            if feature_size is None:
                raise ValueError("weighted marginalisation needs the backbone feature size")
            size = feature_size * 2 ** num_upsample
            self.weigh_x = nn.Conv2d(xy_channels, xy_channels, (size, 1))  # sums over y for the x heatmap
            self.weigh_y = nn.Conv2d(xy_channels, xy_channels, (1, size))
        self.conv_x = nn.Conv1d(xy_channels, num_points, 1)
        self.conv_y = nn.Conv1d(xy_channels, num_points, 1)
        # An FC layer written as a 1x1 Conv1d on a length-1 signal, as in the reference (same parameters).
        self.conv_z_1 = nn.Conv1d(in_channels, channels * depth_bins, 1)
        self.bn_z_1 = nn.BatchNorm1d(channels * depth_bins)
        self.conv_z_2 = nn.Conv1d(channels, num_points, 1)
        self.has_prior = prior
        if prior:
            # Fixed prior logits (N, bins) per axis, added to the heatmaps' logits (docs/network.md, "Body prior").
            # Zero (no effect) until set_prior; persistent, so checkpoints carry them.
            if feature_size is None:
                raise ValueError("a lixel head with a prior needs the backbone feature size")
            xy = feature_size * 2 ** num_upsample
            self.register_buffer("prior_x", torch.zeros(num_points, xy))
            self.register_buffer("prior_y", torch.zeros(num_points, xy))
            self.register_buffer("prior_z", torch.zeros(num_points, depth_bins))

    @torch.no_grad()
    def set_prior(self, mean: torch.Tensor, std: torch.Tensor, min_std: float = 1.0) -> None:
        """Fill the prior logits with a Gaussian per point and axis: log N(bin; mean, std) up to a constant.

        mean, std (N,3): x, y on the fine ``8h x 8w`` grid the head returns, z in depth bins (e.g. the training
        targets' mean and standard deviation); std is clamped to >= ``min_std`` fine bins. With the head's own
        logits at zero (the reference's N(0, 0.001) initialisation) every point then starts near its mean
        position instead of the heatmap centre. Not in the paper (a documented deviation, ``head_prior``).
        """
        if not self.has_prior:
            raise ValueError("this lixel head was built without a prior (model config head_prior: false)")
        mean, std = mean.to(self.prior_x), std.to(self.prior_x).clamp_min(min_std)
        for axis, prior in enumerate((self.prior_x, self.prior_y, self.prior_z)):
            factor = self.scale if axis < 2 else 1  # fine bins per predicted bin (coarse x/y heatmaps)
            centre = (mean[:, axis] - (factor - 1) / 2) / factor
            bins = torch.arange(prior.shape[1], dtype=prior.dtype, device=prior.device)
            prior.copy_(-0.5 * ((bins - centre[:, None]) / (std[:, axis, None] / factor)).square())

    def marginals(self, feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The 1D features of the x and y heatmaps: (B,c',W) and (B,c',H)."""
        if self.early:
            # Both marginals go through the same 1D upsampler in one batch (square features), as the 2D
            # upsampler serves both axes.
            fx, fy = self.deconv(torch.cat([feature.mean(dim=2), feature.mean(dim=3)], dim=0)).chunk(2, dim=0)
            return fx, fy
        upsampled = self.deconv(feature)
        if self.marginalisation == "max":
            return upsampled.amax(dim=2), upsampled.amax(dim=3)
        if self.marginalisation == "weighted":
            return self.weigh_x(upsampled)[:, :, 0, :], self.weigh_y(upsampled)[:, :, :, 0]
        return upsampled.mean(dim=2), upsampled.mean(dim=3)

    def heatmaps(self, feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits of the x, y and z lixel heatmaps: (B,N,8w), (B,N,8h), (B,N,D) (x/y coarser when upsampling less)."""
        fx, fy = self.marginals(feature)
        hm_x = pointwise_conv1d(self.conv_x, fx)
        hm_y = pointwise_conv1d(self.conv_y, fy)
        hm_z = self.heatmap_z(feature)
        if self.has_prior:
            return hm_x + self.prior_x, hm_y + self.prior_y, hm_z + self.prior_z
        return hm_x, hm_y, hm_z

    def heatmap_z(self, feature: torch.Tensor) -> torch.Tensor:
        """Logits of the z lixel heatmap (B,N,D) from the globally pooled feature."""
        return z_heatmap(self, feature)

    def forward(self, feature: torch.Tensor) -> LixelOutput:
        coords, spreads = stack_axes([soft_argmax_1d(hm) for hm in self.heatmaps(feature)])
        if self.scale != 1:
            xy, xy_spread = rescale_bins(coords[..., :2], spreads[..., :2], self.scale)
            coords = torch.cat([xy, coords[..., 2:]], dim=-1)
            spreads = torch.cat([xy_spread, spreads[..., 2:]], dim=-1)
        return LixelOutput(coords, spreads)
