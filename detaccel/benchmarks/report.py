"""The benchmark report: ``report.md`` with its tables and plots, and ``results.json``."""

from __future__ import annotations

import json
import math
import platform
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from detaccel.benchmarks.matrix import stacked_bars


def _find(results: Sequence[Mapping[str, Any]], detector: str, generator: str) -> Mapping[str, Any] | None:
    return next((r for r in results if r["detector"] == detector and r["generator"] == generator), None)


def _stage_mean(result: Mapping[str, Any], name: str) -> float:
    return result["stages"].get(name, {}).get("mean", 0.0)


def _ms(seconds: float) -> str:
    return f"{1e3 * seconds:.1f}"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}x" if b > 0 and math.isfinite(a) else "n/a"


DETECTION_FAMILIES = ("fast_rcnn", "sppnet", "rcnn")


def detection_seconds(result: Mapping[str, Any]) -> float:
    """Time per image without the proposal stage: what the detector itself costs on given boxes."""
    return result["seconds_per_image"] - _stage_mean(result, "proposals")


def comparisons(results: Sequence[Mapping[str, Any]]) -> list[str]:
    """The headline comparisons, measured in this run, as Markdown bullet points."""
    lines = []
    detection = {name: r for name in DETECTION_FAMILIES if (r := _find(results, name, "selective_search"))}
    if "fast_rcnn" in detection and len(detection) > 1:
        times = {name: detection_seconds(r) for name, r in detection.items()}
        order = " < ".join(f"{n} {_ms(t)} ms" for n, t in sorted(times.items(), key=lambda kv: kv[1]))
        boxes = detection["fast_rcnn"]["proposals_per_image"]
        lines.append(
            f"Detection time per image (proposals excluded, {boxes:.0f} selective-search boxes): {order}."
        )
        faster = [
            f"{_ratio(times[name], times['fast_rcnn'])} faster than {label}"
            for name, label in (("rcnn", "R-CNN"), ("sppnet", "SPPnet"))
            if name in times
        ]
        lines.append(f"Fast R-CNN is {' and '.join(faster)} per image on the same boxes.")
    ss, r2 = _find(results, "fast_rcnn", "selective_search"), _find(results, "fast_rcnn", "r2cnn")
    if ss and r2:
        lines.append(
            f"Proposals: R²-CNN {_ms(_stage_mean(r2, 'proposals'))} ms vs selective search "
            f"{_ms(_stage_mean(ss, 'proposals'))} ms per image "
            f"({_ratio(_stage_mean(ss, 'proposals'), _stage_mean(r2, 'proposals'))} faster); "
            f"Fast R-CNN VOC07 mAP {r2['voc07_mAP']:.3f} with R²-CNN vs {ss['voc07_mAP']:.3f} "
            "with selective search."
        )
    base, svd = (
        _find(results, "fast_rcnn", "selective_search"),
        _find(results, "fast_rcnn_svd", "selective_search"),
    )
    if base and svd:
        lines.append(
            f"Truncated SVD: head (fc6 + fc7) {_ms(_stage_mean(base, 'head'))} -> "
            f"{_ms(_stage_mean(svd, 'head'))} ms per image "
            f"({_ratio(_stage_mean(base, 'head'), _stage_mean(svd, 'head'))} faster); VOC07 mAP "
            f"{base['voc07_mAP']:.3f} -> {svd['voc07_mAP']:.3f} "
            f"({100 * (svd['voc07_mAP'] - base['voc07_mAP']):+.1f} points)."
        )
    rcnn_ss, fast_r2 = _find(results, "rcnn", "selective_search"), _find(results, "fast_rcnn", "r2cnn")
    if rcnn_ss and fast_r2:
        lines.append(
            f"End to end: Fast R-CNN + R²-CNN {_ms(fast_r2['seconds_per_image'])} ms vs "
            f"R-CNN + selective search {_ms(rcnn_ss['seconds_per_image'])} ms per image "
            f"({_ratio(rcnn_ss['seconds_per_image'], fast_r2['seconds_per_image'])} faster)."
        )
    return lines


def detection_speed_table(results: Sequence[Mapping[str, Any]]) -> str:
    """Per generator: each family's detection time on the same boxes, and R-CNN's time over Fast R-CNN's.

    Empty when the run has no generator with both Fast R-CNN and R-CNN results.
    """
    families = [name for name in DETECTION_FAMILIES if any(r["detector"] == name for r in results)]
    header = (
        "| proposals | boxes/img | "
        + " | ".join(f"{name} ms" for name in families)
        + " | R-CNN / Fast R-CNN |\n|---|---:|"
        + "---:|" * (len(families) + 1)
    )
    rows = []
    for generator in dict.fromkeys(r["generator"] for r in results):
        fast, rcnn = _find(results, "fast_rcnn", generator), _find(results, "rcnn", generator)
        if not (fast and rcnn):
            continue
        cells = [
            _ms(detection_seconds(r)) if (r := _find(results, name, generator)) else "" for name in families
        ]
        rows.append(
            f"| {generator} | {fast['proposals_per_image']:.0f} | {' | '.join(cells)} | "
            f"{_ratio(detection_seconds(rcnn), detection_seconds(fast))} |"
        )
    return "\n".join([header, *rows]) + "\n" if rows else ""


def results_table(results: Sequence[Mapping[str, Any]]) -> str:
    lines = [
        "| detector | proposals | VOC07 mAP | COCO AP | recall@0.5 | AR@100 | proposals/img | ms/img | "
        "img/s | proposal ms | backbone ms | head ms | peak MB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['detector']} | {r['generator']} | {r['voc07_mAP']:.3f} | {r['coco_AP']:.3f} | "
            f"{r['recall@0.50']:.3f} | {r['AR@100']:.3f} | {r['proposals_per_image']:.0f} | "
            f"{_ms(r['seconds_per_image'])} | {r['images_per_second']:.2f} | "
            f"{_ms(_stage_mean(r, 'proposals'))} | {_ms(_stage_mean(r, 'backbone'))} | "
            f"{_ms(_stage_mean(r, 'head'))} | {r['peak_memory_mb']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def plot_speed_vs_map(results: Sequence[Mapping[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    markers = dict(zip(sorted({r["generator"] for r in results}), "osD^vP*X", strict=False))
    for r in results:
        ax.scatter(1e3 * r["seconds_per_image"], r["voc07_mAP"], marker=markers[r["generator"]], s=40)
        ax.annotate(
            f"{r['detector']}+{r['generator']}", (1e3 * r["seconds_per_image"], r["voc07_mAP"]), fontsize=6
        )
    ax.set_xscale("log")
    ax.set_xlabel("time per image, end to end (ms, log)")
    ax.set_ylabel("VOC07 mAP")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_recall(results: Sequence[Mapping[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    seen = set()
    for r in results:
        if r["generator"] in seen:
            continue  # recall depends on the generator only (R²-CNN: on the detector's map too)
        seen.add(r["generator"])
        curve = r["recall_curve"]
        ax.plot(
            curve["num_proposals"],
            curve["0.50"],
            marker="o",
            markersize=3,
            label=f"{r['generator']} ({r['detector']})",
        )
    ax.set_xscale("log")
    ax.set_xlabel("proposals per image")
    ax.set_ylabel("recall at IoU 0.5")
    ax.set_ylim(0, 1.02)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _detection_section(results: Sequence[Mapping[str, Any]]) -> list[str]:
    table = detection_speed_table(results)
    if not table:
        return []
    return [
        "## Detection time on the same boxes",
        "",
        "Per image, proposal stage excluded; `boxes/img` is Fast R-CNN's mean number of boxes.",
        "",
        table,
    ]


def write_report(results: Sequence[Mapping[str, Any]], out_dir: Path, context: Mapping[str, Any]) -> Path:
    """Write ``results.json``, the PNGs and ``report.md`` into ``out_dir``; return the report's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    machine = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
    }
    (out_dir / "results.json").write_text(
        json.dumps(
            {"context": dict(context), "machine": machine, "results": list(results)}, indent=2, default=float
        )
    )
    stacked_bars(results, out_dir / "stages.png")
    stacked_bars(results, out_dir / "stages_share.png", share=True)
    plot_speed_vs_map(results, out_dir / "speed_vs_map.png")
    plot_recall(results, out_dir / "recall.png")
    lines = [
        "# Detection benchmark",
        "",
        f"Dataset: {context.get('dataset')}, {context.get('images')} images; "
        f"command: `{context.get('command')}`.",
        f"Machine: {machine['platform']}, torch {machine['torch']}, {machine['threads']} threads, "
        f"device {machine['device']}.",
        "",
        "## Measured in this run",
        "",
        *[f"- {line}" for line in comparisons(results)],
        "",
        *_detection_section(results),
        "## All pairs",
        "",
        "Times are means per image over the profiled images (warm-up images excluded); `ms/img` is",
        "end to end, from decoding the JPEG to the final detections. Per-stage tables are in `stages/`.",
        "",
        results_table(results),
        "## Where the time goes",
        "",
        "![Per-stage time of every pair](stages.png)",
        "",
        "![Share of each stage in the time per image](stages_share.png)",
        "",
        "## Speed against accuracy",
        "",
        "![Time per image against VOC07 mAP](speed_vs_map.png)",
        "",
        "## Proposal recall",
        "",
        "![Recall against the number of proposals](recall.png)",
        "",
    ]
    path = out_dir / "report.md"
    path.write_text("\n".join(lines))
    return path
