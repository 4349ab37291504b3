"""Dense multi-scale, multi-aspect sliding windows: the baseline generator."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from detaccel.proposals._checks import check_float, check_numbers
from detaccel.proposals.base import GeneratorBase, ImageId, RawProposals


def window_positions(length: int, window: int, step: int) -> np.ndarray:
    """First pixel of each window along one axis.

    Windows start at ``0, step, 2 * step, ...`` while they fit; when the last
    one stops short of the image's end, one more is aligned with the end, so
    ``ceil((length - window) / step) + 1`` windows cover the axis. A window
    longer than the image gives one position, 0 (it is clipped later).
    """
    if window >= length:
        return np.zeros(1, np.int64)
    count = math.ceil((length - window) / step) + 1
    return np.minimum(np.arange(count, dtype=np.int64) * step, length - window)


def window_sizes(scale: float, aspect_ratio: float) -> tuple[int, int]:
    """Whole-pixel ``(width, height)`` of a window of area ``scale**2``, aspect ratio ``width / height``."""
    root = math.sqrt(aspect_ratio)
    return max(1, round(scale * root)), max(1, round(scale / root))


class SlidingWindow(GeneratorBase):
    """Every window of every scale and aspect ratio on a regular grid; no scores.

    A window of scale ``s`` and aspect ratio ``a`` is ``round(s * sqrt(a))``
    by ``round(s / sqrt(a))`` pixels; it moves by ``stride_fraction`` of its
    width horizontally and of its height vertically (at least one pixel), see
    :func:`window_positions`. Order: scale, then aspect ratio (as given), then
    rows top to bottom, then columns left to right. Windows larger than the
    image are clipped to it, so several may coincide and be deduplicated.

    Args:
        scales: window scales in pixels (square-root of the area).
        aspect_ratios: width / height ratios.
        stride_fraction: step as a fraction of the window side, in ``(0, 1]``.
    """

    name = "sliding_window"

    def __init__(
        self,
        *,
        scales: tuple[float, ...] = (32, 64, 128, 256, 512),
        aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0),
        stride_fraction: float = 0.5,
        max_proposals: int | None = None,
        min_size: float = 1.0,
    ) -> None:
        super().__init__(max_proposals=max_proposals, min_size=min_size)
        self.scales = check_numbers("scales", scales)
        self.aspect_ratios = check_numbers("aspect_ratios", aspect_ratios)
        self.stride_fraction = check_float("stride_fraction", stride_fraction, strict=True)
        if self.stride_fraction > 1:
            raise ValueError(f"stride_fraction: expected a number in (0, 1], got {stride_fraction!r}")

    def windows(self, height: int, width: int) -> np.ndarray:
        """All windows of an image of this size, inclusive boxes ``[N, 4]`` (before post-processing)."""
        groups = []
        for scale in self.scales:
            for ratio in self.aspect_ratios:
                w, h = window_sizes(scale, ratio)
                xs = window_positions(width, w, max(1, round(self.stride_fraction * w)))
                ys = window_positions(height, h, max(1, round(self.stride_fraction * h)))
                y0, x0 = np.meshgrid(ys, xs, indexing="ij")
                x0, y0 = x0.ravel(), y0.ravel()
                groups.append(np.stack([x0, y0, x0 + w - 1, y0 + h - 1], axis=1))
        return np.concatenate(groups).astype(np.float64)

    def _propose(self, image: np.ndarray, features: Any | None, image_id: ImageId | None) -> RawProposals:
        return RawProposals(self.windows(*image.shape[:2]))
