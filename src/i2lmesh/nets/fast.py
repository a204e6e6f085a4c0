"""Exact inference speed-ups: BatchNorm folding, channels_last, and (optionally) torch.compile with freezing.

Each rewrite computes the same function as the eval-mode network up to float rounding; ``optimise_for_inference``
returns a new module and leaves the training network untouched. Measured in benchmarks/bench_model.py.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from .i2l import I2LMeshNet


@torch.no_grad()
def _fold(layer: nn.Module, bn: nn.BatchNorm1d | nn.BatchNorm2d) -> None:
    """Fold eval-mode BN (y = (x - mean) / sqrt(var + eps) * gamma + beta) into the layer before it."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    out_dim = 1 if isinstance(layer, nn.ConvTranspose2d) else 0  # ConvTranspose weights are (in, out, kh, kw)
    shape = [1] * layer.weight.ndim
    shape[out_dim] = -1
    layer.weight.mul_(scale.view(shape))
    bias = layer.bias if layer.bias is not None else torch.zeros_like(bn.running_mean)
    new_bias = (bias - bn.running_mean) * scale + bn.bias
    layer.bias = nn.Parameter(new_bias)


def fold_batchnorm(net: I2LMeshNet) -> I2LMeshNet:
    """A copy of ``net`` (eval mode) with every BatchNorm folded into the convolution/linear layer before it."""
    net = copy.deepcopy(net).eval()
    pairs: list[tuple[nn.Module, str, nn.Module, str]] = []  # (parent of layer, layer name, parent of bn, bn name)
    for module in net.modules():
        names = dict(module.named_children())
        for name, child in names.items():
            if not isinstance(child, (nn.BatchNorm1d, nn.BatchNorm2d)):
                continue
            layer_name = _preceding_layer(module, name)
            if layer_name is not None:
                pairs.append((module, layer_name, module, name))
    for parent, layer_name, bn_parent, bn_name in pairs:
        _fold(getattr(parent, layer_name), getattr(bn_parent, bn_name))
        setattr(bn_parent, bn_name, nn.Identity())
    return net


def _preceding_layer(module: nn.Module, bn_name: str) -> str | None:
    """Name of the conv/linear layer whose output ``bn_name`` normalises, within the same parent module."""
    children = list(module.named_children())
    candidates = {"bn1": "conv1", "bn2": "conv2", "bn3": "conv3", "bn": "conv", "bn_z_1": "conv_z_1"}
    if bn_name in candidates and hasattr(module, candidates[bn_name]):
        return candidates[bn_name]
    if isinstance(module, nn.Sequential):  # deconv blocks, downsample, the param regressor's fc
        index = [n for n, _ in children].index(bn_name)
        if index > 0 and isinstance(children[index - 1][1], (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Conv1d)):
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
