"""Detection benchmark: detectors x proposal generators on one dataset split.

Each (detector, generator) pair runs every image end to end through
:meth:`~detaccel.models.RegionDetector.predict` under a
:class:`~detaccel.profiling.StageTimer` — decode, preprocess, backbone,
proposals, roi_features, head, predictor, postprocess — and is scored with
VOC07 mAP, COCO-style AP and proposal recall. R²-CNN proposals come from the
detector's own conv map (SPPnet, Fast R-CNN), so they cost no extra backbone
pass; R-CNN, which has no shared map, runs its backbone on the whole image for
them. :func:`run_interleaved` runs several pairs on the same images taking
turns, for ratios that a change in the machine's load cannot bias.
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
    """A trained detector ready to run: its name in reports, configuration, model, classes and the
    generators a benchmark matrix runs it with (``None``: all of the matrix's)."""

    name: str
    config: Config
    model: RegionDetector
    class_names: tuple[str, ...]
    generators: list[str] | None = None


def detect_image(model: RegionDetector, record: ImageRecord) -> tuple[Detections, np.ndarray]:
    """Decode one record's image and run the detector's whole pipeline on it (proposals included)."""
    with stage("decode"):
        image = read_image(record.file_path)
    (prediction,) = model.predict([image], image_ids=[record.image_id])
    return Detections(prediction.boxes, prediction.scores, prediction.labels), prediction.proposals


class PairRun:
    """One (detector, generator) pair being profiled: its timer, detections and proposals per image.

    :meth:`step` runs one image under the pair's own timer, so that several pairs can
    take turns on the same images (:func:`run_interleaved`); :meth:`figures` scores them.
    """

    def __init__(self, detector: LoadedDetector, generator_name: str, warmup: int = 1) -> None:
        self.detector = detector
        self.generator_name = generator_name
        self.model = detector.model.eval()
        self.timer = StageTimer(device=self.model.device, warmup=warmup)
        self.detections: dict[Any, Detections] = {}
        self.proposals: dict[Any, np.ndarray] = {}
        self.seconds = 0.0

    @property
    def label(self) -> str:
        return f"{self.detector.name} + {self.generator_name}"

    def step(self, record: ImageRecord) -> None:
        """Run the whole pipeline on one image, timed by this pair's timer."""
        started = time.perf_counter()
        with self.timer.activate(), self.timer.image():
            result, boxes = detect_image(self.model, record)
        self.seconds += time.perf_counter() - started
        self.detections[record.image_id], self.proposals[record.image_id] = result, boxes

    def figures(self, records: Sequence[ImageRecord], peak_memory_mb: float) -> dict[str, Any]:
        """Timing and quality of the pair on ``records`` (each already run through :meth:`step`)."""
        summary = self.timer.summary()
        names = self.detector.class_names
        voc = evaluate_voc(records, self.detections, names, use_07_metric=True)
        coco = evaluate_coco(records, self.detections, names)
        recall = proposal_recall(records, self.proposals, ar_limits=(100, 300, 1000))
        total = summary["total"].mean if summary else float("nan")
        return {
            "detector": self.detector.name,
            "family": self.detector.config.model.family,
            "generator": self.generator_name,
            "proposal_source": self.model.proposal_generator.describe(),
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
            "wall_seconds": self.seconds,
            "peak_memory_mb": peak_memory_mb,
            "device": str(self.model.device),
            "stages": {name: stats.as_dict() for name, stats in summary.items()},
            "recall_curve": recall["recall_curve"],
        }


def run_pair(
    detector: LoadedDetector,
    generator_name: str,
    records: Sequence[ImageRecord],
    warmup: int = 1,
    progress: bool = True,
) -> tuple[dict[str, Any], StageTimer]:
    """Profile and score the detector with the generator now in its proposal slot (reported as
    ``generator_name``); returns the pair's figures and timer."""
    run = PairRun(detector, generator_name, warmup)
    with PeakMemory(run.model.device) as peak:
        for record in tqdm(
            list(records[:warmup]) + list(records),
            desc=run.label,
            unit="img",
            disable=not progress,
            leave=False,
        ):
            run.step(record)
    return run.figures(records, peak.megabytes), run.timer


def run_interleaved(
    runs: Sequence[PairRun], records: Sequence[ImageRecord], progress: bool = True
) -> list[dict[str, Any]]:
    """Profile several pairs on the same images, taking turns image by image (the order of the turns
    reversed on every other image), so that a change in the machine's load falls on all of them alike;
    the figures of each, in the order given. Each run's own ``warmup`` images come first. Their
    ``peak_memory_mb`` is the peak of all runs together (they share the process)."""
    warmup = max((run.timer.warmup for run in runs), default=0)
    schedule = list(records[:warmup]) + list(records)
    device = runs[0].model.device if runs else "cpu"
    with PeakMemory(device) as peak:
        for index, record in enumerate(tqdm(schedule, desc="interleaved", unit="img", disable=not progress)):
            for run in runs if index % 2 == 0 else reversed(runs):
                if index >= warmup - run.timer.warmup:
                    run.step(record)
    return [run.figures(records, peak.megabytes) for run in runs]
