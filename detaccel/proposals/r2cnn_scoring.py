"""Reading the feature map for R²-CNN, and scoring its boxes so that top-k is meaningful.

- :func:`reduce_channels`: how the channels become the map that is integrated —
  ``sum`` (the original: each channel divided by its maximum, summed), ``abs``
  (the same on absolute values: signed maps such as linear bottlenecks no longer
  cancel out).
- :func:`local_maxima`: the cells that hold the largest value of their 3x3
  neighbourhood (the centres of blobs too small or too weak for a level set of
  their own), strongest first.
- :func:`boxes_from_sides`: the boxes a learned head's per-cell side distances
  describe at chosen cells (R²-CNN's learned local search).
- :func:`contrast_scores`: a box's mean integrated value inside against a ring
  around it (a summed-area table: O(1) per box, in a compiled operator), the
  cheap objectness R²-CNN's boxes are sorted by before de-duplication.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from detaccel.config.r2cnn import RANKINGS, REDUCTIONS
from detaccel.proposals.receptive_field import ReceptiveField

__all__ = ["RANKINGS", "REDUCTIONS", "boxes_from_sides", "contrast_scores", "local_maxima", "reduce_channels"]


def reduce_channels(features: torch.Tensor, reduction: str) -> torch.Tensor:
    """``features`` ``[N, C, H, W]`` prepared for the integrating operator (which divides each channel
    by its maximum and sums the channels)."""
    if reduction == "sum":
        return features
    if reduction == "abs":
        return features.abs()
    raise ValueError(f"reduction: expected one of {', '.join(REDUCTIONS)}, got {reduction!r}")


def local_maxima(
    values: torch.Tensor | np.ndarray, k: int, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` cell indices of the ``k`` strongest local maxima of ``values`` ``[H, W]``.

    A cell is a local maximum when no cell of its 3x3 neighbourhood is larger and
    its value is at least ``threshold`` times the map's maximum (and positive).
    Ordered by decreasing value (ties in raster order).
    """
    if isinstance(values, torch.Tensor):
        values = values.detach().float().cpu().numpy()
    values = np.asarray(values, dtype=np.float32)
    if values.ndim != 2:
        raise ValueError(f"local_maxima: expected an [H, W] map, got {tuple(values.shape)}")
    if values.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    height, width = values.shape
    padded = np.pad(values, 1, constant_values=-np.inf)
    pooled = values.copy()
    for dy in range(3):
        for dx in range(3):
            np.maximum(pooled, padded[dy : dy + height, dx : dx + width], out=pooled)
    peak = (values >= pooled) & (values >= threshold * float(values.max())) & (values > 0)
    ys, xs = np.nonzero(peak)
    order = np.argsort(-values[ys, xs], kind="stable")[:k]
    return xs[order], ys[order]


# Largest log side distance read (in strides): e^10 strides is past any image.
MAX_LOG_SIDE = 10.0


def boxes_from_sides(
    sides: np.ndarray, cells: np.ndarray, centres: np.ndarray, stride: tuple[float, float]
) -> np.ndarray:
    """Inclusive pixel boxes ``[K, 4]`` that log side distances ``sides`` ``[4, H, W]`` (left, top,
    right, bottom, in units of ``stride`` ``(x, y)``) describe at ``cells`` ``[K, 2]`` (``(x, y)``
    indices), measured from the cells' pixel centres ``centres`` ``[K, 2]`` to the boxes' pixel edges."""
    cells = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
    if len(cells) == 0:
        return np.zeros((0, 4), np.float64)
    height, width = sides.shape[1:]
    if cells.min() < 0 or (cells[:, 0] >= width).any() or (cells[:, 1] >= height).any():
        raise ValueError(f"boxes_from_sides: cell indices outside the {height}x{width} map")
    read = np.minimum(sides[:, cells[:, 1], cells[:, 0]].astype(np.float64), MAX_LOG_SIDE)
    left, top, right, bottom = np.exp(read)
    sx, sy = stride
    cx, cy = np.asarray(centres, dtype=np.float64).reshape(-1, 2).T
    return np.stack(
        [cx - left * sx + 0.5, cy - top * sy + 0.5, cx + right * sx - 0.5, cy + bottom * sy - 0.5], axis=1
    )


def contrast_scores(
    integrated: np.ndarray,
    pixel_boxes: np.ndarray,
    field: Sequence[ReceptiveField],
    ring: float = 0.5,
) -> np.ndarray:
    """Objectness of each pixel box: mean of ``integrated`` ``[H, W]`` inside it minus the mean over a
    ring of ``ring`` times its size around it (both on the feature cells it covers), float32 ``[K]``.

    Boxes are mapped to cells through ``field`` (``(x, y)`` receptive fields). A box
    whose ring lies wholly outside the map is compared with nothing (ring mean 0).
    Computed by the compiled operator ``ops.r2cnn_contrast_scores``.
    """
    from detaccel import ops

    boxes = torch.from_numpy(np.asarray(pixel_boxes, dtype=np.float64).reshape(-1, 4))
    if not len(boxes):
        return np.zeros(0, np.float32)
    values = integrated if isinstance(integrated, torch.Tensor) else torch.from_numpy(np.asarray(integrated))
    fx, fy = field
    return ops.r2cnn_contrast_scores(
        values, boxes, (fx.stride, fx.offset, fy.stride, fy.offset), ring
    ).numpy()
