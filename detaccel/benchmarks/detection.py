"""Detection benchmark: detectors x proposal generators on one dataset split.

Each (detector, generator) pair runs every image end to end under a
:class:`~detaccel.profiling.StageTimer` — decode, preprocess, backbone,
proposals, roi_features, head, predictor, postprocess — and is scored with
VOC07 mAP, COCO-style AP and proposal recall. R²-CNN proposals come from the
detector's own conv map (SPPnet, Fast R-CNN), so they cost no extra backbone
pass; R-CNN, which has no shared map, runs its backbone on the whole image for
them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
from tqdm import tqdm

from detaccel.benchmarks.memory import PeakMemory
from detaccel.config.schema import Config
from detaccel.data import ImageRecord, read_image
from detaccel.data.transforms import batch_images
from detaccel.engine.data import test_transform
from detaccel.engine.evaluator import detection_options
from detaccel.evaluation import Detections, evaluate_coco, evaluate_voc, proposal_recall
from detaccel.models.detector import RegionDetector
from detaccel.profiling import StageTimer, stage
from detaccel.proposals import GeneratorBase, finalize_proposals
from detaccel.proposals.r2cnn import R2CNN
from detaccel.proposals.receptive_field import UnsupportedLayerError, receptive_fields


@dataclass
class LoadedDetector:
    """A trained detector ready to run: its name in reports, configuration, model and classes."""

    name: str
    config: Config
    model: RegionDetector
    class_names: tuple[str, ...]


def model_device(detector: LoadedDetector) -> torch.device:
    return next(detector.model.parameters()).device


def feature_r2cnn(detector: LoadedDetector, params: Mapping[str, Any]) -> R2CNN:
    """An R²-CNN generator reading ``detector``'s own last conv map (its receptive field computed)."""
    body = getattr(detector.model.backbone, "body", detector.model.backbone)
    try:
        field = receptive_fields(body)
    except UnsupportedLayerError as error:
        raise ValueError(
            f"r2cnn on detector {detector.name!r}: the receptive field of its backbone cannot be computed "
            f"({error}); give r2cnn a receptive_field"
        ) from None
    options = {"receptive_field": field, "device": model_device(detector), **params, "backbone": None}
    return R2CNN(**options)


class ProfiledDetection:
    """Runs one detector with one proposal generator on single images, stage by stage."""

    def __init__(self, detector: LoadedDetector, generator: GeneratorBase) -> None:
        self.detector, self.generator = detector, generator
        config = detector.config
        self.transform = test_transform(config)
        # R²-CNN reads the map at data.test_scale (multi-scale testing includes it).
        self.primary = self.transform.resize.scales.index(config.data.test_scale)
        limits = (config.proposals.max_test, generator.max_proposals)
        self.max_proposals = min(limit for limit in limits if limit is not None)
        self.from_features = isinstance(generator, R2CNN) and generator.network is None
        self.device = model_device(detector)
        self.options = detection_options(config)

    @torch.no_grad()
    def __call__(self, record: ImageRecord) -> tuple[Detections, np.ndarray]:
        """Detections of one image and its proposals (original pixels)."""
        model = self.detector.model
        with stage("decode"):
            rgb = read_image(record.file_path)
        with stage("preprocess"):
            samples = self.transform(rgb)
            batches = [batch_images([torch.from_numpy(s.image)], model.size_divisibility) for s in samples]
            images = [batch.to(self.device, non_blocking=True) for batch, _ in batches]
        shared = [model.shared_features(batch) for batch in images]
        primary, sizes = samples[self.primary], batches[self.primary][1]
        if self.from_features and model.roi_features.per_region:
            with stage("backbone"):
                feature_map = model.backbone(images[self.primary])
        else:
            feature_map = shared[self.primary]
        with stage("proposals"):
            if self.from_features:
                raw = self.generator.boxes_from_features(feature_map)[0]
                boxes, _ = finalize_proposals(
                    raw, None, sizes[0], min_size=self.generator.min_size, max_proposals=self.max_proposals
                )
                boxes = boxes / primary.scale
            else:
                result = self.generator.generate(
                    cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), image_id=record.image_id
                )
                boxes = result.boxes[: self.max_proposals]
        boxes_t = torch.from_numpy(np.ascontiguousarray(boxes, dtype=np.float32)).to(self.device)
        out_boxes, scores, labels = model.detect_multiscale(
            shared, [s.scale for s in samples], boxes_t, (record.height, record.width), **self.options
        )
        return Detections(out_boxes.cpu(), scores.cpu(), labels.cpu()), boxes


def run_pair(
    detector: LoadedDetector,
    generator_name: str,
    generator: GeneratorBase,
    records: Sequence[ImageRecord],
    warmup: int = 1,
    progress: bool = True,
) -> tuple[dict[str, Any], StageTimer]:
    """Profile and score one (detector, generator) pair; returns its figures and timer."""
    pipeline = ProfiledDetection(detector, generator)
    device = model_device(detector)
    timer = StageTimer(device=device, warmup=warmup)
    detections: dict[Any, Detections] = {}
    proposals: dict[Any, np.ndarray] = {}
    warm = list(records[:warmup])
    label = f"{detector.name} + {generator_name}"
    with timer.activate(), PeakMemory(device) as peak:
        started = time.perf_counter()
        for record in tqdm(warm + list(records), desc=label, unit="img", disable=not progress, leave=False):
            with timer.image():
                result, boxes = pipeline(record)
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
