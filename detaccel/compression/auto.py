"""``detaccel compress --auto``: search, write the chosen checkpoint, score it once on the test split."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from detaccel.compression.candidates import LayerChoice, compressed_copy, compressible_layers, pack_trained
from detaccel.compression.finetune import TrainingRegions, finetune_head
from detaccel.compression.fitness import CachedRegions
from detaccel.compression.report import describe, summary_markdown, write_pareto_plot
from detaccel.compression.search import HeadSearch, SearchResult
from detaccel.config.schema import Config
from detaccel.models.detector import RegionDetector


class BudgetNotMet(RuntimeError):
    """No candidate kept the mAP within the budget (the search's files are written all the same)."""


@dataclass
class AutoCompression:
    """Options of one automatic compression run."""

    objective: str = "size"
    max_map_drop: float = 1.0
    evaluations: int = 60
    seed: int = 0
    time_limit: float | None = None
    finetune_iters: int = 0
    progress: bool = True


def int8_is_faster(model: RegionDetector, cache: CachedRegions) -> bool:
    """Whether int8 fc6 (and the rest) beats float32 on this CPU, measured on the cached RoIs."""
    names = compressible_layers(model)
    quantised, _, _ = compressed_copy(model, {name: LayerChoice(int8=True) for name in names})
    return cache.head_ms_per_image(quantised) < cache.head_ms_per_image(model)


def validation_records(records: list, images: int | None, seed: int) -> list:
    """``images`` records of the validation split drawn with ``seed`` (all of them when ``None``)."""
    if images is None or images >= len(records):
        return list(records)
    return sorted(random.Random(seed).sample(list(records), images), key=lambda r: str(r.image_id))


def proposal_cache_dir(config: Config, out_dir: Path) -> Path:
    """Where the search keeps cacheable proposals: the configuration's cache, else ``out_dir/proposals``."""
    return Path(config.proposals.cache_dir) if config.proposals.cache_dir else out_dir / "proposals"


def validation_split_records(
    config: Config,
    model: RegionDetector,
    split: str,
    images: int | None,
    seed: int,
    cache_dir: Path,
    progress: bool = True,
) -> list:
    """The records of ``split`` the search scores on (``images`` of them drawn with ``seed``), each with
    the proposals ``model`` uses."""
    from detaccel.engine.data import load_split, records_for_model

    records = records_for_model(config, load_split(config, split), model, cache_dir, progress=progress)
    return validation_records(records, images, seed)


def run_auto(
    model: RegionDetector,
    config: Config,
    class_names: tuple[str, ...],
    validation: list,
    test: list,
    options: AutoCompression,
    out_dir: Path,
    save: Callable[[Path, Config, RegionDetector], object],
    train: list | None = None,
    log: Callable[[str], None] = print,
) -> SearchResult | None:
    """Search on ``validation`` records, write ``out_dir``/{search.jsonl, pareto.png, summary.md,
    model_compressed.pth} and score the chosen head once on ``test``. Budget 0 keeps the model.

    With ``options.finetune_iters``, the chosen head is fine-tuned on RoIs of the ``train``
    records (masks held, int8 applied after) and kept when its validation mAP is not lower."""
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = out_dir / "model_compressed.pth"
    if options.max_map_drop == 0:
        save(checkpoint, config, model)
        log("budget of 0 points: the model is kept as it is")
        return None
    log(f"pooling RoI features of {len(validation)} validation images (once)")
    cache = CachedRegions(model, validation, class_names, options.progress)
    int8 = True
    if options.objective == "latency":
        int8 = int8_is_faster(model, cache)
        log(f"int8 weights {'are' if int8 else 'are not'} faster here: {'offered' if int8 else 'left out'}")
    search = HeadSearch(model, cache, options.objective, options.max_map_drop, int8=int8, log=log)
    log(
        f"uncompressed: validation mAP {search.reference.map:.4f}, "
        f"head {search.reference.bytes / 1e6:.3f} MB, {search.reference.ms:.2f} ms/image"
    )
    result = search.run(options.evaluations, out_dir / "search.jsonl", options.seed, options.time_limit)
    write_pareto_plot(out_dir / "pareto.png", result, options.objective, options.max_map_drop)
    summary = out_dir / "summary.md"
    if result.best is None:
        summary.write_text(
            summary_markdown(result, options.objective, options.max_map_drop), encoding="utf-8"
        )
        closest = min(result.candidates or result.baselines, key=lambda e: e.map_drop)
        raise BudgetNotMet(
            f"no candidate kept the mAP within {options.max_map_drop:g} points of "
            f"{search.reference.map:.4f}; "
            f"the closest ({describe(closest)}) lost {closest.map_drop:.2f} points. Raise --max-map-drop or "
            f"--evaluations (every candidate is in {out_dir / 'search.jsonl'})"
        )
    compressed, ranks, packed = compressed_copy(model, result.best.candidate)
    notes = []
    if options.finetune_iters > 0 and train:
        tuned, tuned_packed, note = _finetuned(model, config, result.best, train, cache, options, log)
        notes.append(note)
        if tuned is not None:
            compressed, packed = tuned, tuned_packed
    config.head.svd_ranks = {**config.head.svd_ranks, **ranks}
    config.head.packed = {**config.head.packed, **packed}
    save(checkpoint, config, compressed)
    scores = None
    if test:
        log(f"scoring on the test split ({len(test)} images), once")
        test_cache = CachedRegions(model, test, class_names, options.progress)
        scores = {"before": test_cache.voc07_map(model), "after": test_cache.voc07_map(compressed)}
    uncompressed = out_dir / ".uncompressed.pth"
    save(uncompressed, config_without_compression(config, ranks, packed), model)
    if scores is not None:
        scores.update(bytes_before=uncompressed.stat().st_size, bytes_after=checkpoint.stat().st_size)
    uncompressed.unlink()
    summary.write_text(
        summary_markdown(result, options.objective, options.max_map_drop, scores, notes), encoding="utf-8"
    )
    return result


def _finetuned(model, config, best, train, cache, options, log):
    """``(fine-tuned packed model or None when it is not better, its head.packed, a sentence)``."""
    log(
        f"fine-tuning the chosen head for {options.finetune_iters} iterations on {len(train)} training images"
    )
    regions = TrainingRegions(model, train, config, options.seed, options.progress)
    tuned, _, _ = compressed_copy(model, best.candidate, pack=False)
    losses = finetune_head(tuned, regions, config, options.finetune_iters, seed=options.seed)
    packed = pack_trained(tuned, best.candidate)
    tuned_map = cache.voc07_map(tuned)
    kept = tuned_map >= best.map
    note = (
        f"Fine-tuned {options.finetune_iters} iterations on {len(regions)} training RoIs "
        f"(loss {losses[0]:.3f} -> {losses[-1]:.3f}): validation mAP {best.map:.4f} -> {tuned_map:.4f}, "
        f"{'kept' if kept else 'not kept (lower)'}."
    )
    log(note)
    return (tuned if kept else None), packed, note


def config_without_compression(config: Config, ranks: dict, packed: dict) -> Config:
    import copy

    plain = copy.deepcopy(config)
    plain.head.svd_ranks = {k: v for k, v in plain.head.svd_ranks.items() if k not in ranks}
    plain.head.packed = {k: v for k, v in plain.head.packed.items() if k not in packed}
    return plain
