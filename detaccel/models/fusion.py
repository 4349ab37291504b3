"""Batch norm folded into the convolution before it: the same function in fewer passes, for inference.

In eval mode a batch norm is the affine map ``y = x * scale + shift`` per
channel (its running statistics fixed), so after a convolution it folds into
that convolution's weights and bias. :func:`fold_batchnorm` does so in place
for convolution-norm pairs in ``nn.Sequential`` containers and in blocks that
name their pairs (a ``conv_norm_pairs`` attribute, as EfficientNet-Lite's MBConv
has; torchvision's ResNet blocks); each folded norm becomes an ``nn.Identity``, so module indices — the
named stages of a backbone — stay where they were. :func:`inference_copy` leaves
the model it reads untouched.
"""

from __future__ import annotations

import copy
import itertools

import torch
from torch import nn
from torchvision.ops.misc import FrozenBatchNorm2d

Norm = nn.BatchNorm2d | FrozenBatchNorm2d

# torchvision's residual blocks: (convolution, norm) attribute pairs.
_RESNET_PAIRS = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))


def _named_pairs(module: nn.Module) -> tuple[tuple[str, str], ...]:
    """The block's (convolution, norm) attribute pairs: its own ``conv_norm_pairs`` or a known block's."""
    from torchvision.models.resnet import BasicBlock, Bottleneck

    if isinstance(module, BasicBlock | Bottleneck):
        return _RESNET_PAIRS
    return tuple(getattr(module, "conv_norm_pairs", ()))


def _affine(norm: Norm) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` of ``norm`` with its running statistics."""
    weight = norm.weight if norm.weight is not None else torch.ones_like(norm.running_var)
    bias = norm.bias if norm.bias is not None else torch.zeros_like(norm.running_mean)
    scale = weight * torch.rsqrt(norm.running_var + norm.eps)
    return scale, bias - norm.running_mean * scale


def fold_conv_bn(conv: nn.Conv2d, norm: Norm) -> nn.Conv2d:
    """A convolution with a bias that computes ``norm(conv(x))`` (``norm`` with its running statistics)."""
    if not isinstance(norm, FrozenBatchNorm2d) and not norm.track_running_stats:
        raise ValueError("a batch norm without running statistics cannot be folded")
    channels = norm.running_mean.numel()
    if channels != conv.out_channels:
        raise ValueError(f"batch norm of {channels} channels after a convolution of {conv.out_channels}")
    with torch.no_grad():
        scale, shift = _affine(norm)
        folded = nn.Conv2d(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,  # type: ignore[arg-type]
            conv.stride,  # type: ignore[arg-type]
            conv.padding,  # type: ignore[arg-type]
            conv.dilation,  # type: ignore[arg-type]
            conv.groups,
            bias=True,
            padding_mode=conv.padding_mode,
            device=conv.weight.device,
            dtype=conv.weight.dtype,
        )
        folded.weight.copy_(conv.weight * scale.to(conv.weight.dtype).view(-1, 1, 1, 1))
        bias = shift if conv.bias is None else conv.bias * scale + shift
        folded.bias.copy_(bias.to(conv.weight.dtype))
    return folded


def _fold_sequence(module: nn.Sequential) -> int:
    names = list(module._modules)
    folded = 0
    for first, second in itertools.pairwise(names):
        conv, norm = module._modules[first], module._modules[second]
        if isinstance(conv, nn.Conv2d) and isinstance(norm, Norm):
            module._modules[first] = fold_conv_bn(conv, norm)
            module._modules[second] = nn.Identity()
            folded += 1
    return folded


def _fold_named(module: nn.Module) -> int:
    folded = 0
    for conv_name, norm_name in _named_pairs(module):
        conv, norm = getattr(module, conv_name, None), getattr(module, norm_name, None)
        if isinstance(conv, nn.Conv2d) and isinstance(norm, Norm):
            setattr(module, conv_name, fold_conv_bn(conv, norm))
            setattr(module, norm_name, nn.Identity())
            folded += 1
    return folded


def fold_batchnorm(module: nn.Module) -> int:
    """Fold, in place and recursively, every batch norm that follows a convolution; returns how many.

    Only for inference: a folded model computes what ``module`` computed in
    eval mode (batch norm with its running statistics), not in training mode.
    """
    folded = _fold_sequence(module) if isinstance(module, nn.Sequential) else _fold_named(module)
    for child in module.children():
        folded += fold_batchnorm(child)
    return folded


def inference_copy(module: nn.Module, fold: bool = True, channels_last: bool = False) -> nn.Module:
    """A copy of ``module`` in eval mode without gradients: batch norm folded, channels-last weights."""
    out = copy.deepcopy(module).eval()
    if fold:
        fold_batchnorm(out)
    if channels_last:
        out = out.to(memory_format=torch.channels_last)
    return out.requires_grad_(False)
