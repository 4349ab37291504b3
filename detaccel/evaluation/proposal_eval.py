"""Quality of region proposals: recall at IoU thresholds, recall against the number kept, average recall.

A ground-truth object is recalled by the top ``k`` proposals of its image at
IoU ``t`` when at least one of them overlaps it with IoU >= ``t`` (devkit
``+1`` pixel widths). Proposals are ranked by score when scores are given,
otherwise taken in the given order. Average recall (AR) is the mean recall
over IoU 0.50:0.05:0.95. Difficult and crowd objects are left out unless
asked for.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from detaccel.data.records import ImageId, ImageRecord
from detaccel.evaluation.detections import as_numpy
from detaccel.evaluation.overlaps import pairwise_iou

AR_LIMITS = (10, 100, 300, 1000)
AR_IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))
CURVE_LIMITS = (1, 2, 5, 10, 20, 50, 100, 200, 300, 500, 1000, 2000)

ProposalsLike = Any  # boxes [P, 4], or (boxes, scores)
ProposalsInput = Sequence[ProposalsLike] | Mapping[ImageId, ProposalsLike]


def _ranked(value: ProposalsLike) -> np.ndarray:
    if isinstance(value, tuple):
        boxes, scores = value
    else:
        boxes, scores = value, None
    boxes = as_numpy(boxes, np.float64).reshape(-1, 4)
    if scores is not None:
        scores = as_numpy(scores, np.float64).reshape(-1)
        if len(scores) != len(boxes):
            raise ValueError(f"{len(boxes)} proposals but {len(scores)} scores")
        boxes = boxes[np.argsort(-scores, kind="stable")]
    return boxes


def _align(records: Sequence[ImageRecord], proposals: ProposalsInput | None) -> list[np.ndarray]:
    if proposals is None:
        missing = [r.image_id for r in records if r.proposals is None]
        if missing:
            raise ValueError(f"{len(missing)} record(s) carry no proposals, e.g. image {missing[0]!r}")
        return [
            _ranked((r.proposals, r.proposal_scores) if r.proposal_scores is not None else r.proposals)
            for r in records
        ]
    if isinstance(proposals, Mapping):
        known = {r.image_id for r in records}
        unknown = [i for i in proposals if i not in known]
        if unknown:
            raise ValueError(f"proposals for {len(unknown)} image(s) not in the dataset, e.g. {unknown[0]!r}")
        return [
            _ranked(proposals[r.image_id]) if r.image_id in proposals else np.zeros((0, 4)) for r in records
        ]
    if len(proposals) != len(records):
        raise ValueError(f"{len(proposals)} proposal entries for {len(records)} images")
    return [_ranked(value) for value in proposals]


def proposal_recall(
    records: Sequence[ImageRecord],
    proposals: ProposalsInput | None = None,
    *,
    iou_thresholds: Sequence[float] = (0.5, 0.7),
    max_proposals: int | None = None,
    ar_limits: Sequence[int] = AR_LIMITS,
    curve_limits: Sequence[int] = CURVE_LIMITS,
    include_difficult: bool = False,
) -> dict[str, Any]:
    """Recall and average recall of proposals against the ground truth of ``records``.

    Args:
        records: ground truth, one record per image.
        proposals: per image, boxes ``[P, 4]`` or ``(boxes, scores)``, as a
            sequence aligned with ``records`` or a mapping from image id
            (missing images have none); ``None`` uses the records' own proposals.
        iou_thresholds: thresholds for ``recall@<t>``.
        max_proposals: keep at most this many per image for ``recall@<t>`` and ``AR``.
        ar_limits: numbers of proposals for ``AR@<k>``.
        curve_limits: numbers of proposals for the recall curve.
        include_difficult: count difficult objects as ground truth too (crowd never).

    Returns:
        ``{"num_images", "num_gt", "mean_proposals" (per image, before any cap),
        "max_proposals", "recall@<t>" ..., "AR" (with max_proposals),
        "AR@<k>" ..., "recall_curve": {"num_proposals": [...], "<t>": [...]}}``,
        recalls as fractions (``nan`` without ground truth).
    """
    ranked = _align(records, proposals)
    limits = sorted({*ar_limits, *curve_limits})
    # best[:, j] = best IoU of each object with the top limits[j] proposals; last column: max_proposals/all.
    best_rows = []
    for record, boxes in zip(records, ranked, strict=True):
        keep = ~record.crowd if include_difficult else ~record.ignored
        gt = record.boxes[keep]
        if not len(gt):
            continue
        row = np.zeros((len(gt), len(limits) + 1))
        if len(boxes):
            running = np.maximum.accumulate(pairwise_iou(gt, boxes), axis=1)
            columns = [min(k, len(boxes)) - 1 for k in limits]
            columns.append((min(max_proposals, len(boxes)) if max_proposals else len(boxes)) - 1)
            valid = np.array(columns) >= 0
            row[:, valid] = running[:, np.array(columns)[valid]]
        best_rows.append(row)
    best = np.concatenate(best_rows) if best_rows else np.zeros((0, len(limits) + 1))

    def recall(column: np.ndarray, threshold: float) -> float:
        # The tolerance keeps an overlap computed as 0.6999999999999999 from missing IoU 0.7.
        return float(np.mean(column >= threshold - 1e-12)) if len(column) else math.nan

    def average_recall(column: np.ndarray) -> float:
        return float(np.mean([recall(column, t) for t in AR_IOU_THRESHOLDS])) if len(column) else math.nan

    result: dict[str, Any] = {
        "num_images": len(records),
        "num_gt": len(best),
        "mean_proposals": float(np.mean([len(b) for b in ranked])) if ranked else 0.0,
        "max_proposals": max_proposals,
    }
    for t in iou_thresholds:
        result[f"recall@{t:.2f}"] = recall(best[:, -1], t)
    result["AR"] = average_recall(best[:, -1])
    for k in ar_limits:
        result[f"AR@{k}"] = average_recall(best[:, limits.index(k)])
    curve: dict[str, list] = {"num_proposals": list(curve_limits)}
    for t in iou_thresholds:
        curve[f"{t:.2f}"] = [recall(best[:, limits.index(k)], t) for k in curve_limits]
    result["recall_curve"] = curve
    return result
