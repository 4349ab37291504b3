"""Box overlaps in the inclusive pixel convention of the VOC devkit."""

from __future__ import annotations

import numpy as np


def pairwise_iou(boxes_a: np.ndarray, boxes_b: np.ndarray, pixel_offset: float = 1.0) -> np.ndarray:
    """IoU of each box of ``boxes_a`` ``[A, 4]`` with each box of ``boxes_b`` ``[B, 4]``: float64 ``[A, B]``.

    Widths and heights are ``x2 - x1 + pixel_offset``: ``1`` for inclusive
    pixel boxes as in the devkit (the default), ``0`` for continuous boxes.
    Boxes that do not overlap with a positive width and height have IoU 0.
    """
    a = np.asarray(boxes_a, np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + pixel_offset
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + pixel_offset
    overlap = (iw > 0) & (ih > 0)
    inter = np.where(overlap, iw * ih, 0.0)
    area_a = (a[:, 2] - a[:, 0] + pixel_offset) * (a[:, 3] - a[:, 1] + pixel_offset)
    area_b = (b[:, 2] - b[:, 0] + pixel_offset) * (b[:, 3] - b[:, 1] + pixel_offset)
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(overlap, inter / union, 0.0)
    return iou
