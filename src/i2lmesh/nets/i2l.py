"""I2L-MeshNet: PoseNet -> 3D Gaussian of the joints -> Pose2Feat -> MeshNet, joints = J x mesh.

Reads top to bottom like the paper's Fig. 2. All outputs are in heatmap bins (x, y in 0..input/4-1 of the
crop, z in 0..D-1 around the root joint); decoding to camera space lives in ``i2lmesh.geometry``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..config import ModelConfig
from ..geometry.rotations import rot6d_to_matrix
from .backbone import ResNetBackbone
from .heads import FCLixelHead, ParamHead, PixelHead, VoxelHead, XYZRegressionHead, upsample_blocks_for
from .lixel import LixelHead, LixelOutput
from .pose2feat import Pose2Feat


@dataclass
class I2LOutput:
    """Network outputs, all in heatmap bins (B = batch, J = joints, V = vertices).

    joints_hm (B,J,3): PoseNet joints.  joints_spread (B,J,3): std of PoseNet's x/y/z heatmaps.
    vertices_hm (B,V,3): MeshNet vertices.  vertices_spread (B,V,3): std of MeshNet's heatmaps.
    mesh_joints_hm (B,J,3): J x vertices_hm, the final pose (paper eq. 7).
    param_rotations (B,R,3,3) and param_shape (B,S): the parameter regressor's output, when present.
    """

    joints_hm: torch.Tensor
    joints_spread: torch.Tensor
    vertices_hm: torch.Tensor
    vertices_spread: torch.Tensor
    mesh_joints_hm: torch.Tensor
    param_rotations: torch.Tensor | None = None
    param_shape: torch.Tensor | None = None


class ParamRegressor(nn.Module):
    """Body-model parameters from the (detached) mesh joints in heatmap bins ("+ SMPL regress" of the paper).

    Linear(3J,1024)-BN-ReLU-Linear(1024,512)-BN-ReLU, then 6D rotations per bone and shape values.
    """

    def __init__(self, num_joints: int, num_rotations: int, shape_dim: int) -> None:
        super().__init__()
        self.num_rotations = num_rotations
        self.fc = nn.Sequential(nn.Linear(3 * num_joints, 1024), nn.BatchNorm1d(1024), nn.ReLU(inplace=True),
                                nn.Linear(1024, 512), nn.BatchNorm1d(512), nn.ReLU(inplace=True))
        self.fc_pose = nn.Linear(512, num_rotations * 6)
        self.fc_shape = nn.Linear(512, shape_dim)

    def forward(self, joints_hm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.fc(joints_hm.flatten(1))
        rotations = rot6d_to_matrix(self.fc_pose(feat).view(-1, self.num_rotations, 6))
        return rotations, self.fc_shape(feat)


class I2LMeshNet(nn.Module):
    """The image-to-lixel network.

    ``joint_regressor`` (J,V) and ``faces`` (F,3) are persistent buffers, so a checkpoint alone decodes
    and trains without the body-model files. Input: RGB in [0, 1], (B,3,S,S) with S = config.input_size;
    the checkpoint's preprocessing (mean/std) is applied inside.
    """

    def __init__(self, config: ModelConfig, joint_regressor: torch.Tensor, faces: torch.Tensor,
                 body_model: nn.Module | None = None) -> None:
        super().__init__()
        assert joint_regressor.shape == (config.num_joints, config.num_vertices), (
            f"joint_regressor must be (J, V) = ({config.num_joints}, {config.num_vertices}), "
            f"got {tuple(joint_regressor.shape)}")
        self.config = config
        self.topology: dict = {}  # body-model metadata (joint names, flip pairs, ...) saved with checkpoints
        cfg = config
        # Table 3: "meshnet" drops PoseNet and Pose2Feat; MeshNet's backbone then takes the image (with a stem).
        self.has_posenet = cfg.cascade != "meshnet"
        if self.has_posenet:
            self.pose_backbone = ResNetBackbone(cfg.backbone_depth, with_stem=True)
            self.pose_net = LixelHead(cfg.backbone_channels, cfg.num_joints, cfg.depth_bins, cfg.deconv_channels,
                                      feature_size=cfg.input_size // 32, prior=cfg.head_prior)
            self.pose2feat = Pose2Feat(64, cfg.num_joints, cfg.depth_bins, cfg.sigma_bins, mode=cfg.pose2feat)
        else:
            self.pose_backbone = self.pose_net = self.pose2feat = None
        self.mesh_backbone = ResNetBackbone(cfg.backbone_depth, with_stem=not self.has_posenet)
        self.mesh_net = build_mesh_head(cfg)
        # The body model is needed at run time only by the "param" target; it is not part of the state dict.
        object.__setattr__(self, "body_model", body_model)
        if cfg.target == "param" and body_model is None:
            raise ValueError("target 'param' needs the body model (build the network with build_network)")
        self.param_regressor = (ParamRegressor(cfg.num_joints, cfg.param_num_rotations, cfg.param_shape_dim)
                                if cfg.param_regressor else None)
        self.register_buffer("joint_regressor", torch.as_tensor(joint_regressor, dtype=torch.float32))
        self.register_buffer("faces", torch.as_tensor(faces, dtype=torch.long))
        self.register_buffer("pixel_mean", torch.tensor(cfg.pixel_mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(cfg.pixel_std).view(1, 3, 1, 1), persistent=False)
        self.reset_head_parameters()

    def reset_head_parameters(self) -> None:
        """The reference's initialisation of everything but the backbones (official_spec.md 1.7).

        Deconv/Conv2d ~ N(0, 0.001), Linear ~ N(0, 0.01), BN2d (1, 0); Conv1d/BN1d keep PyTorch defaults.
        """
        heads = [m for m in (self.pose_net, self.pose2feat, self.mesh_net, self.param_regressor) if m is not None]
        for head in heads:
            for m in head.modules():
                if isinstance(m, (nn.ConvTranspose2d, nn.Conv2d)):
                    nn.init.normal_(m.weight, std=0.001)
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.ones_(m.weight)
                    nn.init.zeros_(m.bias)
                elif isinstance(m, nn.Linear):
                    nn.init.normal_(m.weight, std=0.01)
                    nn.init.zeros_(m.bias)

    def forward(self, images: torch.Tensor, pose_input_hm: torch.Tensor | None = None) -> I2LOutput:
        """images (B,3,S,S) RGB in [0, 1]. ``pose_input_hm`` (B,J,3): joints in bins fed to Pose2Feat instead of
        PoseNet's (the "gt-pose" cascade of Table 3; ignored otherwise)."""
        x = (images - self.pixel_mean) / self.pixel_std
        if self.has_posenet:
            early_feat, pose_feat = self.pose_backbone(x)
            pose = self.pose_net(pose_feat)
            if self.config.cascade == "gt-pose":
                if pose_input_hm is None:
                    raise ValueError("cascade 'gt-pose' needs pose_input_hm (the ground-truth joints in bins)")
                mesh_input = self.pose2feat(early_feat, pose_input_hm.to(early_feat.dtype))
            else:
                mesh_input = self.pose2feat(early_feat, pose.coords)
        else:
            mesh_input = x
        _, mesh_feat = self.mesh_backbone(mesh_input)
        mesh = self.run_mesh_head(mesh_feat)
        mesh_joints = torch.matmul(self.joint_regressor, mesh.coords)
        if not self.has_posenet:  # the mesh's joints are the only pose estimate
            pose = LixelOutput(mesh_joints, torch.matmul(self.joint_regressor, mesh.spreads))
        rotations = shape = None
        if self.param_regressor is not None:
            rotations, shape = self.param_regressor(mesh_joints.detach())
        return I2LOutput(pose.coords, pose.spreads, mesh.coords, mesh.spreads, mesh_joints, rotations, shape)

    def run_mesh_head(self, feature: torch.Tensor) -> LixelOutput:
        """MeshNet's output part; the "param" target poses the body model and projects it to bins."""
        if not isinstance(self.mesh_net, ParamHead):
            return self.mesh_net(feature)
        body = self.body_model
        if body.joint_regressor.device != feature.device:
            body.to(feature.device)
        rotations, raw_shape, camera = self.mesh_net.parameters_from(feature.float())
        vertices = body(rotations, body.shape_from_network(raw_shape)).vertices_m
        root = torch.matmul(self.joint_regressor, vertices)[:, self.topology.get("root_index", 0)]
        coords = self.mesh_net.to_bins(vertices, root, camera)
        return LixelOutput(coords, torch.full_like(coords, float("nan")))


def build_mesh_head(cfg: ModelConfig) -> nn.Module:
    """MeshNet's output part for ``cfg.target`` (paper Tables 1, 2, 10; the default is the lixel head)."""
    feature = cfg.input_size // 32
    blocks = upsample_blocks_for(cfg.mesh_xy_bins, feature)
    c, v, d = cfg.backbone_channels, cfg.num_vertices, cfg.depth_bins
    if cfg.target == "lixel":
        return LixelHead(c, v, d, cfg.deconv_channels, num_upsample=blocks, marginalisation=cfg.marginalisation,
                         early=cfg.early_marginalisation, feature_size=feature, prior=cfg.head_prior)
    if cfg.target == "xyz-fc":
        return XYZRegressionHead(c, v, cfg.fc_hidden, cfg.heatmap_size, d)
    if cfg.target == "lixel-fc":
        if cfg.heatmap_size != d:
            raise ValueError(f"target 'lixel-fc' shares one FC block for x, y and z: needs input_size // 4 "
                             f"({cfg.heatmap_size}) == depth_bins ({d})")
        return FCLixelHead(c, v, d, cfg.deconv_channels)
    if cfg.target == "voxel":
        return VoxelHead(c, v, d, cfg.deconv_channels, blocks)
    if cfg.target in ("pixel-lixel", "2.5d"):
        return PixelHead(c, v, d, cfg.deconv_channels, blocks, depth_map=cfg.target == "2.5d")
    if cfg.target == "param":
        return ParamHead(c, cfg.param_num_rotations, cfg.param_shape_dim, cfg.fc_hidden, cfg.heatmap_size, d,
                         cfg.bbox_3d_size_m)
    raise ValueError(f"unknown target {cfg.target!r}")
