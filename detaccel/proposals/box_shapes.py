"""Typical object shapes of a training set: k-means of box sizes, for R²-CNN's local search.

:func:`typical_shapes` clusters ``(width, height)`` pairs in log space (so
that a 20 px and a 40 px box are as far apart as 200 px and 400 px);
:func:`training_box_shapes` gives the shapes of a split's boxes as the network
sees them (each image resized by the test-time rule); :func:`resolve_shapes`
records the shorter side they were measured at (``shapes_scale``) and
:func:`shapes_at_scale` rescales them when the network input's shorter side
changes (another test scale).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from detaccel.data.records import ImageRecord
from detaccel.data.transforms import resize_scale


def typical_shapes(sizes: np.ndarray, k: int, iterations: int = 50) -> tuple[tuple[float, float], ...]:
    """``k`` (or fewer, for fewer distinct sizes) ``(width, height)`` centres of ``sizes`` ``[N, 2]``.

    k-means on ``log(size)``, started at the area quantiles (deterministic);
    centres are returned by increasing area, in the units of ``sizes``.
    """
    if k < 1:
        raise ValueError(f"num_shapes: expected at least 1, got {k}")
    sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, 2)
    sizes = sizes[np.all(np.isfinite(sizes) & (sizes > 0), axis=1)]
    if len(sizes) == 0:
        raise ValueError("box shapes: no box with a positive width and height")
    points = np.log(sizes)
    order = np.argsort(points.sum(axis=1), kind="stable")
    k = min(k, len(np.unique(points, axis=0)))
    centres = points[order[((np.arange(k) + 0.5) / k * len(points)).astype(int)]]
    for _ in range(iterations):
        nearest = np.argmin(((points[:, None, :] - centres[None]) ** 2).sum(axis=2), axis=1)
        moved = np.stack(
            [points[nearest == j].mean(axis=0) if np.any(nearest == j) else centres[j] for j in range(k)]
        )
        if np.allclose(moved, centres):
            break
        centres = moved
    centres = centres[np.argsort(centres.sum(axis=1), kind="stable")]
    return tuple((float(w), float(h)) for w, h in np.exp(centres).round(1))


def training_box_shapes(
    records: Iterable[ImageRecord], test_scale: int | None, max_size: int | None, k: int
) -> tuple[tuple[float, float], ...]:
    """:func:`typical_shapes` of the records' boxes, in pixels of images resized to ``test_scale``.

    ``test_scale`` ``None``: in the images' own pixels (a generator reading images at native size).
    """
    sizes = []
    for record in records:
        if len(record.boxes) == 0:
            continue
        scale = 1.0
        if test_scale is not None:
            scale = resize_scale(record.height, record.width, test_scale, max_size or 10**9)
        boxes = np.asarray(record.boxes, dtype=np.float64)
        sizes.append((boxes[:, 2:] - boxes[:, :2] + 1.0) * scale)
    if not sizes:
        raise ValueError("box shapes: the training split has no boxes")
    return typical_shapes(np.concatenate(sizes), k)


AUTO = "auto"
DEFAULT_NUM_SHAPES = 4
# The shorter side (pixels) of the network input that resolved shapes were measured at.
SHAPES_SCALE = "shapes_scale"


def resolve_shapes(
    params: dict, records: Iterable[ImageRecord], test_scale: int | None, max_size: int | None
) -> bool:
    """Replace, in place, R²-CNN's ``shapes: auto`` by the records' ``num_shapes`` typical shapes.

    Shapes are measured on images resized to ``test_scale`` (``None``: native
    size), which is recorded as ``shapes_scale`` (see :func:`shapes_at_scale`).
    Returns whether it did. ``num_shapes`` (default 4) is removed with it; given
    without ``shapes: auto`` it is an error.
    """
    if params.get("shapes") != AUTO:
        if params.get("num_shapes") is not None:
            raise ValueError("r2cnn: num_shapes needs shapes: auto")
        return False
    k = params.pop("num_shapes", None)
    k = DEFAULT_NUM_SHAPES if k is None else k
    if isinstance(k, bool) or not isinstance(k, int):
        raise ValueError(f"r2cnn: num_shapes: expected an integer, got {k!r}")
    shapes = training_box_shapes(records, test_scale, max_size, k)
    params["shapes"] = [list(shape) for shape in shapes]
    if test_scale is not None:
        params[SHAPES_SCALE] = int(test_scale)
    return True


def shapes_at_scale(params: Mapping[str, Any], input_scale: int | None) -> dict[str, Any]:
    """A copy of R²-CNN ``params`` with ``shapes`` measured at ``shapes_scale`` rescaled to ``input_scale``.

    ``input_scale`` is the shorter side the network input is resized to at test
    time (``None``: unknown, shapes kept as they are). ``shapes_scale`` is removed
    (R²-CNN takes pixels). The factor is the ratio of shorter sides: exact unless
    ``max_size`` caps an image's resize.
    """
    params = dict(params)
    measured = params.pop(SHAPES_SCALE, None)
    if measured is None:
        return params
    if isinstance(measured, bool) or not isinstance(measured, int) or measured <= 0:
        raise ValueError(f"r2cnn: {SHAPES_SCALE}: expected a positive integer, got {measured!r}")
    shapes = params.get("shapes")
    if input_scale is None or input_scale == measured or isinstance(shapes, str) or not shapes:
        return params
    factor = input_scale / measured
    params["shapes"] = [[round(float(w) * factor, 1), round(float(h) * factor, 1)] for w, h in shapes]
    return params
