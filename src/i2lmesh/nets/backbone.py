"""ResNet backbone (torchvision blocks) split the way I2L-MeshNet uses it.

PoseNet's backbone returns the stem output (the "pre-computed feature" that joins the 3D Gaussian, 64
channels at 1/4 resolution) and the layer4 feature F^P. MeshNet's backbone starts at layer1 and has no
stem at all: the reference keeps an unused stem there (9,536 parameters), we drop it.
"""
from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet

_CONSTRUCTORS = {18: resnet.resnet18, 34: resnet.resnet34, 50: resnet.resnet50, 101: resnet.resnet101,
                 152: resnet.resnet152}


class ResNetBackbone(nn.Module):
    """torchvision ResNet without avgpool/fc; parameter names match torchvision for ImageNet weights.

    forward(x) -> (early_feature, layer4_feature): with a stem, x is an image (B,3,H,W) and the early
    feature is the stem output (B,64,H/4,W/4); without one, x is already such a feature.
    """

    def __init__(self, depth: int, with_stem: bool = True) -> None:
        super().__init__()
        net = _CONSTRUCTORS[depth](weights=None)
        self.with_stem = with_stem
        if with_stem:
            self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.out_channels = 512 if depth < 50 else 2048

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.with_stem:
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        early = x
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return early, x

    def load_imagenet_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load a torchvision ImageNet ResNet state dict (fc dropped; stem dropped when we have none)."""
        keep = {k: v for k, v in state_dict.items() if not k.startswith("fc.")}
        if not self.with_stem:
            keep = {k: v for k, v in keep.items() if not k.startswith(("conv1.", "bn1."))}
        missing, unexpected = self.load_state_dict(keep, strict=False)
        if missing or unexpected:
            raise ValueError(f"ImageNet weights do not fit ResNet backbone: missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]}")
