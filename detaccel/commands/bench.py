"""``detaccel bench``: the detection benchmark matrix (detectors x proposal generators) and its report."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

DEFAULT_MATRIX = "configs/bench/synthetic.yaml"


def data_overrides(args: argparse.Namespace) -> list[str]:
    """Config overrides that point every detector at ``--data-root``/``--format``/``--split``."""
    overrides = []
    if args.data_root:
        overrides += [f"data.root={args.data_root}", "data.synthetic=false"]
    if args.format:
        overrides.append(f"data.format={args.format}")
    if args.split:
        overrides.append(f"data.test_split={args.split}")
    return overrides


def run(args: argparse.Namespace) -> int:
    from detaccel.benchmarks.matrix import (
        MatrixError,
        load_matrix,
        prepare_detectors,
        prepare_peer,
        run_matrix,
        run_peer,
        select,
        training_figures,
    )
    from detaccel.benchmarks.report import comparisons, write_report
    from detaccel.cli import CommandError
    from detaccel.commands._model_args import as_command_errors
    from detaccel.engine import init_distributed
    from detaccel.engine.data import load_split

    if args.data_root and not Path(args.data_root).exists():
        raise CommandError(f"--data-root {args.data_root}: no such directory")
    split_names = lambda text: [n.strip() for n in text.split(",") if n.strip()] if text else None  # noqa: E731
    try:
        spec = select(load_matrix(args.matrix), split_names(args.detectors), split_names(args.generators))
    except MatrixError as error:
        raise CommandError(str(error)) from None
    if args.images is not None:
        spec.images = args.images
    out = Path(args.out)
    with as_command_errors():
        detectors = prepare_detectors(
            spec, out, data_overrides(args), progress=not args.no_progress, device=args.device
        )
        first = next(iter(detectors.values()))
        dataset = load_split(first.config, first.config.data.test_split, init_distributed("cpu"))
        records = list(dataset.records)[: spec.images] if spec.images else list(dataset.records)
        print(
            f"benchmarking {len(detectors)} detectors x {len(spec.generators)} generators "
            f"on {len(records)} images"
        )
        peer = prepare_peer(spec, detectors, out, progress=not args.no_progress)
        results = run_matrix(spec, detectors, records, out, progress=not args.no_progress)
        peer_figures = None
        if peer is not None:
            model, trained = peer
            peer_figures = run_peer(
                model, trained, first.class_names, records, spec.warmup, out, progress=not args.no_progress
            )
    context = {
        "dataset": f"{dataset.format} {dataset.root} split {dataset.split!r}",
        "images": len(records),
        "command": "detaccel " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "headline": spec.peer,
    }
    training = {name: figures for name in detectors if (figures := training_figures(out, name))}
    if peer_figures is not None:
        training[peer_figures["detector"]] = peer[1]
    report = write_report(results, out, context, peer_figures, training)
    for item in comparisons(results, spec.peer, peer_figures):
        print("\n".join([item.title, *(f"  {line}" for line in item.lines)]))
    print(f"report: {report}")
    return 0


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("dataset (default: each detector config's own)")
    group.add_argument("--data-root", help="dataset directory, e.g. VOCdevkit/VOC2007 or a COCO root")
    group.add_argument("--format", choices=("voc", "coco"), help="dataset format")
    group.add_argument("--split", help="split to benchmark on (default: the configs' data.test_split)")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="benchmark detectors x proposal generators: mAP, recall, per-stage latency, report",
        description="Trains the detectors the matrix names (reusing models already in --out), runs every "
        "detector with every proposal generator on the test split, and writes report.md, results.json and "
        "plots. An interrupted run reuses what was finished.",
    )
    parser.add_argument("--matrix", default=DEFAULT_MATRIX, help=f"matrix file (default: {DEFAULT_MATRIX})")
    parser.add_argument("--out", default="outputs/bench", help="output directory (default: outputs/bench)")
    parser.add_argument("--detectors", help="comma-separated subset of the matrix's detectors")
    parser.add_argument("--generators", help="comma-separated subset of the matrix's generators")
    parser.add_argument("--images", type=int, help="number of test images (default: the matrix's)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when available), cpu or cuda")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_data_arguments(parser)
    parser.set_defaults(func=run)
