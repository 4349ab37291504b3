"""Score detections on a loaded dataset with any of the supported metrics."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from detaccel.data.records import DetectionDataset
from detaccel.evaluation.coco_eval import dataset_ground_truth, evaluate_coco
from detaccel.evaluation.detections import DetectionsInput, align_detections
from detaccel.evaluation.voc_eval import evaluate_voc

METRICS = ("voc07", "voc10", "coco")


def default_metrics(dataset: DetectionDataset) -> tuple[str, ...]:
    """VOC datasets: both VOC metrics; COCO datasets: COCO AP."""
    return ("voc07", "voc10") if dataset.format == "voc" else ("coco",)


def evaluate_detections(
    dataset: DetectionDataset,
    detections: DetectionsInput,
    metrics: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """``{metric: result}`` for ``voc07`` (11-point VOC AP), ``voc10`` (area VOC AP) and ``coco``."""
    metrics = tuple(metrics) if metrics is not None else default_metrics(dataset)
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r} (expected one of {', '.join(METRICS)})")
    aligned = align_detections(dataset.records, detections)
    results: dict[str, dict[str, Any]] = {}
    for metric in metrics:
        if metric == "coco":
            results[metric] = evaluate_coco(
                dataset.records,
                aligned,
                dataset.class_names,
                ground_truth=dataset_ground_truth(dataset),
                category_ids=dataset.category_ids,
            )
        else:
            results[metric] = evaluate_voc(
                dataset.records, aligned, dataset.class_names, use_07_metric=metric == "voc07"
            )
    return results
