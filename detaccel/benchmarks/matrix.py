"""The benchmark matrix: which detectors and generators to run, training what is missing, and the run.

A matrix file (YAML) names detectors (a detector config, optional overrides,
``checkpoint: <model file>`` to use a trained model instead of training one,
or ``from: <detector>`` for a copy with test-time ``overrides``, ``svd: {layer: rank}``, ``compress:
{max_map_drop: 1.0, ...}`` (the head compressed by ``compress --auto`` on the
validation split), ``runtime: onnxruntime`` or ``export: {search: 1.0, int8_images: 32, ...}`` (the
model exported and run from its export directory; with ``search``, its deployed form chosen by
``detaccel export --search`` on the validation split); ``generators: [...]`` limits a
detector to some of the matrix's generators), proposal generators with their
parameters (a detector's own generator takes its configuration's parameters, the
matrix's on top) and optionally ``peer: {like: <detector>}``: torchvision's
Faster R-CNN on that detector's backbone, data and image scales, trained for the
same ``train.max_seconds`` with torchvision's own recipe. Trained models and
finished results are kept in the output directory, so an interrupted run picks
up where it stopped.
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
from detaccel.models.backbones import RUNTIMES
from detaccel.profiling import plot_stacked_bars, summary_csv, summary_markdown

MATRIX_KEYS = {"images", "warmup", "detectors", "generators", "peer"}
DETECTOR_KEYS = {
    "config",
    "overrides",
    "from",
    "svd",
    "compress",
    "runtime",
    "export",
    "generators",
    "checkpoint",
}
EXPORT_KEYS = {"search", "int8_images", "val_split", "val_images", "seed"}
COMPRESS_KEYS = {"max_map_drop", "evaluations", "objective", "val_split", "val_images", "seed"}
TRAINING_FILE = "training.json"  # iterations and seconds of a model the matrix trained


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
    compress: dict[str, Any] | None = None  # ``compress --auto`` options for a copy of ``base``
    runtime: str | None = None  # where the backbone runs at inference (``Backbone.set_runtime``)
    export: dict[str, Any] | None = None  # ``detaccel export`` options for a copy of ``base``
    generators: list[str] | None = None  # the matrix's generators this detector runs with (default: all)

    @property
    def compressed(self) -> bool:
        """Whether the head differs from the base detector's."""
        return bool(self.svd) or self.compress is not None


@dataclass
class MatrixSpec:
    detectors: list[DetectorSpec]
    generators: dict[str, dict[str, Any]]
    images: int | None = None
    warmup: int = 1
    peer: str | None = None  # the detector whose backbone, data and seconds the torchvision peer takes


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
        compress = entry.get("compress")
        if compress is not None:
            compress = dict(_mapping(compress, f"detectors.{name}.compress"))
            unknown = set(compress) - COMPRESS_KEYS
            if unknown or "from" not in entry or svd:
                raise MatrixError(
                    f"{source}: detectors.{name}.compress: with 'from' and without 'svd', keys "
                    f"{', '.join(sorted(COMPRESS_KEYS))}"
                    + (f" (unknown: {sorted(unknown)[0]!r})" if unknown else "")
                )
        runtime = entry.get("runtime")
        if runtime is not None and runtime not in RUNTIMES:
            raise MatrixError(
                f"{source}: detectors.{name}.runtime: one of {', '.join(RUNTIMES)}, got {runtime!r}"
            )
        export = entry.get("export")
        if export is not None:
            export = dict(_mapping(export, f"detectors.{name}.export"))
            unknown = set(export) - EXPORT_KEYS
            if unknown or "from" not in entry or svd or compress is not None or runtime is not None:
                raise MatrixError(
                    f"{source}: detectors.{name}.export: with 'from' and without 'svd', 'compress' or "
                    f"'runtime', keys {', '.join(sorted(EXPORT_KEYS))}"
                    + (f" (unknown: {sorted(unknown)[0]!r})" if unknown else "")
                )
        subset = entry.get("generators")
        if subset is not None and (
            not isinstance(subset, list) or not all(isinstance(g, str) for g in subset)
        ):
            raise MatrixError(f"{source}: detectors.{name}.generators: expected a list of generator names")
        detectors.append(
            DetectorSpec(
                name,
                entry.get("config"),
                overrides,
                entry.get("from"),
                svd,
                checkpoint,
                compress,
                runtime,
                export,
                subset,
            )
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
    for spec in detectors:
        missing = [g for g in spec.generators or () if g not in generators]
        if missing:
            raise MatrixError(
                f"{source}: detectors.{spec.name}.generators: {missing[0]!r} is not one of the matrix's "
                f"generators ({', '.join(generators)})"
            )
    peer = data.get("peer")
    if peer is not None:
        peer = _mapping(peer, "peer")
        if set(peer) != {"like"} or peer["like"] not in known:
            raise MatrixError(
                f"{source}: peer: expected {{like: <a detector of the matrix>}}, got {dict(peer)}"
            )
        peer = peer["like"]
    images, warmup = data.get("images"), data.get("warmup", 1)
    for key, value in (("images", images), ("warmup", warmup)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise MatrixError(f"{source}: matrix key {key!r}: expected a non-negative integer, got {value!r}")
    return MatrixSpec(detectors, generators, images, warmup, peer)


def lineage(spec: MatrixSpec, name: str) -> list[DetectorSpec]:
    """The detector called ``name``, the one it derives from, and so on to a trained one."""
    by_name = {d.name: d for d in spec.detectors}
    chain = [by_name[name]] if name in by_name else []
    while chain and chain[-1].base is not None:
        chain.append(by_name[chain[-1].base])
    return chain


def describe_variant(item: DetectorSpec) -> str:
    """How a derived detector differs from its base, in words for the report."""
    parts = list(item.overrides)
    if item.svd:
        parts.append("SVD " + ",".join(f"{layer}={rank}" for layer, rank in item.svd.items()))
    if item.compress is not None:
        options = item.compress
        parts.append(
            f"compress --auto, {options.get('objective', 'latency')}, "
            f"≤ {options.get('max_map_drop', 1.0):g} point budget"
        )
    if item.runtime is not None:
        parts.append(f"backbone in {item.runtime}")
    if item.export is not None:
        options = item.export
        if "search" in options:
            parts.append(f"exported, deployed form chosen by export --search {options['search']:g}")
        else:
            parts.append(f"exported, int8 backbone ({options.get('int8_images', 32)} calibration images)")
    return "; ".join(parts) or "a copy"


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
        peer = spec.peer if spec.peer in wanted else None
        spec = dataclasses.replace(spec, detectors=[d for d in spec.detectors if d.name in wanted], peer=peer)
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

    Models are trained and run on ``device`` (``auto``: CUDA when available). A compressed copy
    whose search finds no head within its budget is left out, with a message.
    """
    from detaccel.compression import BudgetNotMet
    from detaccel.config import apply_overrides, config_from_dict, config_to_dict, load_config
    from detaccel.engine import init_distributed
    from detaccel.engine.loading import load_detector
    from detaccel.engine.trainer import FINAL_MODEL, LAST_CHECKPOINT, Trainer
    from detaccel.models.svd import compress_head

    info = init_distributed(device)
    loaded: dict[str, LoadedDetector] = {}
    for item in spec.detectors:
        model_dir = out_dir / "models" / item.name
        if item.base is not None:
            if item.base not in loaded:
                print(f"{item.name}: left out ({item.base} is not there)")
                continue
            base = loaded[item.base]
            if item.compress is not None:
                try:
                    config, model = auto_compressed(base, item.compress, model_dir, progress)
                except BudgetNotMet as error:
                    print(f"{item.name}: left out: {error}")
                    continue
            elif item.export is not None:
                config, model = exported_copy(base, item.export, model_dir, progress)
            else:
                config, model = copy.deepcopy(base.config), copy.deepcopy(base.model)
            if item.overrides:  # test-time settings only: the weights are the base's
                config = config_from_dict(apply_overrides(config_to_dict(config), item.overrides))
                model.configure_inference(config)
            if item.svd:
                compress_head(model.head, ranks=item.svd)
                config.head.svd_ranks = {**config.head.svd_ranks, **item.svd}
        else:
            config = load_config(item.config, [*item.overrides, *data_overrides])
            config.train.eval_after_training = False  # the matrix measures every model on its own images
            final = Path(item.checkpoint) if item.checkpoint else model_dir / FINAL_MODEL
            if item.checkpoint and not final.is_file():
                raise MatrixError(f"detectors.{item.name}.checkpoint: {final}: no such file")
            if not final.is_file():
                resume = (model_dir / LAST_CHECKPOINT).is_file()
                print(f"training {item.name} ({item.config}){' from its last checkpoint' if resume else ''}")
                trained = Trainer(config, model_dir, info, resume=resume or None, progress=progress).train()
                training = {"iterations": trained["iterations"], "train_seconds": trained["train_seconds"]}
                (model_dir / TRAINING_FILE).write_text(json.dumps(training) + "\n")
            config, model, class_names = load_detector(str(final), config)
            if item.svd:
                compress_head(model.head, ranks=item.svd)
            base = LoadedDetector(item.name, config, model, class_names)
        model = model.to("cpu" if model.backbone.exported else info.device).eval()  # exports: the CPU
        if item.runtime is not None:
            model.backbone.set_runtime(item.runtime)
            config.backbone.runtime = item.runtime
        loaded[item.name] = LoadedDetector(item.name, config, model, base.class_names, item.generators)
    return loaded


def training_figures(out_dir: Path, name: str) -> dict[str, Any]:
    """Iterations and training seconds of a detector the matrix trained (empty when it was given)."""
    path = out_dir / "models" / name / TRAINING_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def exported_copy(
    base: LoadedDetector, options: Mapping[str, Any], model_dir: Path, progress: bool
) -> tuple[Any, Any]:
    """``(config, model)`` of ``base`` exported to ``model_dir/export`` (kept and reused) with an int8
    backbone or, with ``search``, the deployed form ``detaccel export --search`` chooses, run from there."""
    from detaccel.engine.deploy_search import search_deployment, search_records
    from detaccel.engine.export import export_detector
    from detaccel.engine.exported import is_export_directory, load_exported
    from detaccel.engine.quantize import calibration_images

    directory = model_dir / "export"
    if not is_export_directory(directory):
        config, model = copy.deepcopy(base.config), copy.deepcopy(base.model).cpu()
        config.backbone.runtime = "torch"
        calibration = calibration_images(config, int(options.get("int8_images", 32)))
        if "search" in options:
            try:
                records = search_records(
                    config,
                    options.get("val_split", "val"),
                    options.get("val_images", 30),
                    options.get("seed", 0),
                )
            except ValueError as error:
                raise MatrixError(f"detectors.{model_dir.name}.export.val_split: {error}") from None
            budget = float(options["search"])
            print(f"choosing {base.name}'s deployed form within {budget:g} VOC07 points ({directory})")
            search_deployment(
                model, config, base.class_names, records, calibration, budget, directory, progress
            )
        else:
            export_detector(model, config, directory, calibration)
    config, model, _ = load_exported(directory)
    return config, model


def auto_compressed(
    base: LoadedDetector, options: Mapping[str, Any], model_dir: Path, progress: bool
) -> tuple[Any, Any]:
    """``(config, model)`` of ``base`` with its head compressed by ``compress --auto`` on the validation
    split (the chosen checkpoint is kept in ``model_dir`` and reused)."""
    from detaccel.compression import AutoCompression, run_auto
    from detaccel.compression.auto import proposal_cache_dir, validation_split_records
    from detaccel.engine import save_checkpoint
    from detaccel.engine.loading import load_detector
    from detaccel.engine.trainer import checkpoint_payload

    checkpoint = model_dir / "model_compressed.pth"
    if not checkpoint.is_file():
        config, model = copy.deepcopy(base.config), copy.deepcopy(base.model).cpu()
        search = AutoCompression(
            objective=options.get("objective", "latency"),
            max_map_drop=float(options.get("max_map_drop", 1.0)),
            evaluations=int(options.get("evaluations", 20)),
            seed=int(options.get("seed", 0)),
            progress=progress,
        )
        validation = validation_split_records(
            config,
            model,
            options.get("val_split", "val"),
            options.get("val_images"),
            search.seed,
            proposal_cache_dir(config, model_dir),
            progress,
        )
        print(f"compressing {base.name}'s head within {search.max_map_drop:g} VOC07 points ({model_dir})")

        def save(path: Path, chosen_config: Any, chosen_model: Any) -> None:
            save_checkpoint(path, checkpoint_payload(chosen_config, base.class_names, chosen_model, 0))

        run_auto(model, config, base.class_names, validation, [], search, model_dir, save)
    config, model, _ = load_detector(str(checkpoint), copy.deepcopy(base.config))
    return config, model


def prepare_peer(
    spec: MatrixSpec,
    detectors: Mapping[str, LoadedDetector],
    out_dir: Path,
    progress: bool = True,
) -> tuple[Any, dict[str, Any]] | None:
    """The trained torchvision peer of ``spec.peer`` (trained first, or loaded from ``out_dir/models/peer``)
    and its training figures; ``None`` when the matrix names no peer."""
    from detaccel.benchmarks.peer import build_peer, load_peer, save_peer, train_peer
    from detaccel.engine import init_distributed
    from detaccel.engine.data import load_split

    if spec.peer is None:
        return None
    like = detectors[spec.peer]
    config = copy.deepcopy(like.config)
    seconds = config.train.max_seconds
    if seconds is None:
        raise MatrixError(f"peer: detector {spec.peer!r} has no train.max_seconds for the peer to match")
    model = build_peer(config, len(like.class_names))
    path = out_dir / "models" / "peer" / "model.pth"
    if path.is_file():
        return model.eval(), load_peer(model, path)
    print(f"training torchvision's Faster R-CNN like {spec.peer} for {seconds:g} s")
    records = list(load_split(config, config.data.train_split, init_distributed("cpu")).records)
    training = train_peer(model, records, seconds, config.train.images_per_batch, config.train.seed, progress)
    training["like"] = spec.peer
    save_peer(model, path, training)
    return model.eval(), training


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
            if detector.generators is not None and gen_name not in detector.generators:
                continue
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
            chain = lineage(spec, det_name)
            if len(chain) > 1:  # a variant: named after the detector it derives from, first to last change
                changes = [describe_variant(d) for d in reversed(chain[:-1])]
                figures.update(
                    base=chain[-1].name,
                    variant="; ".join(changes),
                    compressed=any(d.compressed for d in chain[:-1]),
                )
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


def run_peer(
    peer: Any,
    training: Mapping[str, Any],
    class_names: tuple[str, ...],
    records: Sequence,
    warmup: int,
    out_dir: Path,
    progress: bool = True,
) -> dict[str, Any]:
    """The trained peer scored and timed on ``records`` (kept in ``out_dir/pairs/peer.json``)."""
    from detaccel.benchmarks.peer import PEER_NAME, score_peer

    path = out_dir / "pairs" / "peer.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("images") == len(records):
            print(f"{PEER_NAME}: reusing {path}")
            return saved
    figures, _ = score_peer(peer, list(records), class_names, warmup, progress)
    figures.update(detector=PEER_NAME, images=len(records), **training)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2, default=float))
    ms, mAP = 1e3 * figures["seconds_per_image"], figures["voc07_mAP"]
    print(f"{PEER_NAME}: {ms:.1f} ms/image, VOC07 mAP {mAP:.3f}")
    return figures


def stacked_bars(results: Sequence[Mapping[str, Any]], path: Path, share: bool = False) -> None:
    """Per-stage stacked bars of every pair: milliseconds, or each stage's share in %."""
    from detaccel.profiling import StageStats

    summaries = {
        f"{r['detector']}\n{r['generator']}": {k: StageStats(**v) for k, v in r["stages"].items()}
        for r in results
    }
    plot_stacked_bars(summaries, path, share=share)
