"""The benchmark report: ``report.md`` with its tables and plots, and ``results.json``."""

from __future__ import annotations

import json
import math
import os
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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
FAMILY_LABELS = {"fast_rcnn": "Fast R-CNN", "sppnet": "SPPnet", "rcnn": "R-CNN"}
# Targets the report states each comparison against (ratios; see docs/benchmarks.md).
TARGET_MAP_VS_SELECTIVE_SEARCH = 0.95
TARGET_SPEEDUP_VS_SELECTIVE_SEARCH = 15.0
TARGET_TIME_VS_PEER = 0.5


def detection_seconds(result: Mapping[str, Any]) -> float:
    """Time per image without the proposal stage: what the detector itself costs on given boxes."""
    return result["seconds_per_image"] - _stage_mean(result, "proposals")


def _family(result: Mapping[str, Any]) -> str:
    return result.get("family", result["detector"])


def _is_variant(result: Mapping[str, Any]) -> bool:
    return result.get("base") is not None


def _met(met: bool, short_by: str) -> str:
    return "met" if met else f"not met, {short_by}"


@dataclass
class Comparison:
    """One decision the report opens with: its sentences and the (label, mAP, ms per image) bars
    of its plot."""

    title: str
    plot: str
    lines: list[str] = field(default_factory=list)
    bars: list[tuple[str, float, float]] = field(default_factory=list)


def _bar(result: Mapping[str, Any], seconds: float | None = None) -> tuple[str, float, float]:
    label = f"{result['detector']} + {result['generator']}"
    return label, result["voc07_mAP"], 1e3 * (result["seconds_per_image"] if seconds is None else seconds)


def _variants(results: Sequence[Mapping[str, Any]], headline: str, generator: str) -> list[Mapping[str, Any]]:
    return [r for r in results if r.get("base") == headline and r["generator"] == generator]


def versus_selective_search(results: Sequence[Mapping[str, Any]], headline: str) -> Comparison | None:
    """R²-CNN against selective search in the headline detector's slot (and its faster variants)."""
    ss, r2 = _find(results, headline, "selective_search"), _find(results, headline, "r2cnn")
    if not (ss and r2):
        return None
    item = Comparison("R²-CNN against selective search in the same model", "vs_selective_search.png")
    ratio = r2["voc07_mAP"] / max(ss["voc07_mAP"], 1e-9)
    item.lines.append(
        f"{headline}: VOC07 mAP {r2['voc07_mAP']:.3f} with R²-CNN vs {ss['voc07_mAP']:.3f} with selective "
        f"search: {ratio:.2f}x (target ≥ {TARGET_MAP_VS_SELECTIVE_SEARCH}x: "
        f"{_met(ratio >= TARGET_MAP_VS_SELECTIVE_SEARCH, f'{ratio:.2f}x')})."
    )
    item.lines.append(
        f"Proposals: {_ms(_stage_mean(r2, 'proposals'))} vs {_ms(_stage_mean(ss, 'proposals'))} ms per image "
        f"({_ratio(_stage_mean(ss, 'proposals'), _stage_mean(r2, 'proposals'))} less time)."
    )
    for result in [r2, *_variants(results, headline, "r2cnn")]:
        speedup = ss["seconds_per_image"] / result["seconds_per_image"]
        met = _met(speedup >= TARGET_SPEEDUP_VS_SELECTIVE_SEARCH, f"{speedup:.1f}x")
        variant = f" ({result['variant']})" if result.get("variant") else ""
        item.lines.append(
            f"Whole time per image, {result['detector']}{variant} + R²-CNN: "
            f"{_ms(result['seconds_per_image'])} vs {_ms(ss['seconds_per_image'])} ms with selective search, "
            f"{speedup:.1f}x less "
            f"(target ≥ {TARGET_SPEEDUP_VS_SELECTIVE_SEARCH:g}x: {met}); mAP "
            f"{result['voc07_mAP'] / max(ss['voc07_mAP'], 1e-9):.2f}x."
        )
        item.bars.append(_bar(result))
    item.bars.insert(0, _bar(ss))
    return item


def versus_families(results: Sequence[Mapping[str, Any]]) -> Comparison | None:
    """Fast R-CNN against SPPnet and R-CNN on the same selective-search boxes (proposals excluded)."""
    detection = {}
    for result in results:
        if result["generator"] == "selective_search" and not _is_variant(result):
            detection.setdefault(_family(result), result)
    if "fast_rcnn" not in detection or len(detection) < 2:
        return None
    item = Comparison("Fast R-CNN against SPPnet and R-CNN on the same boxes", "families.png")
    times = {family: detection_seconds(r) for family, r in detection.items()}
    order = " < ".join(
        f"{FAMILY_LABELS.get(n, n)} {_ms(t)} ms" for n, t in sorted(times.items(), key=lambda kv: kv[1])
    )
    boxes = detection["fast_rcnn"]["proposals_per_image"]
    item.lines.append(
        f"Detection time per image (proposals excluded, {boxes:.0f} selective-search boxes): {order}."
    )
    faster = [
        f"{_ratio(times[name], times['fast_rcnn'])} faster than {FAMILY_LABELS[name]}"
        for name in ("rcnn", "sppnet")
        if name in times
    ]
    scores = ", ".join(f"{FAMILY_LABELS.get(n, n)} {r['voc07_mAP']:.3f}" for n, r in detection.items())
    item.lines.append(
        f"Fast R-CNN is {' and '.join(faster)} per image on the same boxes; VOC07 mAP {scores}."
    )
    item.bars = [_bar(r, detection_seconds(r)) for r in detection.values()]
    return item


def versus_full_head(results: Sequence[Mapping[str, Any]], headline: str) -> Comparison | None:
    """The compressed heads (truncated SVD, ``compress --auto``) against the full one, with R²-CNN."""
    full = _find(results, headline, "r2cnn")
    compressed = [r for r in _variants(results, headline, "r2cnn") if r.get("compressed")]
    if not (full and compressed):
        return None
    item = Comparison("Compressed heads against the full one", "compression.png")
    item.bars.append(_bar(full, _stage_mean(full, "head")))
    for result in compressed:
        item.lines.append(
            f"{result['detector']} ({result['variant']}): head (fc6 + fc7) "
            f"{_ms(_stage_mean(full, 'head'))} -> {_ms(_stage_mean(result, 'head'))} ms per image "
            f"({_ratio(_stage_mean(full, 'head'), _stage_mean(result, 'head'))} faster); VOC07 mAP "
            f"{full['voc07_mAP']:.3f} -> {result['voc07_mAP']:.3f} "
            f"({100 * (result['voc07_mAP'] - full['voc07_mAP']):+.1f} points)."
        )
        item.bars.append(_bar(result, _stage_mean(result, "head")))
    return item


def versus_peer(
    results: Sequence[Mapping[str, Any]], headline: str, peer: Mapping[str, Any] | None
) -> Comparison | None:
    """detaccel's headline detector (and its variants) with R²-CNN against torchvision's Faster R-CNN."""
    ours = _find(results, headline, "r2cnn")
    if not (peer and ours):
        return None
    item = Comparison("detaccel against torchvision's Faster R-CNN", "vs_peer.png")
    item.lines.append(
        f"{peer['detector']} on the same backbone, trained {peer['seconds']:.0f} s ({peer['iterations']} "
        f"iterations, its reference recipe): VOC07 mAP {peer['voc07_mAP']:.3f}, "
        f"{_ms(peer['seconds_per_image'])} ms per image."
    )
    item.bars.append((peer["detector"], peer["voc07_mAP"], 1e3 * peer["seconds_per_image"]))
    for result in [ours, *_variants(results, headline, "r2cnn")]:
        time_ratio = result["seconds_per_image"] / peer["seconds_per_image"]
        map_ratio = result["voc07_mAP"] / max(peer["voc07_mAP"], 1e-9)
        met = map_ratio >= 1 and time_ratio <= TARGET_TIME_VS_PEER
        variant = f" ({result['variant']})" if result.get("variant") else ""
        item.lines.append(
            f"{result['detector']}{variant} + R²-CNN: mAP {result['voc07_mAP']:.3f} "
            f"({map_ratio:.2f}x the peer's) at {_ms(result['seconds_per_image'])} ms "
            f"({time_ratio:.2f}x its time; target ≥ 1x mAP at "
            f"≤ {TARGET_TIME_VS_PEER}x time: {_met(met, f'{map_ratio:.2f}x at {time_ratio:.2f}x')})."
        )
        item.bars.append(_bar(result))
    return item


def comparisons(
    results: Sequence[Mapping[str, Any]], headline: str | None = None, peer: Mapping[str, Any] | None = None
) -> list[Comparison]:
    """The comparisons a user decides on, measured in this run (those the run has the results for).

    ``headline`` is the detector compared with selective search, its variants and the peer
    (default: the first Fast R-CNN of the results)."""
    if headline is None:
        headline = next((r["detector"] for r in results if _family(r) == "fast_rcnn"), None)
    found = [
        versus_selective_search(results, headline),
        versus_families(results),
        versus_full_head(results, headline),
        versus_peer(results, headline, peer),
    ]
    return [item for item in found if item is not None]


def detection_speed_table(results: Sequence[Mapping[str, Any]]) -> str:
    """Per generator: each family's detection time on the same boxes, and R-CNN's time over Fast R-CNN's.

    One detector per family (the first that is not a variant of another); empty when the run has no
    generator with both Fast R-CNN and R-CNN results.
    """
    by_family: dict[tuple[str, str], Mapping[str, Any]] = {}
    for result in results:
        if not _is_variant(result):
            by_family.setdefault((_family(result), result["generator"]), result)
    families = [name for name in DETECTION_FAMILIES if any(f == name for f, _ in by_family)]
    header = (
        "| proposals | boxes/img | "
        + " | ".join(f"{FAMILY_LABELS[name]} ms" for name in families)
        + " | R-CNN / Fast R-CNN |\n|---|---:|"
        + "---:|" * (len(families) + 1)
    )
    rows = []
    for generator in dict.fromkeys(r["generator"] for r in results):
        fast, rcnn = by_family.get(("fast_rcnn", generator)), by_family.get(("rcnn", generator))
        if not (fast and rcnn):
            continue
        cells = [
            _ms(detection_seconds(r)) if (r := by_family.get((name, generator))) else "" for name in families
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


def plot_comparison(item: Comparison, path: Path) -> None:
    """Two bar panels side by side: VOC07 mAP and milliseconds per image of each bar of ``item``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [label for label, _, _ in item.bars]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 0.5 * len(labels) + 1.4), sharey=True)
    positions = range(len(labels))
    left.barh(positions, [m for _, m, _ in item.bars], color="tab:green")
    right.barh(positions, [ms for _, _, ms in item.bars], color="tab:blue")
    left.set_yticks(list(positions), labels, fontsize=7)
    left.invert_yaxis()
    left.set_xlabel("VOC07 mAP")
    right.set_xlabel("ms per image" + (" (head)" if "head" in item.title.lower() else ""))
    for axis, values, fmt in (
        (left, [m for _, m, _ in item.bars], "{:.3f}"),
        (right, [t for *_, t in item.bars], "{:.1f}"),
    ):
        for y, value in zip(positions, values, strict=True):
            axis.annotate(fmt.format(value), (value, y), fontsize=7, va="center", xytext=(2, 0),
                          textcoords="offset points")  # fmt: skip
        axis.grid(True, axis="x", alpha=0.3)
    fig.suptitle(item.title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def training_table(training: Mapping[str, Mapping[str, Any]]) -> str:
    """Iterations and seconds of every model trained for the run (the peer included)."""
    lines = ["| model | iterations | training seconds |", "|---|---:|---:|"]
    for name, figures in training.items():
        seconds = figures.get("train_seconds", figures.get("seconds", float("nan")))
        lines.append(f"| {name} | {figures.get('iterations', '')} | {seconds:.0f} |")
    return "\n".join(lines) + "\n"


def write_report(
    results: Sequence[Mapping[str, Any]],
    out_dir: Path,
    context: Mapping[str, Any],
    peer: Mapping[str, Any] | None = None,
    training: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """Write ``results.json``, the PNGs and ``report.md`` into ``out_dir``; return the report's path.

    ``context`` names the dataset, images, command and ``headline`` detector; ``peer`` is the
    torchvision peer's figures, ``training`` each trained model's iterations and seconds."""
    out_dir.mkdir(parents=True, exist_ok=True)
    machine = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
    }
    saved = {"context": dict(context), "machine": machine, "results": list(results), "peer": peer}
    saved["training"] = dict(training or {})
    (out_dir / "results.json").write_text(json.dumps(saved, indent=2, default=float))
    stacked_bars(results, out_dir / "stages.png")
    stacked_bars(results, out_dir / "stages_share.png", share=True)
    plot_speed_vs_map(results, out_dir / "speed_vs_map.png")
    plot_recall(results, out_dir / "recall.png")
    decisions = comparisons(results, context.get("headline"), peer)
    lines = [
        "# Detection benchmark",
        "",
        f"Dataset: {context.get('dataset')}, {context.get('images')} test images; "
        f"command: `{context.get('command')}`.",
        f"Machine: {machine['platform']}, {machine['cpus']} CPUs, torch {machine['torch']}, "
        f"{machine['threads']} threads, device {machine['device']}.",
        "",
        "## Measured in this run",
        "",
    ]
    for item in decisions:
        plot_comparison(item, out_dir / item.plot)
        lines += [
            f"### {item.title}",
            "",
            *[f"- {line}" for line in item.lines],
            "",
            f"![{item.title}]({item.plot})",
            "",
        ]
    if training:
        lines += ["## Training", "", training_table(training)]
    lines += [
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
