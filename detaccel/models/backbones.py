"""Convolutional backbones: a small network for CPU training, and torchvision models cut at stride 16.

Every backbone is an ``nn.Module`` mapping normalised images ``[B, 3, H, W]``
to a feature map, with ``out_channels`` and ``stride`` (input pixels per cell).
"""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from typing import Any

import torch
from torch import nn

from detaccel.config.schema import BackboneConfig


class BackboneWeightsError(ValueError):
    """A ``--weights`` file that does not fit the backbone."""


def _conv(in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class SmallBackbone(nn.Module):
    """A few conv-BN-ReLU layers down to stride 8 or 16; trains from scratch in minutes on a CPU."""

    def __init__(self, width: int = 64, stride: int = 8) -> None:
        super().__init__()
        if stride not in (8, 16):
            raise ValueError(f"SmallBackbone: stride must be 8 or 16, got {stride}")
        half = max(width // 2, 8)
        layers: list[nn.Module] = [
            *_conv(3, half, 5, 2),
            nn.MaxPool2d(2),  # stride 4
            *_conv(half, width),
            *_conv(width, width),
            nn.MaxPool2d(2),  # stride 8
            *_conv(width, 2 * width),
            *_conv(2 * width, 2 * width),
        ]
        if stride == 16:
            layers += [nn.MaxPool2d(2), *_conv(2 * width, 2 * width)]
        self.body = nn.Sequential(*layers)
        self.out_channels = 2 * width
        self.stride = stride
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)


class TorchvisionBackbone(nn.Module):
    """The convolutional part of a torchvision classifier, cut at stride 16.

    ``source`` is the whole classifier (kept so that a full ImageNet state dict
    can be loaded into it); ``body`` holds the layers that run.
    """

    def __init__(self, name: str, freeze_first_layers: int = 0) -> None:
        super().__init__()
        import torchvision

        if name == "vgg16":
            model = torchvision.models.vgg16(weights=None)
            layers = list(model.features.children())[:-1]  # drop pool5: stride 16
            channels = 512
        elif name in ("resnet18", "resnet50"):
            model = getattr(torchvision.models, name)(weights=None)
            layers = [
                model.conv1,
                model.bn1,
                model.relu,
                model.maxpool,
                model.layer1,
                model.layer2,
                model.layer3,
            ]
            channels = 256 if name == "resnet18" else 1024
        elif name == "mobilenet_v2":
            model = torchvision.models.mobilenet_v2(weights=None)
            layers = list(model.features.children())[:14]  # up to the 96-channel blocks: stride 16
            channels = 96
        else:
            raise ValueError(f"unknown torchvision backbone {name!r}")
        self.name = name
        self.body = nn.Sequential(*layers)
        self._source = [model]  # not a submodule: only its parameters shared with body are trained
        self.out_channels = channels
        self.stride = 16
        for layer in layers[:freeze_first_layers]:
            for parameter in layer.parameters():
                parameter.requires_grad_(False)

    @property
    def source(self) -> nn.Module:
        return self._source[0]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)


def _unwrap_state_dict(state: Any) -> Mapping[str, torch.Tensor]:
    if isinstance(state, Mapping):
        for key in ("state_dict", "model"):
            if key in state and isinstance(state[key], Mapping):
                state = state[key]
                break
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise BackboneWeightsError("not a state dict (expected a mapping of parameter names to tensors)")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _mismatch(target: nn.Module, state: Mapping[str, torch.Tensor]) -> list[str]:
    expected = target.state_dict()
    problems = [f"missing {k}" for k in expected if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in expected]
    problems += [
        f"{k}: shape {tuple(state[k].shape)} in the file, {tuple(v.shape)} in the model"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    return problems


def load_backbone_weights(backbone: nn.Module, path: str | PathLike) -> None:
    """Load a state dict file into ``backbone``: the whole torchvision classifier's, or the backbone's own.

    Raises :class:`BackboneWeightsError` naming the mismatched keys when neither fits.
    """
    try:
        state = _unwrap_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except FileNotFoundError:
        raise BackboneWeightsError(f"{path}: weights file not found") from None
    except BackboneWeightsError as error:
        raise BackboneWeightsError(f"{path}: {error}") from None
    except Exception as error:
        raise BackboneWeightsError(f"{path}: cannot read weights ({type(error).__name__}: {error})") from None
    targets = [backbone]
    if isinstance(backbone, TorchvisionBackbone):
        targets.insert(0, backbone.source)
    reports = []
    for target in targets:
        problems = _mismatch(target, state)
        if not problems:
            target.load_state_dict(state)
            return
        reports.append(problems)
    best = min(reports, key=len)
    shown = "; ".join(best[:8]) + (f"; and {len(best) - 8} more" if len(best) > 8 else "")
    name = getattr(backbone, "name", type(backbone).__name__)
    raise BackboneWeightsError(f"{path}: weights do not fit backbone {name!r}: {shown}")


def build_backbone(config: BackboneConfig) -> nn.Module:
    """The backbone a config names, with its weights file loaded if one is given."""
    if config.name == "small":
        backbone: nn.Module = SmallBackbone(config.width, config.stride)
    else:
        backbone = TorchvisionBackbone(config.name, config.freeze_first_layers)
    if config.weights:
        load_backbone_weights(backbone, config.weights)
    return backbone
