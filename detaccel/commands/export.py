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
    calibration = None
    if args.int8_backbone is not None:
        if args.int8_backbone < 1:
            raise CommandError("--int8-backbone: expected a number of calibration images, at least 1")
        with as_command_errors():
            calibration = calibration_images(config, args.int8_backbone)
    try:
        manifest = export_detector(model, config, args.out, calibration)
    except ExportError as error:
        raise CommandError(str(error)) from None
    for name, graph in manifest["graphs"].items():
        print(f"{Path(args.out) / name}: largest difference from the model {graph['max_difference']:.2g}")
    precision = manifest["backbone_precision"]
    if precision["precision"] == "int8":
        print(
            f"{Path(args.out) / 'backbone.onnx'}: int8, calibrated on {precision['calibration_images']} "
            f"training images; cosine to the float maps {precision['cosine']:.4f} "
            f"(worst {precision['worst_cosine']:.4f})"
        )
    print(f"{Path(args.out) / 'manifest.json'}")
    return 0


def calibration_images(config, count: int) -> list:
    """``count`` images spread evenly over the configuration's training split (RGB ``uint8``)."""
    from detaccel.data.io import read_image
    from detaccel.engine import init_distributed
    from detaccel.engine.data import load_split

    records = list(load_split(config, config.data.train_split, init_distributed("cpu")).records)
    step = max(1, len(records) // count)
    return [read_image(record.file_path) for record in records[::step][:count]]


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
    parser.add_argument(
        "--int8-backbone",
        type=int,
        metavar="IMAGES",
        help="quantise the backbone graph to int8 (static, per channel), calibrated on this many images "
        "of the training split; default: float32",
    )
    add_override_argument(parser)
    parser.set_defaults(func=run)
