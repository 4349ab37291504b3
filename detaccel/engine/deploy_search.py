"""Choosing a detector's deployed form: backbone precision, test scale and proposal cap within an mAP budget.

:func:`search_deployment` exports the detector twice (float32 and the int8 backbone), then runs
every candidate — each precision at the configured test scale and smaller ones, with the
configured proposal cap and smaller ones — from its export directory on the same validation
images, taking turns image by image, and keeps the fastest whose VOC07 mAP stays within
``max_map_drop`` points of the float export at the configured settings. The chosen export is
written with those settings in its manifest, beside ``search.json`` (every candidate's figures).
"""

from __future__ import annotations

import copy
import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detaccel.config.schema import Config
from detaccel.data import ImageRecord
from detaccel.models.detector import RegionDetector

PRECISIONS = ("float32", "int8")
SMALLER_SCALES = (0.8,)  # of the configured test scale, rounded to a multiple of 32
PROPOSAL_CAPS = (300, 100)


@dataclass(frozen=True)
class DeployCandidate:
    """One deployed form: the backbone's precision, the test scale and the proposal cap."""

    precision: str
    test_scale: int
    max_test: int

    def overrides(self) -> list[str]:
        return [f"data.test_scale={self.test_scale}", f"proposals.max_test={self.max_test}"]

    def describe(self) -> str:
        return f"{self.precision} backbone, test scale {self.test_scale}, at most {self.max_test} proposals"


def deploy_candidates(config: Config) -> list[DeployCandidate]:
    """The forms searched: each precision x the test scale and 0.8 of it (multiples of 32; not for a
    multi-scale configuration) x the proposal cap and 300, 100 below it. The first is the reference."""
    scale = int(config.data.test_scale)
    smaller = {max(32, round(scale * f / 32) * 32) for f in SMALLER_SCALES}
    scales = [scale] if config.data.test_scales else [scale, *sorted(smaller - {scale}, reverse=True)]
    cap = int(config.proposals.max_test)
    caps = [cap, *(c for c in PROPOSAL_CAPS if c < cap)]
    return [DeployCandidate(p, s, c) for p in PRECISIONS for s in scales for c in caps]


def search_records(config: Config, split: str, images: int | None, seed: int) -> list[ImageRecord]:
    """``images`` records of ``split`` drawn with ``seed``, the images a search runs on; a ``ValueError``
    when ``split`` is the configuration's test split (a search must not see it)."""
    from detaccel.compression.auto import validation_records
    from detaccel.engine import init_distributed
    from detaccel.engine.data import load_split

    if split == config.data.test_split:
        raise ValueError(
            f"{split!r} is the test split: the search must not see it "
            "(give a validation split, e.g. one made by `detaccel data split`)"
        )
    return validation_records(list(load_split(config, split, init_distributed("cpu")).records), images, seed)


def search_deployment(
    model: RegionDetector,
    config: Config,
    class_names: Sequence[str],
    records: Sequence[ImageRecord],
    calibration: Sequence[np.ndarray],
    max_map_drop: float,
    out_dir: str | Path,
    progress: bool = True,
) -> dict[str, Any]:
    """Search the deployed form on ``records`` (validation images; see the module docstring), write its
    export into ``out_dir`` with ``search.json``; returns that file's content."""
    from detaccel.benchmarks.detection import LoadedDetector, PairRun, run_interleaved
    from detaccel.engine.export import export_detector
    from detaccel.engine.exported import load_exported

    if not records:
        raise ValueError("deployment search: no validation images")
    out_dir = Path(out_dir)
    scratch = out_dir / "search"
    exports = {precision: scratch / precision for precision in PRECISIONS}
    export_detector(model, config, exports["float32"])
    export_detector(model, config, exports["int8"], calibration)
    candidates = deploy_candidates(config)
    runs = []
    for candidate in candidates:
        loaded_config, loaded, _ = load_exported(
            exports[candidate.precision], overrides=candidate.overrides()
        )
        detector = LoadedDetector(candidate.describe(), loaded_config, loaded, tuple(class_names))
        runs.append(PairRun(detector, loaded_config.proposals.name, warmup=1))
    figures = run_interleaved(runs, list(records), progress)
    reference = figures[0]["voc07_mAP"]
    scored = [
        {**asdict(c), "voc07_mAP": f["voc07_mAP"], "seconds_per_image": f["seconds_per_image"],
         "proposals_per_image": f["proposals_per_image"]}
        for c, f in zip(candidates, figures, strict=True)
    ]  # fmt: skip
    within = [i for i, f in enumerate(scored) if f["voc07_mAP"] >= reference - max_map_drop / 100.0 - 1e-12]
    best = min(within, key=lambda i: scored[i]["seconds_per_image"])  # the reference is always within
    chosen = candidates[best]
    final = copy.deepcopy(config)
    final.data.test_scale, final.proposals.max_test = chosen.test_scale, chosen.max_test
    export_detector(model, final, out_dir, calibration if chosen.precision == "int8" else None)
    shutil.rmtree(scratch)
    result = {
        "max_map_drop": max_map_drop,
        "validation_images": len(records),
        "reference": scored[0],
        "chosen": scored[best],
        "candidates": scored,
    }
    (out_dir / "search.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result
