"""The post-processing every generator's output goes through.

Boxes follow the project's convention (see :mod:`detaccel.data.records`):
``(x1, y1, x2, y2)`` in 0-based pixels, *inclusive*, so a box is
``x2 - x1 + 1`` pixels wide and the image spans ``[0, W - 1] x [0, H - 1]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Two boxes are duplicates when all four coordinates agree after rounding to
# this grid (pixels). A tenth of a pixel is below any effect on pooling or
# overlap, yet keeps boxes that a generator really placed apart.
DEDUPE_STEP = 0.1


def _as_array(value: Any, dtype: type, name: str) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu().numpy()
    return np.asarray(value, dtype=dtype)


def finalize_proposals(
    boxes: Any,
    scores: Any | None,
    image_size: tuple[int, int],
    *,
    min_size: float = 1.0,
    max_proposals: int | None = None,
    dedupe_step: float | None = DEDUPE_STEP,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Clip, filter, deduplicate and cap raw proposals.

    Steps, in order:

    1. rows with a non-finite coordinate (or score) are dropped;
    2. with scores, boxes are sorted by decreasing score (stable); without,
       the generator's order is kept;
    3. boxes that lie entirely outside the image are dropped, the rest are
       clipped to ``[0, W - 1] x [0, H - 1]``;
    4. boxes narrower or shorter than ``min_size`` pixels (``x2 - x1 + 1``)
       are dropped, as are boxes with no positive width or height;
    5. duplicates (equal after rounding every coordinate to ``dedupe_step``
       pixels) are dropped, keeping the first; ``None`` disables this;
    6. the first ``max_proposals`` boxes are kept (``None``: all).

    Args:
        boxes: ``[N, 4]`` array-like (numpy or torch).
        scores: ``[N]`` or ``None``.
        image_size: ``(height, width)``.

    Returns:
        ``(boxes float32 [M, 4], scores float32 [M] or None)``.
    """
    height, width = image_size
    boxes = _as_array(boxes, np.float64, "boxes")
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes: expected shape [N, 4], got {boxes.shape}")
    if scores is not None:
        scores = _as_array(scores, np.float64, "scores").reshape(-1)
        if len(scores) != len(boxes):
            raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
    if min_size < 0:
        raise ValueError(f"min_size: expected a non-negative number, got {min_size}")
    if max_proposals is not None and max_proposals < 0:
        raise ValueError(f"max_proposals: expected a non-negative int or None, got {max_proposals}")

    keep = np.isfinite(boxes).all(axis=1)
    if scores is not None:
        keep &= np.isfinite(scores)
    index = np.flatnonzero(keep)
    if scores is not None:
        index = index[np.argsort(-scores[index], kind="stable")]
    boxes = boxes[index]

    inside = (
        (boxes[:, 2] >= 0) & (boxes[:, 0] <= width - 1) & (boxes[:, 3] >= 0) & (boxes[:, 1] <= height - 1)
    )
    index, boxes = index[inside], boxes[inside]
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, width - 1)
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, height - 1)

    widths = boxes[:, 2] - boxes[:, 0] + 1.0
    heights = boxes[:, 3] - boxes[:, 1] + 1.0
    big_enough = (widths >= min_size) & (heights >= min_size) & (widths > 0) & (heights > 0)
    index, boxes = index[big_enough], boxes[big_enough]

    if dedupe_step is not None and len(boxes) > 1:
        keys = np.ascontiguousarray(np.round(boxes / dedupe_step).astype(np.int64))
        # One opaque 32-byte value per row: equal rows are equal bytes (much faster than unique(axis=0)).
        _, first = np.unique(keys.view(np.dtype((np.void, keys.itemsize * 4))).ravel(), return_index=True)
        first.sort()
        index, boxes = index[first], boxes[first]

    if max_proposals is not None:
        index, boxes = index[:max_proposals], boxes[:max_proposals]
    out_scores = None if scores is None else scores[index].astype(np.float32)
    return boxes.astype(np.float32), out_scores
