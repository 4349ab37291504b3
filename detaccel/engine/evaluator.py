"""Inference over a dataset split (sharded across ranks), result files and VOC/COCO metrics."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from detaccel.config.schema import Config
from detaccel.data import DetectionDataset, ImageRecord
from detaccel.data.samples import inference_samples
from detaccel.data.transforms import batch_images
from detaccel.engine.data import test_transform
from detaccel.engine.distributed import DistInfo, all_gather_objects
from detaccel.evaluation import Detections, evaluate_detections, write_coco_detections, write_voc_detections
from detaccel.models.detector import RegionDetector


def detection_options(config: Config) -> dict[str, float]:
    """Keyword arguments of :meth:`RegionDetector.detect_multiscale` that the configuration sets."""
    return {
        "roi_size": config.data.test_roi_size,
        "score_threshold": config.eval.score_threshold,
        "nms_threshold": config.eval.nms_threshold,
        "max_per_image": config.eval.max_per_image,
    }


@torch.no_grad()
def detect_records(
    model: RegionDetector,
    records: list[ImageRecord],
    config: Config,
    info: DistInfo,
    progress: bool = True,
) -> tuple[dict[Any, Detections], dict[str, float]]:
    """Detections of every record (this rank runs its share; all ranks get all results) and timings."""
    model.eval()
    transform = test_transform(config)
    options = detection_options(config)
    mine: dict[Any, Detections] = {}
    seconds = 0.0
    shard = records[info.rank :: info.world_size]
    for record in tqdm(shard, desc="detect", disable=not (progress and info.is_main), leave=False):
        samples = inference_samples(record, transform)
        images = [batch_images([s["image"]], model.size_divisibility)[0] for s in samples]
        candidates = record.proposals if record.proposals is not None else np.zeros((0, 4))
        proposals = torch.tensor(candidates[: config.proposals.max_test], dtype=torch.float32)
        start = time.perf_counter()
        boxes, scores, labels = model.detect_multiscale(
            [model.shared_features(image.to(info.device)) for image in images],
            [s["scale"] for s in samples],
            proposals.to(info.device),
            (record.height, record.width),
            **options,
        )
        seconds += time.perf_counter() - start
        mine[record.image_id] = Detections(boxes.cpu(), scores.cpu(), labels.cpu())
    merged: dict[Any, Detections] = {}
    timings = {"seconds": 0.0, "images": 0}
    for part, part_seconds, count in all_gather_objects(info, (mine, seconds, len(shard))):
        merged.update(part)
        timings["seconds"] += part_seconds
        timings["images"] += count
    timings["seconds_per_image"] = timings["seconds"] / max(timings["images"], 1)
    return merged, timings


def evaluate_model(
    model: RegionDetector,
    dataset: DetectionDataset,
    records: list[ImageRecord],
    config: Config,
    info: DistInfo,
    out_dir: Path,
    progress: bool = True,
) -> dict[str, Any] | None:
    """Detect, write VOC and COCO result files and the metrics (rank 0), return the report there."""
    detections, timings = detect_records(model, records, config, info, progress)
    if not info.is_main:
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    voc_dir = out_dir / "detections_voc"
    write_voc_detections(voc_dir, dataset.records, detections, dataset.class_names, dataset.split)
    write_coco_detections(out_dir / "detections_coco.json", dataset.records, detections, dataset.category_ids)
    results = evaluate_detections(dataset, detections, config.eval.metrics)
    for result in results.values():
        result.pop("summary", None)
    report = {
        "split": dataset.split,
        "images": len(dataset),
        "timing": timings,
        "metrics": results,
    }
    (out_dir / "eval.json").write_text(json.dumps(_json_safe(report), indent=2) + "\n", encoding="utf-8")
    print_report(report, file=sys.stdout)
    return report


def _json_safe(value: Any) -> Any:
    from detaccel.commands._dataset_args import json_safe

    return json_safe(value)


def print_report(report: dict[str, Any], file: Any = sys.stdout) -> None:
    timing = report["timing"]
    print(
        f"evaluated {report['images']} images of {report['split']!r}: "
        f"{timing['seconds_per_image'] * 1000:.1f} ms/image (network and post-processing)",
        file=file,
    )
    for metric, result in report["metrics"].items():
        if metric == "coco":
            print(
                f"  COCO AP {result['AP']:.4f}  AP50 {result['AP50']:.4f}  AP75 {result['AP75']:.4f}",
                file=file,
            )
            continue
        print(f"  {metric} mAP {result['mAP']:.4f}", file=file)
        for name, ap in result["AP"].items():
            print(f"    {name:16s} {ap:.4f}", file=file)
