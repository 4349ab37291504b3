"""The benchmark matrix: which detectors and generators to run, training what is missing, and the run.

A matrix file (YAML) names detectors (a detector config, optional overrides,
``checkpoint: <model file>`` to use a trained model instead of training one,
or ``from: <detector>`` with ``svd: {layer: rank}`` for a compressed copy) and
proposal generators with their parameters (a detector's own generator takes its
configuration's parameters, the matrix's on top). Trained models and finished
(detector, generator) results are kept in the output directory, so an
interrupted run picks up where it stopped.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from detaccel.benchmarks.detection import LoadedDetector, run_pair
from detaccel.profiling import plot_stacked_bars, summary_csv, summary_markdown

MATRIX_KEYS = {"images", "warmup", "detectors", "generators"}
DETECTOR_KEYS = {"config", "overrides", "from", "svd", "checkpoint"}


class MatrixError(ValueError):
    """A matrix file that cannot be used; the message names the key."""


@dataclass
class DetectorSpec:
    name: str
    config: str | None = None
    overrides: list[str] = field(default_factory=list)
    base: str | None = None
    svd: dict[str, int] = field(default_factory=dict)
    checkpoint: str | None = None  # a trained model to use instead of training one


@dataclass
class MatrixSpec:
    detectors: list[DetectorSpec]
    generators: dict[str, dict[str, Any]]
    images: int | None = None
    warmup: int = 1


def _mapping(value: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MatrixError(f"matrix key {key!r}: expected a mapping, got {type(value).__name__}")
    return value


def parse_matrix(data: Any, source: str = "matrix") -> MatrixSpec:
    """Check and convert a matrix mapping (as read from YAML)."""
    data = _mapping(data, source)
    unknown = set(data) - MATRIX_KEYS
    if unknown:
        raise MatrixError(
            f"{source}: unknown matrix key {sorted(unknown)[0]!r} (known: {', '.join(sorted(MATRIX_KEYS))})"
        )
    detectors = []
    for name, entry in _mapping(data.get("detectors", {}), "detectors").items():
        entry = _mapping(entry, f"detectors.{name}")
        unknown = set(entry) - DETECTOR_KEYS
        if unknown:
            raise MatrixError(f"{source}: unknown key 'detectors.{name}.{sorted(unknown)[0]}'")
        if ("config" in entry) == ("from" in entry):
            raise MatrixError(f"{source}: detectors.{name} needs exactly one of 'config' and 'from'")
        overrides = entry.get("overrides", [])
        if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
            raise MatrixError(f"{source}: detectors.{name}.overrides: expected a list of 'key=value' strings")
        svd = dict(_mapping(entry.get("svd", {}), f"detectors.{name}.svd"))
        if not all(isinstance(r, int) and not isinstance(r, bool) and r > 0 for r in svd.values()):
            raise MatrixError(f"{source}: detectors.{name}.svd: ranks must be positive integers")
        checkpoint = entry.get("checkpoint")
        if checkpoint is not None and ("from" in entry or not isinstance(checkpoint, str)):
            raise MatrixError(f"{source}: detectors.{name}.checkpoint: a model file path, with 'config'")
        detectors.append(
            DetectorSpec(name, entry.get("config"), overrides, entry.get("from"), svd, checkpoint)
        )
    known = [d.name for d in detectors]
    for spec in detectors:
        if spec.base is not None and spec.base not in known[: known.index(spec.name)]:
            raise MatrixError(
                f"{source}: detectors.{spec.name}.from: {spec.base!r} is not a detector listed before it"
            )
    generators = {
        name: dict(_mapping(params or {}, f"generators.{name}"))
        for name, params in _mapping(data.get("generators", {}), "generators").items()
    }
    if not detectors or not generators:
        raise MatrixError(f"{source}: needs at least one detector and one generator")
    images, warmup = data.get("images"), data.get("warmup", 1)
    for key, value in (("images", images), ("warmup", warmup)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise MatrixError(f"{source}: matrix key {key!r}: expected a non-negative integer, got {value!r}")
    return MatrixSpec(detectors, generators, images, warmup)


def load_matrix(path: str | Path) -> MatrixSpec:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise MatrixError(f"{path}: matrix file not found") from None
    except yaml.YAMLError as error:
        raise MatrixError(f"{path}: not valid YAML ({error})") from None
    return parse_matrix(data, str(path))


def select(spec: MatrixSpec, detectors: Sequence[str] | None, generators: Sequence[str] | None) -> MatrixSpec:
    """The part of ``spec`` naming these detectors/generators (and the detectors they derive from)."""
    if detectors:
        names = {d.name for d in spec.detectors}
        missing = [d for d in detectors if d not in names]
        if missing:
            raise MatrixError(f"unknown detector {missing[0]!r}; the matrix has: {', '.join(sorted(names))}")
        wanted = set(detectors)
        for d in reversed(spec.detectors):
            if d.name in wanted and d.base:
                wanted.add(d.base)
        spec = dataclasses.replace(spec, detectors=[d for d in spec.detectors if d.name in wanted])
    if generators:
        missing = [g for g in generators if g not in spec.generators]
        if missing:
            raise MatrixError(
                f"unknown generator {missing[0]!r}; the matrix has: {', '.join(spec.generators)}"
            )
        spec = dataclasses.replace(spec, generators={g: spec.generators[g] for g in generators})
    return spec


def prepare_detectors(
    spec: MatrixSpec,
    out_dir: Path,
    data_overrides: Sequence[str],
    progress: bool = True,
    device: str = "auto",
) -> dict[str, LoadedDetector]:
    """Load each detector's trained model from ``out_dir/models/<name>``, training (or resuming) it first.

    Models are trained and run on ``device`` (``auto``: CUDA when available).
    """
    from detaccel.config import load_config
    from detaccel.engine import init_distributed
    from detaccel.engine.loading import load_detector
    from detaccel.engine.trainer import FINAL_MODEL, LAST_CHECKPOINT, Trainer
    from detaccel.models.svd import compress_head

    info = init_distributed(device)
    loaded: dict[str, LoadedDetector] = {}
    for item in spec.detectors:
        if item.base is not None:
            base = loaded[item.base]
            model = copy.deepcopy(base.model)
            compress_head(model.head, ranks=item.svd)
            config = copy.deepcopy(base.config)
            config.head.svd_ranks = {**config.head.svd_ranks, **item.svd}
            loaded[item.name] = LoadedDetector(item.name, config, model.eval(), base.class_names)
            continue
        config = load_config(item.config, [*item.overrides, *data_overrides])
        config.train.eval_after_training = False  # the matrix measures every model on its own images
        model_dir = out_dir / "models" / item.name
        final = Path(item.checkpoint) if item.checkpoint else model_dir / FINAL_MODEL
        if item.checkpoint and not final.is_file():
            raise MatrixError(f"detectors.{item.name}.checkpoint: {final}: no such file")
        if not final.is_file():
            resume = (model_dir / LAST_CHECKPOINT).is_file()
            print(f"training {item.name} ({item.config}){' from its last checkpoint' if resume else ''}")
            Trainer(config, model_dir, info, resume=resume or None, progress=progress).train()
        config, model, class_names = load_detector(str(final), config)
        if item.svd:
            compress_head(model.head, ranks=item.svd)
        loaded[item.name] = LoadedDetector(item.name, config, model.to(info.device).eval(), class_names)
    return loaded


def run_matrix(
    spec: MatrixSpec,
    detectors: Mapping[str, LoadedDetector],
    records: Sequence,
    out_dir: Path,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Every (detector, generator) pair on ``records``; each pair's results are kept in ``out_dir/pairs``."""
    pairs_dir = out_dir / "pairs"
    pairs_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for det_name, detector in detectors.items():
        for gen_name, params in spec.generators.items():
            path = pairs_dir / f"{det_name}__{gen_name}.json"
            if path.is_file():
                saved = json.loads(path.read_text())
                if saved.get("images") == len(records):
                    print(f"{det_name} + {gen_name}: reusing {path}")
                    results.append(saved)
                    continue
            own = detector.config.proposals
            if gen_name == own.name:  # the detector's own generator: its parameters, the matrix's on top
                params = {**own.params, **params}
            try:
                detector.model.set_proposal_generator(gen_name, params)
            except ValueError as error:
                raise MatrixError(f"generators.{gen_name} on detector {det_name!r}: {error}") from None
            figures, timer = run_pair(detector, gen_name, records, spec.warmup, progress)
            stage_dir = out_dir / "stages"
            stage_dir.mkdir(exist_ok=True)
            summary = timer.summary()
            (stage_dir / f"{det_name}__{gen_name}.csv").write_text(summary_csv(summary))
            (stage_dir / f"{det_name}__{gen_name}.md").write_text(summary_markdown(summary))
            path.write_text(json.dumps(figures, indent=2, default=float))
            print(
                f"{det_name} + {gen_name}: {1e3 * figures['seconds_per_image']:.1f} ms/image, "
                f"VOC07 mAP {figures['voc07_mAP']:.3f}, recall@0.5 {figures['recall@0.50']:.3f}"
            )
            results.append(figures)
    return results


def stacked_bars(results: Sequence[Mapping[str, Any]], path: Path, share: bool = False) -> None:
    """Per-stage stacked bars of every pair: milliseconds, or each stage's share in %."""
    from detaccel.profiling import StageStats

    summaries = {
        f"{r['detector']}\n{r['generator']}": {k: StageStats(**v) for k, v in r["stages"].items()}
        for r in results
    }
    plot_stacked_bars(summaries, path, share=share)
