"""Network configuration: one dataclass with the defaults in one place, and presets by name.

The config travels inside every checkpoint (``to_dict`` / ``from_dict``), including the input
preprocessing, so a checkpoint is always decoded the way it was trained.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

BACKBONE_DEPTHS = (18, 34, 50, 101, 152)
# MeshNet output representations (paper Tables 1, 2 and 10): body-model parameters, xyz coordinates from two FC
# layers, lixel heatmaps from FC layers (no spatial relationship), voxel heatmaps, pixel xy + lixel z, the 2.5D
# heatmap of Iqbal et al. (ECCV 2018), and the lixel heatmap (ours).
TARGETS = ("lixel", "param", "xyz-fc", "lixel-fc", "voxel", "pixel-lixel", "2.5d")
CASCADES = ("posenet-meshnet", "meshnet", "gt-pose")
MARGINALISATIONS = ("average", "max", "weighted")


@dataclass(frozen=True)
class ModelConfig:
    """Everything that fixes the network's shape and the meaning of its outputs.

    Units: ``input_size`` in pixels (square crop); heatmaps have ``input_size // 4`` bins on x and y
    (one bin = 4 crop pixels) and ``depth_bins`` (D) bins on z spanning ``bbox_3d_size_m`` metres
    centred on the root joint. ``sigma_bins`` is the std of the 3D Gaussian of the joints, in bins.
    """

    backbone_depth: int = 50
    input_size: int = 256
    depth_bins: int = 64
    sigma_bins: float = 2.5
    bbox_3d_size_m: float = 2.0
    deconv_channels: int = 256
    num_joints: int = 29
    num_vertices: int = 6890
    kind: str = "body"
    body_model: str = "anny"
    mesh: str = "reduced"
    pose2feat: str = "separable"  # "separable" (fast, exact) or "materialised" (the reference's volume)
    # Paper ablations (docs/reproduction.md); the defaults are the paper's I2L-MeshNet.
    target: str = "lixel"  # MeshNet's output representation: one of TARGETS
    marginalisation: str = "average"  # 2D -> 1D for the x/y lixel heatmaps: "average", "max" or "weighted"
    early_marginalisation: bool = False  # marginalise the backbone output and upsample in 1D (Table 8)
    cascade: str = "posenet-meshnet"  # "posenet-meshnet", "meshnet" (MeshNet alone) or "gt-pose" (Table 3)
    xy_bins: int | None = None  # x/y heatmap resolution of MeshNet (None: input_size // 4); Table 2 uses 8, 32
    fc_hidden: int = 4096  # width of the first FC layer of the "xyz-fc" and "param" targets
    param_regressor: bool = False
    param_num_rotations: int = 24
    param_shape_dim: int = 10
    # Input preprocessing applied inside the network to RGB in [0, 1]: (rgb - mean) / std.
    # The authors' checkpoints use mean 0 / std 1 (official_spec.md 1.1).
    pixel_mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    pixel_std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        if self.backbone_depth not in BACKBONE_DEPTHS:
            raise ValueError(f"backbone_depth must be one of {BACKBONE_DEPTHS}, got {self.backbone_depth}")
        if self.input_size % 32:
            raise ValueError(f"input_size must be a multiple of 32 (ResNet stride), got {self.input_size}")
        if self.kind not in ("body", "hand"):
            raise ValueError(f"kind must be 'body' or 'hand', got {self.kind!r}")
        if self.pose2feat not in ("separable", "materialised"):
            raise ValueError(f"pose2feat must be 'separable' or 'materialised', got {self.pose2feat!r}")
        for name, value, allowed in (("target", self.target, TARGETS), ("cascade", self.cascade, CASCADES),
                                     ("marginalisation", self.marginalisation, MARGINALISATIONS)):
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")
        feature = self.input_size // 32
        if self.xy_bins is not None and self.xy_bins not in [feature * 2 ** k for k in range(4)]:
            raise ValueError(f"xy_bins must be the backbone's {feature}x{feature} feature upsampled 1, 2, 4 or 8 "
                             f"times ({', '.join(str(feature * 2 ** k) for k in range(4))}); got {self.xy_bins}")

    @property
    def heatmap_size(self) -> int:
        """Bins on the image axes x and y: the backbone's 1/32 feature upsampled 8x."""
        return self.input_size // 4

    @property
    def mesh_xy_bins(self) -> int:
        """MeshNet's x/y heatmap resolution (its coordinates are always returned in ``heatmap_size`` bins)."""
        return self.xy_bins or self.heatmap_size

    @property
    def backbone_channels(self) -> int:
        return 512 if self.backbone_depth < 50 else 2048

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config fields: {', '.join(unknown)}")
        data = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**data)

    def override(self, **changes: Any) -> "ModelConfig":
        return replace(self, **changes)


IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

PRESETS: dict[str, ModelConfig] = {
    # The paper's body network: ResNet-50, 256x256 input, D = 64, bbox_3d_size 2 m, 29 joints.
    "paper-body": ModelConfig(),
    # The paper's hand network (FreiHAND): 21 MANO-order joints, bbox_3d_size 0.3 m.
    "paper-hand": ModelConfig(kind="hand", num_joints=21, num_vertices=1609, bbox_3d_size_m=0.3, mesh="full"),
    # Small enough to learn in minutes on 2 CPU cores: ResNet-18 at 128x128, D = 32 (same 4 px per bin on
    # x/y as the paper), 128 upsampling channels; ImageNet-normalised input for fast fine-tuning.
    "cpu-small": ModelConfig(backbone_depth=18, input_size=128, depth_bins=32, deconv_channels=128,
                             pixel_mean=IMAGENET_MEAN, pixel_std=IMAGENET_STD),
    "cpu-small-hand": ModelConfig(backbone_depth=18, input_size=128, depth_bins=32, deconv_channels=128,
                                  kind="hand", num_joints=21, num_vertices=1609, bbox_3d_size_m=0.3,
                                  mesh="full", pixel_mean=IMAGENET_MEAN, pixel_std=IMAGENET_STD),
}


def get_preset(name: str, **overrides: Any) -> ModelConfig:
    """A preset by name, with field overrides (e.g. ``num_vertices=6890``)."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    return PRESETS[name].override(**overrides) if overrides else PRESETS[name]


__all__ = ["ModelConfig", "PRESETS", "TARGETS", "CASCADES", "MARGINALISATIONS", "get_preset", "IMAGENET_MEAN", "IMAGENET_STD"]
