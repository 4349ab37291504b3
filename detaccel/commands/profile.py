"""``detaccel profile``: per-stage latency of one detector with one proposal generator."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from detaccel.benchmarks.detection import LoadedDetector, detect_image, run_pair
    from detaccel.cli import CommandError
    from detaccel.commands._model_args import as_command_errors, use_generator
    from detaccel.commands.bench import data_overrides
    from detaccel.config import load_config
    from detaccel.engine import init_distributed
    from detaccel.engine.data import load_split
    from detaccel.engine.loading import load_detector
    from detaccel.profiling import chrome_trace, plot_stacked_bars, summary_csv, summary_markdown

    if not Path(args.checkpoint).is_file():
        raise CommandError(f"--checkpoint {args.checkpoint}: no such file")
    with as_command_errors():
        overrides = [*args.overrides, *data_overrides(args)]
        config = load_config(args.config, overrides) if args.config else None
        config, model, class_names = load_detector(args.checkpoint, config, () if args.config else overrides)
        device = init_distributed(args.device).device
        detector = LoadedDetector(config.model.family, config, model.to(device), class_names)
        generator_name = use_generator(model, config, args.generator)
        dataset = load_split(config, config.data.test_split, init_distributed("cpu"))
        records = list(dataset.records)[: args.images]
        figures, timer = run_pair(detector, generator_name, records, args.warmup, not args.no_progress)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = timer.summary()
    (out / "profile.json").write_text(json.dumps(figures, indent=2, default=float))
    (out / "stages.csv").write_text(summary_csv(summary))
    table = summary_markdown(summary)
    (out / "stages.md").write_text(table)
    plot_stacked_bars({f"{detector.name}\n{generator_name}": summary}, out / "stages.png")
    if args.trace:
        chrome_trace(lambda: detect_image(model, records[0]), out / "trace.json", device=device)
    print(table)
    print(
        f"{1e3 * figures['seconds_per_image']:.1f} ms/image over {len(records)} images "
        f"({args.warmup} warm-up), VOC07 mAP {figures['voc07_mAP']:.3f}; written to {out}"
    )
    return 0


def register(subparsers) -> None:
    from detaccel.commands._model_args import add_config_arguments, add_generator_argument
    from detaccel.commands.bench import add_data_arguments

    parser = subparsers.add_parser(
        "profile",
        help="per-stage latency of one detector on a dataset (JSON, CSV, Markdown, PNG, Chrome trace)",
    )
    add_config_arguments(parser)
    parser.add_argument("--checkpoint", required=True, help="a detaccel checkpoint")
    add_generator_argument(parser)
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
    add_data_arguments(parser)
    parser.set_defaults(func=run)
