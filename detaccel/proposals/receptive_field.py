"""Receptive field of a convolutional feature map, and mapping feature cells to image pixels.

Coordinates are pixel indices: pixel ``i`` is centred at ``i`` (it spans
``[i - 0.5, i + 0.5]``), as in the inclusive box convention. Along one axis,
a feature map is described by

- ``stride``: pixels between the centres of adjacent cells;
- ``offset``: the centre of cell 0's receptive field (cell ``c`` is centred
  at ``offset + c * stride``);
- ``extent``: the receptive-field size in pixels (cell ``c`` sees pixels
  ``centre - (extent - 1) / 2 ... centre + (extent - 1) / 2``).

Each layer of kernel ``k``, dilation ``d`` (effective kernel
``k' = d * (k - 1) + 1``), stride ``s`` and leading padding ``p`` updates
them, from ``(1, 0, 1)`` at the input, as::

    extent += (k' - 1) * stride
    offset += ((k' - 1) / 2 - p) * stride
    stride *= s

Layers that act on every position independently (activations, batch
normalisation, local response normalisation, dropout) leave all three
unchanged; any other layer is an error, since its geometry is unknown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from detaccel.proposals.backbone import LayerRef, flatten_layers

_POINTWISE = (
    nn.Identity,
    FrozenBatchNorm2d,
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.PReLU,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Sigmoid,
    nn.Tanh,
    nn.Hardtanh,
    nn.Hardswish,
    nn.Hardsigmoid,
    nn.Softplus,
    nn.BatchNorm2d,
    nn.SyncBatchNorm,
    nn.LocalResponseNorm,
    nn.CrossMapLRN2d,
    nn.Dropout,
    nn.Dropout2d,
    nn.AlphaDropout,
    nn.FeatureAlphaDropout,
)
_PADDING = (nn.ZeroPad2d, nn.ConstantPad2d, nn.ReflectionPad2d, nn.ReplicationPad2d)


class UnsupportedLayerError(TypeError):
    """A layer whose spatial geometry the calculator does not know."""


@dataclass(frozen=True)
class ReceptiveField:
    """Geometry of a feature map along one axis (see the module docstring)."""

    stride: float
    offset: float
    extent: float

    def centre(self, cell: Any) -> Any:
        """Pixel centre of cell(s) ``cell`` (a number or an array)."""
        return self.offset + np.asarray(cell, dtype=np.float64) * self.stride


def upsampled_field(field: ReceptiveField, factor: int) -> ReceptiveField:
    """Geometry of a map resized ``factor`` times by interpolation with half-pixel centres
    (``align_corners=False``): ``factor`` cells per cell, the centres on a ``stride / factor`` grid."""
    stride = field.stride / factor
    return ReceptiveField(stride, field.offset - (field.stride - stride) / 2.0, field.extent)


@dataclass(frozen=True)
class _Step:
    kernel: tuple[int, int]  # effective kernel (y, x)
    stride: tuple[int, int]
    pad_before: tuple[int, int]
    pad_after: tuple[int, int]


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def _step(name: str, layer: nn.Module) -> _Step | None:
    if isinstance(layer, _POINTWISE):
        return None
    if isinstance(layer, nn.Conv2d | nn.MaxPool2d | nn.AvgPool2d):
        kernel = _pair(layer.kernel_size)
        stride = _pair(layer.stride if layer.stride is not None else layer.kernel_size)
        dilation = _pair(getattr(layer, "dilation", 1))
        effective = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation, strict=True))
        padding = layer.padding
        if padding == "valid":
            before = after = (0, 0)
        elif padding == "same":
            total = tuple(k - 1 for k in effective)
            before = tuple(t // 2 for t in total)
            after = tuple(t - b for t, b in zip(total, before, strict=True))
        else:
            before = after = _pair(padding)
        return _Step(effective, stride, before, after)
    if isinstance(layer, _PADDING):
        left, right, top, bottom = layer.padding
        return _Step((1, 1), (1, 1), (top, left), (bottom, right))
    supported = (
        "Conv2d, MaxPool2d, AvgPool2d, padding layers, "
        + ", ".join(t.__name__ for t in _POINTWISE[:4])
        + ", ... (pointwise layers)"
    )
    raise UnsupportedLayerError(
        f"receptive field: layer {name!r} ({type(layer).__name__}) has no known geometry; "
        f"supported: {supported}"
    )


def _steps(module: nn.Module, upto: LayerRef) -> list[_Step]:
    steps = [_step(name, layer) for name, layer in flatten_layers(module, upto)]
    return [s for s in steps if s is not None]


def receptive_fields(module: nn.Module, upto: LayerRef = None) -> tuple[ReceptiveField, ReceptiveField]:
    """``(x, y)`` receptive fields of the output of ``module`` cut after ``upto``.

    ``upto`` follows :func:`~detaccel.proposals.backbone.flatten_layers`
    (top-level index, qualified name, or ``None`` for the whole module).

    Raises:
        UnsupportedLayerError: a layer that is neither convolution, pooling,
            padding nor pointwise (the message names it and its type).
    """
    fields = []
    for axis in (1, 0):  # x reads the last element of torch's (h, w) pairs
        stride, offset, extent = 1, 0.0, 1
        for step in _steps(module, upto):
            k = step.kernel[axis]
            extent += (k - 1) * stride
            offset += ((k - 1) / 2 - step.pad_before[axis]) * stride
            stride *= step.stride[axis]
        fields.append(ReceptiveField(stride, offset, extent))
    return fields[0], fields[1]


def receptive_field(module: nn.Module, upto: LayerRef = None) -> ReceptiveField:
    """The receptive field of a network with the same geometry along x and y.

    Raises:
        ValueError: the two axes differ (use :func:`receptive_fields`).
    """
    x, y = receptive_fields(module, upto)
    if x != y:
        raise ValueError(f"receptive field differs between axes (x: {x}, y: {y}); use receptive_fields()")
    return x


def minimum_input_size(module: nn.Module, upto: LayerRef = None) -> tuple[int, int]:
    """Smallest input ``(height, width)`` for which the output has at least one cell."""
    size = []
    for axis in (0, 1):
        needed = 1
        for step in reversed(_steps(module, upto)):
            pad = step.pad_before[axis] + step.pad_after[axis]
            needed = max(1, (needed - 1) * step.stride[axis] + step.kernel[axis] - pad)
        size.append(needed)
    return size[0], size[1]


def footprint_size(field: ReceptiveField, footprint: str | float) -> float:
    """Pixels a single cell maps to: ``"stride"``, ``"extent"`` or an explicit number."""
    if footprint == "stride":
        return float(field.stride)
    if footprint == "extent":
        return float(field.extent)
    if isinstance(footprint, int | float) and not isinstance(footprint, bool) and footprint > 0:
        return float(footprint)
    raise ValueError(f"footprint: expected 'stride', 'extent' or a positive number, got {footprint!r}")


def cell_boxes_to_pixels(
    cell_boxes: Any,
    field: ReceptiveField | Sequence[ReceptiveField],
    footprint: str | float = "stride",
) -> np.ndarray:
    """Map inclusive cell boxes ``(x1, y1, x2, y2)`` to inclusive pixel boxes, float64 ``[M, 4]``.

    A cell is given a square footprint of ``F`` pixels centred on its centre,
    and a box of cells becomes the union of its cells' footprints::

        x1_px = centre(x1) - (F - 1) / 2,    x2_px = centre(x2) + (F - 1) / 2

    ``footprint="stride"`` (the default) gives ``F = stride``: the cells'
    footprints tile the image without gaps or overlap, so a box of cells
    covers exactly the image region those cells stand for (for VGG16 conv5,
    cell ``c`` is pixels ``16c ... 16c + 15``). ``"extent"`` gives the union
    of the cells' full receptive fields: everything the cells can see, which
    for deep layers is several times larger than the objects that activate
    them. A number sets ``F`` in pixels.

    Args:
        cell_boxes: ``[M, 4]`` (numpy or torch).
        field: one :class:`ReceptiveField` for both axes, or ``(x, y)``.
    """
    if hasattr(cell_boxes, "detach"):
        cell_boxes = cell_boxes.detach().cpu().numpy()
    boxes = np.asarray(cell_boxes, dtype=np.float64).reshape(-1, 4)
    fx, fy = (field, field) if isinstance(field, ReceptiveField) else tuple(field)
    out = np.empty_like(boxes)
    for axis, f in ((0, fx), (1, fy)):
        half = (footprint_size(f, footprint) - 1.0) / 2.0
        out[:, axis] = f.offset + boxes[:, axis] * f.stride - half
        out[:, axis + 2] = f.offset + boxes[:, axis + 2] * f.stride + half
    return out
