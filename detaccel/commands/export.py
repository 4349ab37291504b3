"""``detaccel export``: a trained detector's dense parts as ONNX graphs, with their manifest."""

from __future__ import annotations

import argparse
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from detaccel.cli import CommandError
    from detaccel.commands._model_args import as_command_errors
    from detaccel.engine.export import ExportError, export_detector
    from detaccel.engine.loading import load_detector

    if not Path(args.checkpoint).is_file():
        raise CommandError(f"{args.checkpoint}: no such file")
    with as_command_errors():
        config, model, _ = load_detector(args.checkpoint, overrides=args.overrides)
    try:
        manifest = export_detector(model, config, args.out)
    except ExportError as error:
        raise CommandError(str(error)) from None
    for name, graph in manifest["graphs"].items():
        print(f"{Path(args.out) / name}: largest difference from the model {graph['max_difference']:.2g}")
    print(f"{Path(args.out) / 'manifest.json'}")
    return 0


def register(subparsers) -> None:
    from detaccel.commands._model_args import add_override_argument

    parser = subparsers.add_parser(
        "export",
        help="write a checkpoint's backbone, objectness head and RoI head as ONNX graphs with a manifest",
        description="ONNX graphs (opset 17, dynamic sizes) of the dense parts, each checked against the "
        "model in ONNX Runtime, and manifest.json with what runs between them (classes, normalisation, "
        "scales, RoI features, the proposal settings, post-processing).",
    )
    parser.add_argument("checkpoint", help="a detaccel checkpoint (trained or compressed)")
    parser.add_argument("-o", "--out", required=True, help="output directory")
    add_override_argument(parser)
    parser.set_defaults(func=run)
