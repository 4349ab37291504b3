"""``detaccel profile``: per-stage latency of one detector with one proposal generator.

With a baseline (``--baseline-checkpoint``, ``--baseline-generator`` or
``--baseline-set``), a second configuration runs on the same images in the same
process, the two taking turns image by image, and the speed-up is reported: a
ratio that a change in the machine's load cannot bias towards either side.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _load(
    checkpoint: str,
    config_path: str | None,
    overrides: list[str],
    generator: str | None,
    device: Any,
    runtime: str | None = None,
):
    """``(LoadedDetector, generator name)`` of a checkpoint with overrides, a generator and a runtime."""
    from detaccel.benchmarks.detection import LoadedDetector
    from detaccel.cli import CommandError
    from detaccel.commands._model_args import (
        inference_device,
        model_path_exists,
        use_generator,
        use_runtime,
    )
    from detaccel.config import load_config
    from detaccel.engine.loading import load_detector

    if not model_path_exists(checkpoint):
        raise CommandError(f"checkpoint {checkpoint}: no such file or export directory")
    config = load_config(config_path, overrides) if config_path else None
    config, model, class_names = load_detector(checkpoint, config, () if config_path else overrides)
    use_runtime(model, config, runtime)
    inference_device(str(device), model)  # an exported detector: the CPU only
    detector = LoadedDetector(config.model.family, config, model.to(device), class_names)
    return detector, use_generator(model, config, generator)


def _has_baseline(args: argparse.Namespace) -> bool:
    return bool(args.baseline_checkpoint or args.baseline_generator or args.baseline_overrides)


def run(args: argparse.Namespace) -> int:
    from detaccel.benchmarks.detection import PairRun, detect_image, run_interleaved, run_pair
    from detaccel.cli import CommandError
    from detaccel.commands._model_args import as_command_errors
    from detaccel.commands.bench import data_overrides
    from detaccel.engine import init_distributed
    from detaccel.engine.data import load_split
    from detaccel.profiling import chrome_trace, plot_stacked_bars, summary_csv, summary_markdown

    if args.images < 1 or args.warmup < 0:
        raise CommandError("--images must be at least 1 and --warmup at least 0")
    with as_command_errors():
        data = data_overrides(args)
        device = init_distributed(args.device).device
        detector, generator_name = _load(
            args.checkpoint, args.config, [*args.overrides, *data], args.generator, device, args.runtime
        )
        dataset = load_split(detector.config, detector.config.data.test_split, init_distributed("cpu"))
        records = list(dataset.records)[: args.images]
        if _has_baseline(args):
            baseline, baseline_name = _load(
                args.baseline_checkpoint or args.checkpoint,
                None,
                [*args.baseline_overrides, *data],
                args.baseline_generator,
                device,
            )
            runs = [
                PairRun(detector, generator_name, args.warmup),
                PairRun(baseline, baseline_name, args.warmup),
            ]
            figures, baseline_figures = run_interleaved(runs, records, not args.no_progress)
            timers = [run.timer for run in runs]
        else:
            figures, timer = run_pair(detector, generator_name, records, args.warmup, not args.no_progress)
            baseline_figures, timers = None, [timer]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summaries = [timer.summary() for timer in timers]
    tables = [summary_markdown(summary) for summary in summaries]
    lines = [
        f"{1e3 * figures['seconds_per_image']:.1f} ms/image over {len(records)} images "
        f"({args.warmup} warm-up), VOC07 mAP {figures['voc07_mAP']:.3f}"
    ]
    bars = {f"{detector.name}\n{generator_name}": summaries[0]}
    if baseline_figures is not None:
        speedup = baseline_figures["seconds_per_image"] / figures["seconds_per_image"]
        figures["baseline"] = baseline_figures
        figures["speedup_vs_baseline"] = speedup
        tables = [f"profiled ({figures['proposal_source']}):\n\n{tables[0]}",
                  f"baseline ({baseline_figures['proposal_source']}):\n\n{tables[1]}"]  # fmt: skip
        lines = [
            f"profiled: {lines[0]}",
            f"baseline: {1e3 * baseline_figures['seconds_per_image']:.1f} ms/image, VOC07 mAP "
            f"{baseline_figures['voc07_mAP']:.3f}",
            f"speed-up over the baseline: {speedup:.2f}x (same images, taking turns image by image)",
        ]
        bars[f"baseline: {baseline.name}\n{baseline_name}"] = summaries[1]
    (out / "profile.json").write_text(json.dumps(figures, indent=2, default=float))
    (out / "stages.csv").write_text(summary_csv(summaries[0]))
    report = "\n".join(tables)
    (out / "stages.md").write_text(report + "\n" + "\n".join(lines) + "\n")
    plot_stacked_bars(bars, out / "stages.png")
    if args.trace:
        chrome_trace(lambda: detect_image(detector.model, records[0]), out / "trace.json", device=device)
    print(report)
    print("\n".join(lines) + f"; written to {out}")
    return 0


def register(subparsers) -> None:
    from detaccel.commands._model_args import (
        MODEL_HELP,
        add_config_arguments,
        add_generator_argument,
        add_runtime_argument,
    )
    from detaccel.commands.bench import add_data_arguments

    parser = subparsers.add_parser(
        "profile",
        help="per-stage latency of one detector on a dataset (JSON, CSV, Markdown, PNG, Chrome trace)",
        description="Per-stage latency of one detector on a dataset. With a baseline (any --baseline-* "
        "option), a second configuration runs on the same images, the two taking turns image by image, "
        "and the speed-up over it is reported.",
    )
    add_config_arguments(parser)
    parser.add_argument("--checkpoint", required=True, help=MODEL_HELP)
    add_generator_argument(parser)
    add_runtime_argument(parser)
    parser.add_argument("--images", type=int, default=20, help="images to profile (default: 20)")
    parser.add_argument("--warmup", type=int, default=2, help="warm-up images, not counted (default: 2)")
    parser.add_argument(
        "--trace", action="store_true", help="also write a Chrome trace of one image (trace.json)"
    )
    parser.add_argument(
        "--out", default="outputs/profile", help="output directory (default: outputs/profile)"
    )
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    baseline = parser.add_argument_group("baseline (compared on the same images, taking turns)")
    baseline.add_argument(
        "--baseline-checkpoint", metavar="PATH", help="the baseline's checkpoint (default: --checkpoint)"
    )
    baseline.add_argument(
        "--baseline-generator", metavar="NAME", help="the baseline's proposal generator (default: its own)"
    )
    baseline.add_argument(
        "--baseline-set",
        dest="baseline_overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a value of the baseline checkpoint's configuration (repeatable)",
    )
    add_data_arguments(parser)
    parser.set_defaults(func=run)
