"""Proposal benchmark: speed and quality of proposal generators on the same images.

For every generator: time per image (median and p90 of the whole call, and of
the generator's own work apart from any backbone forward it runs), proposals
per image, recall at IoU 0.5 and 0.7, AR@100/300/1000, and the recall curve
against the number of proposals kept. Each generator first runs once on the
first image, untimed (warm-up); then the generators take turns on every image,
so that their times are measured under the same load.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from detaccel.data import ImageRecord, read_image
from detaccel.evaluation import proposal_recall
from detaccel.proposals import GeneratorBase

AR_LIMITS = (100, 300, 1000)
REPORTED = ("recall@0.50", "recall@0.70", "AR@100", "AR@300", "AR@1000")


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else math.nan


class _GeneratorRun:
    """One generator's timings and proposals, image by image."""

    def __init__(self, generator: GeneratorBase) -> None:
        self.generator = generator
        self.total: list[float] = []
        self.own: list[float] = []
        self.backbone: list[float] = []
        self.proposals: dict[Any, tuple[np.ndarray, np.ndarray | None]] = {}

    def step(self, record: ImageRecord, image: np.ndarray) -> None:
        start = time.perf_counter()
        result = self.generator.generate(image, image_id=record.image_id)
        self.total.append(time.perf_counter() - start)
        self.own.append(result.timings.get("proposals", 0.0) + result.timings.get("postprocess", 0.0))
        if "backbone" in result.timings:
            self.backbone.append(result.timings["backbone"])
        self.proposals[record.image_id] = (result.boxes, result.scores)

    def figures(self, records: Sequence[ImageRecord]) -> dict[str, Any]:
        generator = self.generator
        quality = proposal_recall(records, self.proposals, iou_thresholds=(0.5, 0.7), ar_limits=AR_LIMITS)
        figures: dict[str, Any] = {
            "generator": generator.name,
            "parameters": {k: v for k, v in generator.parameters().items() if _is_plain(v)},
            "images": len(records),
            "time_median_s": _percentile(self.total, 50),
            "time_p90_s": _percentile(self.total, 90),
            "own_time_median_s": _percentile(self.own, 50),
            "own_time_p90_s": _percentile(self.own, 90),
            "backbone_time_median_s": _percentile(self.backbone, 50) if self.backbone else None,
            "proposals_per_image": quality["mean_proposals"],
        }
        figures.update({name: quality[name] for name in REPORTED})
        figures["recall_curve"] = quality["recall_curve"]
        return figures


def benchmark_generators(
    generators: Sequence[GeneratorBase],
    records: Sequence[ImageRecord],
    load_image: Callable[[ImageRecord], np.ndarray],
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run every generator on every record, taking turns image by image (the order of the turns
    reversed on every other image, so that a change in the machine's load falls on all alike); each
    first runs once on the first image, untimed. The timing and quality figures of each, in order."""
    runs = [_GeneratorRun(generator) for generator in generators]
    if records:
        for run in runs:
            run.generator.generate(load_image(records[0]), image_id=records[0].image_id)  # warm-up
    for index, record in enumerate(
        tqdm(records, desc="images", unit="img", disable=not progress, leave=False)
    ):
        image = load_image(record)
        for run in runs if index % 2 == 0 else reversed(runs):
            run.step(record, image)
    return [run.figures(records) for run in runs]


def _is_plain(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str, list, tuple))


def run_proposal_benchmark(
    generators: Mapping[str, GeneratorBase],
    records: Sequence[ImageRecord],
    out_dir: str | Path,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """Benchmark the generators on ``records``, taking turns image by image (:func:`benchmark_generators`);
    write ``results.json``, ``results.md`` and ``recall.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache: dict[Any, np.ndarray] = {}

    def load_image(record: ImageRecord) -> np.ndarray:
        if record.image_id not in cache:
            cache[record.image_id] = cv2.cvtColor(read_image(record.file_path), cv2.COLOR_RGB2BGR)
        return cache[record.image_id]

    figures = benchmark_generators(list(generators.values()), records, load_image, progress)
    results = {}
    for (name, generator), result in zip(generators.items(), figures, strict=True):
        results[name] = {**result, "reads": generator.describe()}
    (out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    (out / "results.md").write_text(markdown_table(results))
    plot_recall(results, out / "recall.png")
    return results


def markdown_table(results: Mapping[str, Mapping[str, Any]], reference: str = "selective_search") -> str:
    """Figures per generator; ``speed-up`` is the reference's own time over each generator's own time."""
    base = results.get(reference, {}).get("own_time_median_s")
    lines = [
        "| generator | time/img median (ms) | p90 (ms) | own time median (ms) | backbone (ms) | "
        f"own-time speed-up vs {reference} | proposals/img | "
        "recall@0.5 | recall@0.7 | AR@100 | AR@300 | AR@1000 |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        backbone = r["backbone_time_median_s"]
        speedup = f"{base / r['own_time_median_s']:.1f}x" if base and r["own_time_median_s"] else ""
        lines.append(
            f"| {name} | {1e3 * r['time_median_s']:.1f} | {1e3 * r['time_p90_s']:.1f} | "
            f"{1e3 * r['own_time_median_s']:.2f} | {'' if backbone is None else f'{1e3 * backbone:.1f}'} | "
            f"{speedup} | {r['proposals_per_image']:.0f} | "
            + " | ".join(f"{r[k]:.3f}" for k in REPORTED)
            + " |"
        )
    described = [f"- {name}: {r['reads']}" for name, r in results.items() if r.get("reads", name) != name]
    return "\n".join(lines + (["", *described] if described else [])) + "\n"


def plot_recall(results: Mapping[str, Mapping[str, Any]], path: Path) -> None:
    """Recall at IoU 0.5 and 0.7 against the number of proposals kept, one line per generator."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, threshold in zip(axes, ("0.50", "0.70"), strict=True):
        for name, r in results.items():
            curve = r["recall_curve"]
            ax.plot(curve["num_proposals"], curve[threshold], marker="o", markersize=3, label=name)
        ax.set_xscale("log")
        ax.set_xlabel("proposals per image")
        ax.set_title(f"recall at IoU {threshold}")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("recall")
    axes[0].set_ylim(0, 1.02)
    axes[1].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
