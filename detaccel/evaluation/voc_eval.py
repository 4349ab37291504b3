"""PASCAL VOC detection average precision, as computed by the official devkit.

A detection is matched to the ground-truth box of its class it overlaps most
(IoU computed with the devkit's ``+1`` pixel widths). With IoU >= 0.5 it is a
true positive if that object is not yet matched, a false positive if it is
(a duplicate), and neither if the object is ``difficult`` (or crowd);
otherwise it is a false positive. Detections are taken in decreasing score
order (ties in input order). Difficult objects do not count as positives.

Two AP definitions: the VOC2007 11-point interpolated AP (``use_07_metric``)
and the area under the interpolated precision/recall curve used from VOC2010
on. A class without (non-difficult) ground truth has AP ``nan`` and is left
out of the mAP.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from detaccel.data.records import ImageRecord
from detaccel.evaluation.detections import DetectionsInput, align_detections
from detaccel.evaluation.overlaps import pairwise_iou

# The recall thresholds of the 11-point metric exactly as the devkit's
# MATLAB ``0:0.1:1`` evaluates them (the first half as k*0.1, the second as
# 1 - (10-k)*0.1), so that recalls lying on a threshold are treated alike.
VOC07_RECALL_THRESHOLDS = tuple(k * 0.1 if k <= 5 else 1.0 - (10 - k) * 0.1 for k in range(11))


def voc_ap(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool = False) -> float:
    """Average precision from a precision/recall curve (in detection order)."""
    recall = np.asarray(recall, np.float64)
    precision = np.asarray(precision, np.float64)
    if use_07_metric:
        points = [precision[recall >= t].max(initial=0.0) for t in VOC07_RECALL_THRESHOLDS]
        return float(np.mean(points))
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[steps] - mrec[steps - 1]) * mpre[steps]))


def class_precision_recall(
    records: Sequence[ImageRecord],
    detections: DetectionsInput,
    label: int,
    iou_threshold: float = 0.5,
) -> tuple[np.ndarray, np.ndarray, int]:
    """``(recall, precision, num_positives)`` of one class, one point per detection in score order."""
    aligned = align_detections(records, detections)
    # Ground-truth objects of the class are numbered across images; each detection
    # keeps its score, its best overlap and the number of that best object.
    scores, overlap, match, ignored = [], [], [], []
    offset = 0
    for record, dets in zip(records, aligned, strict=True):
        is_class = record.labels == label
        gt_boxes = record.boxes[is_class]
        ignored.append(record.ignored[is_class])
        mine = dets.labels == label
        if mine.any():
            scores.append(dets.scores[mine])
            if len(gt_boxes):
                iou = pairwise_iou(dets.boxes[mine], gt_boxes)
                match.append(offset + iou.argmax(axis=1))
                overlap.append(iou.max(axis=1))
            else:
                match.append(np.zeros(int(mine.sum()), np.int64))
                overlap.append(np.full(int(mine.sum()), -np.inf))
        offset += len(gt_boxes)
    ignored = np.concatenate(ignored) if ignored else np.zeros(0, bool)
    num_positives = int((~ignored).sum())
    if not scores:
        return np.zeros(0), np.zeros(0), num_positives

    order = np.argsort(-np.concatenate(scores), kind="stable")
    overlap = np.concatenate(overlap)[order]
    match = np.concatenate(match)[order]
    hit = overlap >= iou_threshold
    hit_ignored = hit & ignored[match] if len(ignored) else np.zeros_like(hit)
    # The first hit on an object (in score order) is a true positive; later ones are duplicates.
    candidates = np.flatnonzero(hit & ~hit_ignored)
    tp = np.zeros(len(order))
    if candidates.size:
        _, first = np.unique(match[candidates], return_index=True)
        tp[candidates[first]] = 1.0
    fp = (~hit_ignored).astype(np.float64) - tp
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    recall = tp / num_positives if num_positives else np.full(len(tp), np.nan)
    precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return recall, precision, num_positives


def evaluate_voc(
    records: Sequence[ImageRecord],
    detections: DetectionsInput,
    class_names: Sequence[str],
    *,
    use_07_metric: bool = False,
    iou_threshold: float = 0.5,
) -> dict[str, Any]:
    """VOC AP of every class and their mean.

    Args:
        records: ground truth, one record per image.
        detections: per image, boxes/scores/labels (see :func:`align_detections`).
        class_names: the class of each label.
        use_07_metric: VOC2007 11-point AP instead of the area metric of VOC2010+.

    Returns:
        ``{"metric": "voc07" | "voc10", "iou_threshold", "mAP", "AP": {class: ap},
        "recall": {class: final recall}, "num_positives": {class: n}, "num_detections": {class: n}}``;
        classes without positives have AP and recall ``nan`` and are left out of ``mAP``.
    """
    aligned = align_detections(records, detections)
    result: dict[str, Any] = {
        "metric": "voc07" if use_07_metric else "voc10",
        "iou_threshold": float(iou_threshold),
        "mAP": math.nan,
        "AP": {},
        "recall": {},
        "num_positives": {},
        "num_detections": {},
    }
    for label, name in enumerate(class_names):
        recall, precision, num_positives = class_precision_recall(records, aligned, label, iou_threshold)
        if num_positives == 0:
            ap = final_recall = math.nan
        else:
            ap = voc_ap(recall, precision, use_07_metric)
            final_recall = float(recall[-1]) if recall.size else 0.0
        result["AP"][name] = ap
        result["recall"][name] = final_recall
        result["num_positives"][name] = num_positives
        result["num_detections"][name] = int(recall.size)
    scored = [ap for ap in result["AP"].values() if not math.isnan(ap)]
    if scored:
        result["mAP"] = float(np.mean(scored))
    return result
