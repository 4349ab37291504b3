"""Inference over a dataset split (sharded across ranks), result files and VOC/COCO metrics."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from detaccel.config.schema import Config
from detaccel.data import DetectionDataset, ImageRecord, read_image
from detaccel.engine.distributed import DistInfo, all_gather_objects
from detaccel.evaluation import Detections, evaluate_detections, write_coco_detections, write_voc_detections
from detaccel.models.detector import RegionDetector
from detaccel.serialization import json_safe


@torch.no_grad()
def detect_records(
    model: RegionDetector,
    records: list[ImageRecord],
    info: DistInfo,
    progress: bool = True,
) -> tuple[dict[Any, Detections], dict[str, float]]:
    """Detections of every record through :meth:`RegionDetector.predict` (this rank runs its share;
    all ranks get all results) and timings.

    Records that carry proposals (cached for the split) use them; the others get the
    model's proposal generator's.
    """
    model.eval()
    mine: dict[Any, Detections] = {}
    seconds = 0.0
    shard = records[info.rank :: info.world_size]
    for record in tqdm(shard, desc="detect", disable=not (progress and info.is_main), leave=False):
        image = read_image(record.file_path)
        start = time.perf_counter()
        (prediction,) = model.predict([image], [record.proposals], [record.image_id])
        seconds += time.perf_counter() - start
        mine[record.image_id] = Detections(prediction.boxes, prediction.scores, prediction.labels)
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
    detections, timings = detect_records(model, records, info, progress)
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
    (out_dir / "eval.json").write_text(json.dumps(json_safe(report), indent=2) + "\n", encoding="utf-8")
    print_report(report, file=sys.stdout)
    return report


def print_report(report: dict[str, Any], file: Any = sys.stdout) -> None:
    timing = report["timing"]
    print(
        f"evaluated {report['images']} images of {report['split']!r}: "
        f"{timing['seconds_per_image'] * 1000:.1f} ms/image (preprocessing to post-processing; "
        "proposals included unless cached)",
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
