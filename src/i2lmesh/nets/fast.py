"""Exact inference speed-ups: BatchNorm folding, channels_last, and (optionally) torch.compile with freezing.

Each rewrite computes the same function as the eval-mode network up to float rounding; ``optimise_for_inference``
returns a new module and leaves the training network untouched. Measured in benchmarks/bench_model.py. The folding
arithmetic is PyTorch's (``torch.nn.utils.fusion``); what is ours is finding which layer each BatchNorm follows
(:func:`_preceding_layer`), since the network's forward is not a plain chain of modules.
"""
from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval, fuse_linear_bn_eval

from .i2l import I2LMeshNet

_TRANSPOSED = (nn.ConvTranspose1d, nn.ConvTranspose2d)  # weights (in, out, k...): BN scales dimension 1
_FOLDABLE = (nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.Linear)


def _fused(layer: nn.Module, bn: nn.BatchNorm1d | nn.BatchNorm2d) -> nn.Module:
    """A new ``layer`` computing layer-then-eval-mode-BN, y = (layer(x) - mean) / sqrt(var + eps) * gamma + beta
    (``torch.nn.utils.fusion.fuse_linear_bn_eval`` / ``fuse_conv_bn_eval``). Both must be in eval mode."""
    if isinstance(layer, nn.Linear):
        return fuse_linear_bn_eval(layer, bn)
    return fuse_conv_bn_eval(layer, bn, transpose=isinstance(layer, _TRANSPOSED))


@torch.no_grad()
def fold_batchnorm(net: I2LMeshNet) -> I2LMeshNet:
    """A copy of ``net`` (eval mode) with every BatchNorm folded into the convolution/linear layer before it (the
    BatchNorm becomes ``nn.Identity``). Same outputs up to float rounding; ``net`` is left as it was."""
    net = copy.deepcopy(net).eval()
    pairs: list[tuple[nn.Module, str, str]] = []  # (parent, layer name, BN name)
    for module in net.modules():
        for name, child in module.named_children():
            if isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d)):
                layer_name = _preceding_layer(module, name)
                if layer_name is not None:
                    pairs.append((module, layer_name, name))
    for parent, layer_name, bn_name in pairs:
        setattr(parent, layer_name, _fused(getattr(parent, layer_name), getattr(parent, bn_name)))
        setattr(parent, bn_name, nn.Identity())
    return net


def _preceding_layer(module: nn.Module, bn_name: str) -> str | None:
    """Name of the conv/linear layer whose output ``bn_name`` normalises, within the same parent module: by name
    (ResNet's conv1/bn1 ..., Pose2Feat's conv/bn, FCLixelHead's fc/bn, the z branch's conv_z_1/bn_z_1), or the
    module before it in an ``nn.Sequential`` (deconv blocks, downsample, the parameter regressor's fc)."""
    by_name = {"bn1": ("conv1",), "bn2": ("conv2",), "bn3": ("conv3",), "bn": ("conv", "fc"), "bn_z_1": ("conv_z_1",)}
    for layer_name in by_name.get(bn_name, ()):
        if isinstance(getattr(module, layer_name, None), _FOLDABLE):
            return layer_name
    if isinstance(module, nn.Sequential):
        children = list(module.named_children())
        index = [n for n, _ in children].index(bn_name)
        if index > 0 and isinstance(children[index - 1][1], _FOLDABLE):
            return children[index - 1][0]
    return None


def optimise_for_inference(net: I2LMeshNet, channels_last: bool = True, compile: bool = False) -> nn.Module:
    """BN folding (+ channels_last memory format, + torch.compile with inductor freezing when asked).

    torch.compile needs a C++ compiler and takes tens of seconds the first call; it pays off for long runs.
    """
    fast = fold_batchnorm(net)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    if compile:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True
        return torch.compile(fast)
    return fast
