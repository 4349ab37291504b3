"""Exports of stage statistics: CSV, Markdown and a stacked-bar chart."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path

from detaccel.profiling.timer import DETECTION_STAGES, StageStats

FIELDS = ("name", "mean", "p50", "p90", "p99", "share", "images")


def summary_csv(summary: Mapping[str, StageStats]) -> str:
    """The statistics as CSV text, seconds, one row per stage."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=FIELDS)
    writer.writeheader()
    for stats in summary.values():
        writer.writerow(stats.as_dict())
    return out.getvalue()


def summary_markdown(summary: Mapping[str, StageStats]) -> str:
    """The statistics as a Markdown table in milliseconds."""
    lines = [
        "| stage | mean (ms) | p50 (ms) | p90 (ms) | p99 (ms) | share |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in summary.values():
        lines.append(
            f"| {s.name} | {1e3 * s.mean:.2f} | {1e3 * s.p50:.2f} | {1e3 * s.p90:.2f} | {1e3 * s.p99:.2f} | "
            f"{100 * s.share:.1f}% |"
        )
    return "\n".join(lines) + "\n"


def plot_stacked_bars(
    summaries: Mapping[str, Mapping[str, StageStats]], path: str | Path, share: bool = False
) -> None:
    """One bar per configuration: mean time per image stacked by top-level stage (``share``: in %)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summaries)
    stages = [s for s in DETECTION_STAGES if any(s in summary for summary in summaries.values())]
    stages += sorted(
        {k for summary in summaries.values() for k in summary if "/" not in k and k != "total"} - set(stages)
    )
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(names) + 3), 4.5))
    bottom = [0.0] * len(names)
    colors = plt.get_cmap("tab10")
    for i, stage_name in enumerate(stages):
        heights = [
            (100 * summaries[n][stage_name].share if share else 1e3 * summaries[n][stage_name].mean)
            if stage_name in summaries[n]
            else 0.0
            for n in names
        ]
        ax.bar(names, heights, bottom=bottom, label=stage_name, color=colors(i % 10))
        bottom = [b + h for b, h in zip(bottom, heights, strict=True)]
    ax.set_ylabel("share of the time per image (%)" if share else "mean time per image (ms)")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
