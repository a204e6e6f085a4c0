"""MeshNet output parts for the paper's ablations (Tables 1, 2 and 10): only the part after the backbone changes.

Every head maps the backbone feature F (B,C,h,w) to a :class:`LixelOutput`: coordinates of N points in the
lixel network's bins (x, y on the 8h x 8w grid, z on the D depth bins) and the spread (std) of the predicted
distribution per axis; NaN where the representation models no uncertainty (regressed values).

* ``xyz-fc``: global average pool, two FC layers to 3N coordinates (no uncertainty, no spatial relationship).
* ``lixel-fc``: global average pool, the z branch's FC block for all three axes (uncertainty, no spatial
  relationship); needs the x/y and z heatmaps to have the same number of bins.
* ``voxel``: a D x D x D heatmap per point from the upsampled feature (1x1 conv to N·D channels) — O(N D^3).
* ``pixel-lixel``: a 2D heatmap per point for x, y (1x1 conv to N channels) and the lixel z branch — O(N D^2).
* ``2.5d`` (Iqbal et al., ECCV 2018): a 2D heatmap and a same-size depth map per point; z is the depth map
  averaged under the heatmap's softmax (no uncertainty on z) — O(N D^2).
* ``param``: two FC layers to body-model parameters (a 6D rotation per bone, shape) and a weak-perspective
  camera; the body model makes the mesh (see :class:`ParamHead`).

The heatmap heads build on :class:`LixelHead`'s upsampler and z branch so that the network is otherwise the same.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from ..geometry.rotations import matrix_to_rot6d, rot6d_to_matrix
from .lixel import LixelHead, LixelOutput, marginal_moments, rescale_bins, soft_argmax_1d, stack_axes, upsampler, \
    z_heatmap


def _nan_like(coords: torch.Tensor) -> torch.Tensor:
    return torch.full_like(coords, float("nan"))


def soft_argmax_2d(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """logits (B,N,H,W) -> (coords (B,N,2) x, y; spreads (B,N,2); probabilities (B,N,H,W))."""
    b, n, h, w = logits.shape
    prob = torch.softmax(logits.reshape(b, n, h * w), dim=-1).reshape(b, n, h, w)
    # x: the distribution summed over y; y: summed over x
    coords, spreads = stack_axes([marginal_moments(prob.sum(dim=2)), marginal_moments(prob.sum(dim=3))])
    return coords, spreads, prob


class XYZRegressionHead(nn.Module):
    """Pool -> Linear(C, hidden) -> ReLU -> Linear(hidden, 3N): coordinates as fractions of each axis' range,
    centred so a zero output is the middle of the heatmap volume."""

    def __init__(self, in_channels: int, num_points: int, hidden: int, size_xy: int, depth_bins: int) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(in_channels, hidden), nn.ReLU(inplace=True),
                                nn.Linear(hidden, 3 * num_points))
        self.register_buffer("extent", torch.tensor([size_xy - 1.0, size_xy - 1.0, depth_bins - 1.0]),
                             persistent=False)

    def forward(self, feature: torch.Tensor) -> LixelOutput:
        out = self.fc(feature.mean(dim=(2, 3))).view(feature.shape[0], -1, 3)
        coords = (out + 0.5) * self.extent
        return LixelOutput(coords, _nan_like(coords))


class FCLixelHead(nn.Module):
    """Lixel heatmaps without the spatial relationship: pool -> FC C -> c'L with BN1d-ReLU, reshape (c', L) ->
    1x1 Conv1d c' -> N per axis (the lixel z branch used for x and y too)."""

    def __init__(self, in_channels: int, num_points: int, bins: int, channels: int) -> None:
        super().__init__()
        self.channels, self.bins = channels, bins
        self.fc = nn.Conv1d(in_channels, channels * bins, 1)
        self.bn = nn.BatchNorm1d(channels * bins)
        self.conv_x = nn.Conv1d(channels, num_points, 1)
        self.conv_y = nn.Conv1d(channels, num_points, 1)
        self.conv_z = nn.Conv1d(channels, num_points, 1)

    def forward(self, feature: torch.Tensor) -> LixelOutput:
        feat = torch.relu(self.bn(self.fc(feature.mean(dim=(2, 3))[:, :, None])))
        feat = feat.view(-1, self.channels, self.bins)
        convs = (self.conv_x, self.conv_y, self.conv_z)
        return LixelOutput(*stack_axes([soft_argmax_1d(conv(feat)) for conv in convs]))


class VoxelHead(nn.Module):
    """Upsampled feature (c', X, X) -> 1x1 conv to N·D channels -> a (D, X, X) softmax per point -> 3D soft-argmax.

    The heatmap holds N·D·X² values per image: the O(V D^3) memory of the paper's Table 2.
    """

    def __init__(self, in_channels: int, num_points: int, depth_bins: int, channels: int, num_upsample: int) -> None:
        super().__init__()
        self.num_points, self.depth_bins = num_points, depth_bins
        self.upsample = upsampler(in_channels, channels, num_upsample)
        self.conv = nn.Conv2d(channels if num_upsample else in_channels, num_points * depth_bins, 1)
        self.scale = 2 ** (3 - num_upsample)

    def forward(self, feature: torch.Tensor) -> LixelOutput:
        up = self.upsample(feature)
        b, _, h, w = up.shape
        logits = self.conv(up).view(b, self.num_points, self.depth_bins * h, w)
        # The (z, y) axes are flattened together: x is the last axis, the rest splits into z and y below.
        prob = torch.softmax(logits.reshape(b, self.num_points, -1), dim=-1).view(b, self.num_points,
                                                                                 self.depth_bins, h, w)
        coords_t, spreads_t = stack_axes([marginal_moments(prob.sum(dim=dims)) for dims in ((2, 3), (2, 4), (3, 4))])
        xy, xy_spread = rescale_bins(coords_t[..., :2], spreads_t[..., :2], self.scale)
        return LixelOutput(torch.cat([xy, coords_t[..., 2:]], -1), torch.cat([xy_spread, spreads_t[..., 2:]], -1))


class PixelHead(nn.Module):
    """A 2D heatmap per point for x, y (1x1 conv on the upsampled feature); z from the lixel z branch
    ("pixel-lixel") or from a depth map averaged under the 2D heatmap ("2.5d", Iqbal et al.)."""

    def __init__(self, in_channels: int, num_points: int, depth_bins: int, channels: int, num_upsample: int,
                 depth_map: bool) -> None:
        super().__init__()
        self.num_points, self.depth_bins, self.depth_map = num_points, depth_bins, depth_map
        self.upsample = upsampler(in_channels, channels, num_upsample)
        up_channels = channels if num_upsample else in_channels
        self.conv = nn.Conv2d(up_channels, num_points * (2 if depth_map else 1), 1)
        if not depth_map:  # the lixel z branch, same modules and names as LixelHead's
            lixel = LixelHead(in_channels, num_points, depth_bins, channels, num_upsample=0)
            self.conv_z_1, self.bn_z_1, self.conv_z_2 = lixel.conv_z_1, lixel.bn_z_1, lixel.conv_z_2
        self.scale = 2 ** (3 - num_upsample)

    def forward(self, feature: torch.Tensor) -> LixelOutput:
        out = self.conv(self.upsample(feature))
        heat = out[:, :self.num_points]
        xy, xy_spread, prob = soft_argmax_2d(heat)
        xy, xy_spread = rescale_bins(xy, xy_spread, self.scale)
        if self.depth_map:
            # Depth values as fractions of the depth range around the middle bin (the root's depth).
            depth = out[:, self.num_points:]
            z = ((prob * depth).sum(dim=(2, 3)) + 0.5) * (self.depth_bins - 1)
            z_spread = _nan_like(z)
        else:
            z, z_spread = soft_argmax_1d(z_heatmap(self, feature))
        return LixelOutput(torch.cat([xy, z[..., None]], -1), torch.cat([xy_spread, z_spread[..., None]], -1))


class ParamHead(nn.Module):
    """Body-model parameter regression ("SMPL param." of Table 1), HMR-style: pool -> Linear(C, hidden) -> ReLU ->
    Linear(hidden, 6R + S + 3).

    Outputs per image: R bone rotations (6D, Zhou et al.), S shape values, a weak-perspective camera (log scale,
    tx, ty). The body model poses the mesh in metres; the mesh is made root-relative with the network's joint
    regressor and put in bins: x, y = s (X, Y) + t with s = exp(log scale) x (bins per metre at the 3D box size),
    z as the lixel network's depth bins (root at D/2). The rotation bias starts at the body model's
    ``rest_rotations()`` (e.g. an upright root), the raw shape at 0; the body model's ``shape_from_network`` turns
    the raw shape into its parameters (Anny: a sigmoid, 0.5 each, an average adult; SMPL/MANO betas as they are).
    """

    def __init__(self, in_channels: int, num_rotations: int, shape_dim: int, hidden: int, size_xy: int,
                 depth_bins: int, bbox_3d_size_m: float) -> None:
        super().__init__()
        self.num_rotations, self.shape_dim = num_rotations, shape_dim
        self.size_xy, self.depth_bins, self.bbox_3d_size_m = size_xy, depth_bins, bbox_3d_size_m
        self.fc = nn.Sequential(nn.Linear(in_channels, hidden), nn.ReLU(inplace=True),
                                nn.Linear(hidden, num_rotations * 6 + shape_dim + 3))
        self.register_buffer("rest_6d", matrix_to_rot6d(torch.eye(3)).repeat(num_rotations))

    def set_rest_rotations(self, rotations: torch.Tensor) -> None:
        """The rotations (R,3,3) a zero network output means (the output layer's bias sits on top of them)."""
        self.rest_6d.copy_(matrix_to_rot6d(rotations.to(self.rest_6d)).reshape(-1))

    def parameters_from(self, feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(rotations (B,R,3,3), raw shape (B,S) for ``BodyModel.shape_from_network``, camera (B,3): bins-per-metre
        scale, tx, ty in bins)."""
        out = self.fc(feature.mean(dim=(2, 3)))
        r = self.num_rotations * 6
        rotations = rot6d_to_matrix((out[:, :r] + self.rest_6d).view(-1, self.num_rotations, 6))
        shape = out[:, r:r + self.shape_dim]
        cam = out[:, r + self.shape_dim:]
        scale = torch.exp(cam[:, 0]) * (self.size_xy / self.bbox_3d_size_m)
        t = (cam[:, 1:] + 0.5) * (self.size_xy - 1)
        return rotations, shape, torch.cat([scale[:, None], t], dim=1)

    def to_bins(self, vertices_m: torch.Tensor, root_m: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
        """Root-relative camera-frame metres -> lixel bins with the weak-perspective camera."""
        rel = vertices_m - root_m[:, None]
        xy = rel[..., :2] * camera[:, None, :1] + camera[:, None, 1:]
        z = (rel[..., 2] / (self.bbox_3d_size_m / 2.0) + 1.0) / 2.0 * self.depth_bins
        return torch.cat([xy, z[..., None]], dim=-1)


def upsample_blocks_for(xy_bins: int, feature_size: int) -> int:
    """How many 2x upsampling blocks turn the backbone's feature_size into xy_bins (0..3)."""
    return round(math.log2(xy_bins / feature_size))


__all__ = ["XYZRegressionHead", "FCLixelHead", "VoxelHead", "PixelHead", "ParamHead", "soft_argmax_2d",
           "upsample_blocks_for"]
