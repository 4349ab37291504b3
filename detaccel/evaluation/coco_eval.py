"""COCO-style box AP (AP, AP50, AP75, APs, APm, APl and AR) through pycocotools' ``COCOeval``.

Works for COCO datasets (the ground truth as written in the annotation file)
and for VOC-format datasets (records converted in memory: category ids
``1..K``, ``area`` the box area). Boxes go to COCO as ``[x1, y1, x2 - x1 + 1,
y2 - y1 + 1]``, the inverse of how they were loaded. ``difficult`` objects
become ``iscrowd`` regions, COCO's way of ignoring objects: detections on
them count neither way.

Ids: results carry the dataset's own ids, so that pycocotools run directly
on the annotation file and a results file scores it as :func:`evaluate_coco`
does. A COCO record's image id is used as is, and a label's category id is
the dataset's ``category_ids[label]`` (the file's own ids, gaps and all).
VOC image names become integers when every name is digits (underscores
removed), e.g. ``000005`` -> 5 and ``2008_000002`` -> 2008000002; otherwise
images are numbered ``1..N`` in record order; VOC category ids are ``1..K``.

Only the categories of the class list are scored (pycocotools' ``catIds``);
categories the dataset left out (see
:attr:`~detaccel.data.records.DetectionDataset.left_out_categories`) are not
part of the mean. The ids scored are returned with the metrics.
"""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from detaccel.data.coco import coco_api
from detaccel.data.records import DetectionDataset, ImageId, ImageRecord
from detaccel.evaluation.detections import DetectionsInput, align_detections

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def coco_image_ids(records: Sequence[ImageRecord]) -> dict[ImageId, int]:
    """The integer COCO image id of each record (see the module docstring)."""
    ids = [record.image_id for record in records]
    if all(isinstance(i, int) for i in ids):
        return {i: i for i in ids}
    digits = [str(i).replace("_", "") for i in ids]
    if all(d.isdigit() for d in digits):
        numbers = [int(d) for d in digits]
        if len(set(numbers)) == len(numbers):
            return dict(zip(ids, numbers, strict=True))
    return {image_id: position for position, image_id in enumerate(ids, start=1)}


def coco_box(box: Sequence[float]) -> list[float]:
    """Inclusive ``(x1, y1, x2, y2)`` to COCO ``[x, y, width, height]``."""
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1, y1, x2 - x1 + 1.0, y2 - y1 + 1.0]


def records_to_coco(
    records: Sequence[ImageRecord],
    class_names: Sequence[str],
    category_ids: Sequence[int] | None = None,
) -> dict[str, Any]:
    """A COCO ground-truth dataset dict built from records."""
    category_ids = _category_ids(class_names, category_ids)
    image_ids = coco_image_ids(records)
    images, annotations = [], []
    for record in records:
        image_id = image_ids[record.image_id]
        images.append(
            {"id": image_id, "file_name": record.file_path, "width": record.width, "height": record.height}
        )
        for box, label, difficult, crowd in zip(
            record.boxes, record.labels, record.difficult, record.crowd, strict=True
        ):
            bbox = coco_box(box)
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": category_ids[int(label)],
                    "bbox": bbox,
                    "area": bbox[2] * bbox[3],
                    "iscrowd": int(bool(crowd)),
                    "difficult": int(bool(difficult)),
                }
            )
    categories = [{"id": c, "name": n} for c, n in zip(category_ids, class_names, strict=True)]
    return {"images": images, "annotations": annotations, "categories": categories}


def dataset_ground_truth(dataset: DetectionDataset) -> dict[str, Any]:
    """A dataset's COCO ground truth: as written for COCO, converted from records for VOC."""
    if dataset.coco_annotations is not None:
        return dataset.coco_annotations
    return records_to_coco(dataset.records, dataset.class_names, dataset.category_ids)


def detections_to_coco(
    records: Sequence[ImageRecord],
    detections: DetectionsInput,
    category_ids: Sequence[int],
) -> list[dict[str, Any]]:
    """COCO results (``image_id``, ``category_id``, ``bbox``, ``score``) for per-image detections."""
    image_ids = coco_image_ids(records)
    results = []
    for record, dets in zip(records, align_detections(records, detections), strict=True):
        image_id = image_ids[record.image_id]
        if len(dets.labels) and not 0 <= int(dets.labels.min()) <= int(dets.labels.max()) < len(category_ids):
            raise ValueError(
                f"image {record.image_id!r}: detection labels {int(dets.labels.min())}.."
                f"{int(dets.labels.max())} do not index the {len(category_ids)} classes of the dataset"
            )
        for box, score, label in zip(dets.boxes, dets.scores, dets.labels, strict=True):
            results.append(
                {
                    "image_id": image_id,
                    "category_id": int(category_ids[int(label)]),
                    "bbox": coco_box(box),
                    "score": float(score),
                }
            )
    return results


def _difficult_as_crowd(ground_truth: dict[str, Any]) -> dict[str, Any]:
    annotations = [
        {**ann, "iscrowd": 1} if ann.get("difficult") and not ann.get("iscrowd") else ann
        for ann in ground_truth.get("annotations", [])
    ]
    return {**ground_truth, "annotations": annotations}


def evaluate_coco(
    records: Sequence[ImageRecord],
    detections: DetectionsInput,
    class_names: Sequence[str],
    *,
    ground_truth: dict[str, Any] | None = None,
    category_ids: Sequence[int] | None = None,
) -> dict[str, Any]:
    """COCO box AP of per-image detections on ``records``.

    Args:
        records: the images to evaluate on (others in ``ground_truth`` are left out).
        detections: per-image boxes/scores/labels (see :func:`align_detections`).
        class_names: the class of each label.
        ground_truth: a COCO dataset dict (see :func:`dataset_ground_truth`);
            built from ``records`` when not given.
        category_ids: the COCO category id of each label; ``1..K`` by default.

    Returns:
        ``{"AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs",
        "ARm", "ARl", "AP_per_class": {class: ap}, "category_ids": [...], "summary": text}``
        (``category_ids``: the ids scored, in label order); a value with nothing to
        measure (pycocotools' -1) is ``nan``.
    """
    category_ids = _category_ids(class_names, category_ids)
    results = detections_to_coco(records, detections, category_ids)
    return evaluate_coco_results(
        records, results, class_names, ground_truth=ground_truth, category_ids=category_ids
    )


def evaluate_coco_results(
    records: Sequence[ImageRecord],
    results: Sequence[dict[str, Any]],
    class_names: Sequence[str],
    *,
    ground_truth: dict[str, Any] | None = None,
    category_ids: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Like :func:`evaluate_coco`, for COCO results (``image_id``, ``category_id``, ``bbox``, ``score``)."""
    from pycocotools.cocoeval import COCOeval

    category_ids = _category_ids(class_names, category_ids)
    if ground_truth is None:
        ground_truth = records_to_coco(records, class_names, category_ids)
    coco_gt = coco_api(_difficult_as_crowd(ground_truth))
    image_ids = coco_image_ids(records)

    with contextlib.redirect_stdout(io.StringIO()):
        if results:
            coco_dt = coco_gt.loadRes(list(results))
        else:
            gt = coco_gt.dataset
            coco_dt = coco_api({"images": gt["images"], "categories": gt["categories"], "annotations": []})
        evaluator = COCOeval(coco_gt, coco_dt, "bbox")
        evaluator.params.imgIds = sorted(image_ids.values())
        evaluator.params.catIds = category_ids
        evaluator.evaluate()
        evaluator.accumulate()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        evaluator.summarize()

    result: dict[str, Any] = {
        name: (float(value) if value > -1 else math.nan)
        for name, value in zip(STAT_NAMES, evaluator.stats, strict=True)
    }
    precision = evaluator.eval["precision"]  # [iou, recall, class, area, max dets]
    per_class = {}
    for k, name in enumerate(class_names):
        values = precision[:, :, k, 0, -1]
        values = values[values > -1]
        per_class[name] = float(np.mean(values)) if values.size else math.nan
    result["AP_per_class"] = per_class
    result["category_ids"] = list(category_ids)
    result["summary"] = summary.getvalue().rstrip()
    return result


def _category_ids(class_names: Sequence[str], category_ids: Sequence[int] | None) -> list[int]:
    if category_ids is None:
        return list(range(1, len(class_names) + 1))
    if len(category_ids) != len(class_names):
        raise ValueError(f"{len(category_ids)} category ids for {len(class_names)} classes")
    return [int(c) for c in category_ids]
