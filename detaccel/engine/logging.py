"""Training metrics as JSON lines, and the loss-curve plot."""

from __future__ import annotations

import json
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any


class MetricsWriter:
    """Appends one JSON object per line to ``path``; on resume, drops lines past the resumed iteration."""

    def __init__(self, path: str | PathLike, resume_iteration: int | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if resume_iteration is None:
            self.path.write_text("", encoding="utf-8")
        elif self.path.is_file():
            kept = [
                line
                for line in self.path.read_text(encoding="utf-8").splitlines()
                if line.strip() and json.loads(line).get("iteration", 0) <= resume_iteration
            ]
            self.path.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")

    def write(self, entry: Mapping[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as file:
            file.write(json.dumps(dict(entry)) + "\n")


def read_metrics(path: str | PathLike) -> list[dict[str, Any]]:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def plot_loss_curve(metrics_path: str | PathLike, out_path: str | PathLike) -> Path | None:
    """Plot the training losses of a metrics file to a PNG; ``None`` when there is nothing to plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    entries = [e for e in read_metrics(metrics_path) if "loss" in e]
    if not entries:
        return None
    iterations = [e["iteration"] for e in entries]
    figure, axis = plt.subplots(figsize=(7, 4))
    for key in ("loss", "loss_cls", "loss_box"):
        if key in entries[0]:
            axis.plot(iterations, [e[key] for e in entries], label=key)
    axis.set_xlabel("iteration")
    axis.set_ylabel("loss")
    axis.set_yscale("log")
    axis.grid(True, alpha=0.3)
    axis.legend()
    figure.tight_layout()
    out_path = Path(out_path)
    figure.savefig(out_path, dpi=100)
    plt.close(figure)
    return out_path
