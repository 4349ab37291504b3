"""Image conversion and resizing shared by the proposal generators.

Generators work on 8-bit BGR images (``[H, W, 3]`` uint8, as ``cv2.imread``
decodes them). :func:`to_bgr8` converts the other layouts and depths a caller
may hold; :func:`resize_image` (the project's one resize rule,
:mod:`detaccel.data.transforms`) and :func:`rescale_boxes` run a generator on a
resized copy and bring its boxes back.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from detaccel.data import transforms


def to_bgr8(image: np.ndarray) -> np.ndarray:
    """Return ``image`` as a contiguous ``[H, W, 3]`` uint8 BGR array.

    Accepted: ``[H, W]`` or ``[H, W, 1]`` grayscale, ``[H, W, 3]`` BGR,
    ``[H, W, 4]`` BGRA (alpha dropped); uint8, uint16 (the high byte is kept,
    as ``cv2.imread`` does for a 16-bit file read in color) or float with
    values in ``[0, 1]`` (scaled by 255, clipped).

    Raises:
        TypeError: not a numpy array, or an unsupported dtype.
        ValueError: an unsupported shape or an empty image.
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image: expected a numpy array, got {type(image).__name__}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise ValueError(f"image: expected [H, W], [H, W, 1], [H, W, 3] or [H, W, 4], got {image.shape}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image: empty image of shape {image.shape}")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype.kind == "f":
        image = np.clip(np.nan_to_num(image.astype(np.float32), nan=0.0) * 255.0 + 0.5, 0, 255)
        image = image.astype(np.uint8)
    elif image.dtype != np.uint8:
        raise TypeError(f"image: expected uint8, uint16 or float, got {image.dtype}")
    if image.ndim == 2:
        image = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(image)


def resize_image(image: np.ndarray, scale: float) -> tuple[np.ndarray, tuple[float, float]]:
    """Resize by ``scale`` (the project's one rule, :func:`detaccel.data.transforms.resize_image`).

    Returns the resized image and the exact per-axis factors ``(sx, sy)``
    (resized / original) for :func:`rescale_boxes`.
    """
    height, width = image.shape[:2]
    resized = transforms.resize_image(image, scale)
    return resized, (resized.shape[1] / width, resized.shape[0] / height)


def rescale_boxes(boxes: np.ndarray, factors: tuple[float, float]) -> np.ndarray:
    """Map inclusive pixel boxes from a resized image back to the original.

    Pixel ``x1`` starts at edge ``x1`` and pixel ``x2`` ends at edge ``x2 + 1``;
    the edges scale by ``1 / sx``, so ``x1 -> x1 / sx`` and
    ``x2 -> (x2 + 1) / sx - 1`` (likewise in y).
    """
    sx, sy = factors
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if math.isclose(sx, 1.0) and math.isclose(sy, 1.0):
        return boxes
    scale = np.array([sx, sy, sx, sy])
    return np.concatenate([boxes[:, :2] / scale[:2], (boxes[:, 2:] + 1.0) / scale[2:] - 1.0], axis=1)


def rects_to_boxes(rects: np.ndarray | None) -> np.ndarray:
    """OpenCV ``(x, y, w, h)`` rectangles to inclusive ``(x1, y1, x2, y2)`` boxes, float64 ``[N, 4]``."""
    if rects is None or len(rects) == 0:
        return np.zeros((0, 4), np.float64)
    rects = np.asarray(rects, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:] - 1.0], axis=1)
