"""The search's plot (``pareto.png``) and Markdown summary."""

from __future__ import annotations

from pathlib import Path

from detaccel.compression.search import Evaluation, SearchResult, pareto_front


def _axis(objective: str, evaluation: Evaluation) -> float:
    return evaluation.bytes / 1e6 if objective == "size" else evaluation.ms


def write_pareto_plot(path: Path, result: SearchResult, objective: str, max_map_drop: float) -> Path:
    """Every candidate (objective against validation mAP), the front highlighted, the baselines marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    label = "head + predictor size (MB)" if objective == "size" else "head + predictor time (ms/image)"
    everything = [result.reference, *result.baselines, *result.candidates]
    front = pareto_front(everything, lambda e: _axis(objective, e))
    figure, axes = plt.subplots(figsize=(7, 4.5))
    axes.scatter(
        [_axis(objective, e) for e in result.candidates],
        [e.map for e in result.candidates],
        s=14,
        color="0.6",
        label="candidates",
    )
    axes.plot(
        [_axis(objective, e) for e in front], [e.map for e in front], "o-", color="C0", label="Pareto front"
    )
    for evaluation, marker, color in zip(
        [result.reference, *result.baselines], ("*", "s", "D"), ("k", "C3", "C2"), strict=False
    ):
        axes.scatter(
            [_axis(objective, evaluation)],
            [evaluation.map],
            marker=marker,
            s=90,
            color=color,
            label=evaluation.name,
        )
    if result.best is not None:
        axes.scatter(
            [_axis(objective, result.best)],
            [result.best.map],
            s=160,
            facecolors="none",
            edgecolors="C1",
            linewidths=2,
            label="chosen",
        )
    axes.axhline(
        result.reference.map - max_map_drop / 100.0,
        color="C1",
        linestyle="--",
        linewidth=1,
        label=f"budget (-{max_map_drop:g} pt)",
    )
    axes.set_xlabel(label)
    axes.set_ylabel("validation VOC07 mAP")
    axes.set_xscale("log")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def describe(evaluation: Evaluation) -> str:
    """``fc6 r128 s0.40 int8, fc7 …`` — what a candidate does to each layer it changes."""
    parts = []
    for name, choice in evaluation.candidate.items():
        if not choice.changes:
            continue
        items = [f"rank {choice.rank}"] if choice.rank is not None else []
        if choice.sparsity > 0:
            items.append(f"{choice.sparsity:.0%} pruned")
        if choice.int8:
            items.append("int8")
        parts.append(f"{name}: {', '.join(items)}")
    return "; ".join(parts) or "unchanged"


def summary_markdown(
    result: SearchResult,
    objective: str,
    max_map_drop: float,
    test: dict[str, float] | None = None,
    notes: list[str] | None = None,
) -> str:
    """A table of the reference, the baselines, the Pareto front and the chosen head."""
    reference = result.reference
    lines = [
        f"# Automatic compression ({objective} objective, budget {max_map_drop:g} VOC07 points)",
        "",
        f"{len(result.candidates)} candidates evaluated on the validation split's cached RoI features.",
        "",
        "| head | validation mAP | Δ points | size (MB) | smaller | ms/image | faster | what |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    everything = [reference, *result.baselines, *result.candidates]
    front = pareto_front(everything, lambda e: _axis(objective, e))
    rows = [reference, *result.baselines, *(e for e in front if e not in (reference, *result.baselines))]
    if result.best is not None and result.best not in rows:
        rows.append(result.best)
    for evaluation in rows:
        name = evaluation.name + (" **(chosen)**" if evaluation is result.best else "")
        lines.append(
            f"| {name} | {evaluation.map:.4f} | {-evaluation.map_drop + 0.0:+.2f} | "
            f"{evaluation.bytes / 1e6:.3f} | "
            f"{reference.bytes / evaluation.bytes:.2f}x | {evaluation.ms:.2f} | "
            f"{reference.ms / max(evaluation.ms, 1e-9):.2f}x | {describe(evaluation)} |"
        )
    if result.best is None:
        closest = min(result.candidates or result.baselines, key=lambda e: e.map_drop)
        lines += ["", f"No candidate met the budget; the closest lost {closest.map_drop:.2f} points."]
    if notes:
        lines += ["", *notes]
    if test:
        lines += [
            "",
            f"Test split (scored once, after the search): mAP {test['before']:.4f} uncompressed, "
            f"{test['after']:.4f} compressed ({(test['after'] - test['before']) * 100:+.2f} points); "
            f"checkpoint {test['bytes_before'] / 1e6:.2f} MB -> {test['bytes_after'] / 1e6:.2f} MB.",
        ]
    return "\n".join(lines) + "\n"
