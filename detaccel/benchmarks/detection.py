"""Detection benchmark: detectors x proposal generators on one dataset split.

Each (detector, generator) pair runs every image end to end through
:meth:`~detaccel.models.RegionDetector.predict` under a
:class:`~detaccel.profiling.StageTimer` — decode, preprocess, backbone,
proposals, roi_features, head, predictor, postprocess — and is scored with
VOC07 mAP, COCO-style AP and proposal recall. R²-CNN proposals come from the
detector's own conv map (SPPnet, Fast R-CNN), so they cost no extra backbone
pass; R-CNN, which has no shared map, runs its backbone on the whole image for
them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from detaccel.benchmarks.memory import PeakMemory
from detaccel.config.schema import Config
from detaccel.data import ImageRecord, read_image
from detaccel.evaluation import Detections, evaluate_coco, evaluate_voc, proposal_recall
from detaccel.models.detector import RegionDetector
from detaccel.profiling import StageTimer, stage


@dataclass
class LoadedDetector:
    """A trained detector ready to run: its name in reports, configuration, model and classes."""

    name: str
    config: Config
    model: RegionDetector
    class_names: tuple[str, ...]


def detect_image(model: RegionDetector, record: ImageRecord) -> tuple[Detections, np.ndarray]:
    """Decode one record's image and run the detector's whole pipeline on it (proposals included)."""
    with stage("decode"):
        image = read_image(record.file_path)
    (prediction,) = model.predict([image], image_ids=[record.image_id])
    return Detections(prediction.boxes, prediction.scores, prediction.labels), prediction.proposals


def run_pair(
    detector: LoadedDetector,
    generator_name: str,
    records: Sequence[ImageRecord],
    warmup: int = 1,
    progress: bool = True,
) -> tuple[dict[str, Any], StageTimer]:
    """Profile and score the detector with the generator now in its proposal slot (reported as
    ``generator_name``); returns the pair's figures and timer."""
    model = detector.model.eval()
    device = model.device
    timer = StageTimer(device=device, warmup=warmup)
    detections: dict[Any, Detections] = {}
    proposals: dict[Any, np.ndarray] = {}
    warm = list(records[:warmup])
    label = f"{detector.name} + {generator_name}"
    with timer.activate(), PeakMemory(device) as peak:
        started = time.perf_counter()
        for record in tqdm(warm + list(records), desc=label, unit="img", disable=not progress, leave=False):
            with timer.image():
                result, boxes = detect_image(model, record)
            detections[record.image_id], proposals[record.image_id] = result, boxes
        wall = time.perf_counter() - started
    summary = timer.summary()
    voc = evaluate_voc(records, detections, detector.class_names, use_07_metric=True)
    coco = evaluate_coco(records, detections, detector.class_names)
    recall = proposal_recall(records, proposals, ar_limits=(100, 300, 1000))
    total = summary["total"].mean if summary else float("nan")
    figures = {
        "detector": detector.name,
        "family": detector.config.model.family,
        "generator": generator_name,
        "proposal_source": model.proposal_generator.describe(),
        "images": len(records),
        "voc07_mAP": voc["mAP"],
        "coco_AP": coco["AP"],
        "coco_AP50": coco["AP50"],
        "proposals_per_image": recall["mean_proposals"],
        "recall@0.50": recall["recall@0.50"],
        "recall@0.70": recall["recall@0.70"],
        "AR@100": recall["AR@100"],
        "AR@1000": recall["AR@1000"],
        "seconds_per_image": total,
        "images_per_second": 1.0 / total if total > 0 else float("nan"),
        "wall_seconds": wall,
        "peak_memory_mb": peak.megabytes,
        "device": str(device),
        "stages": {name: stats.as_dict() for name, stats in summary.items()},
        "recall_curve": recall["recall_curve"],
    }
    return figures, timer
