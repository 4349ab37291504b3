"""``detaccel export``: a trained detector's dense parts as ONNX graphs, with their manifest."""

from __future__ import annotations

import argparse
from pathlib import Path


def run(args: argparse.Namespace) -> int:
    from detaccel.cli import CommandError
    from detaccel.commands._model_args import as_command_errors
    from detaccel.engine.export import ExportError, export_detector
    from detaccel.engine.loading import load_detector
    from detaccel.engine.quantize import calibration_images

    if not Path(args.checkpoint).is_file():
        raise CommandError(f"{args.checkpoint}: no such file")
    with as_command_errors():
        config, model, _ = load_detector(args.checkpoint, overrides=args.overrides)
    calibration = None
    if args.search is not None and args.int8_backbone is None:
        args.int8_backbone = SEARCH_CALIBRATION_IMAGES
    if args.int8_backbone is not None:
        if args.int8_backbone < 1:
            raise CommandError("--int8-backbone: expected a number of calibration images, at least 1")
        with as_command_errors():
            calibration = calibration_images(config, args.int8_backbone)
    try:
        if args.search is not None:
            return _search(args, model, config, calibration)
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


SEARCH_CALIBRATION_IMAGES = 32


def _search(args: argparse.Namespace, model, config, calibration: list) -> int:
    """``--search``: the fastest deployed form within the budget on the validation split, exported."""
    from detaccel.cli import CommandError
    from detaccel.commands._model_args import as_command_errors
    from detaccel.engine.deploy_search import search_deployment, search_records

    if args.search < 0:
        raise CommandError("--search: expected the VOC07 points the mAP may lose, at least 0")
    try:
        with as_command_errors():
            records = search_records(config, args.val_split, args.val_images, args.seed)
    except ValueError as error:
        raise CommandError(f"--val-split {error}") from None
    result = search_deployment(
        model, config, model.class_names, records, calibration, args.search, args.out, not args.no_progress
    )
    for row in result["candidates"]:
        print(
            f"  {row['precision']:>7}  scale {row['test_scale']:>4}  <= {row['max_test']:>4} boxes: "
            f"mAP {row['voc07_mAP']:.4f}, {1e3 * row['seconds_per_image']:.1f} ms/image"
        )
    chosen, reference = result["chosen"], result["reference"]
    print(
        f"chosen: {chosen['precision']} backbone, test scale {chosen['test_scale']}, at most "
        f"{chosen['max_test']} proposals: mAP {chosen['voc07_mAP']:.4f} (float export as configured "
        f"{reference['voc07_mAP']:.4f}), {reference['seconds_per_image'] / chosen['seconds_per_image']:.2f}x "
        f"faster on {result['validation_images']} images of {args.val_split!r} -> {args.out}"
    )
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
    parser.add_argument(
        "--int8-backbone",
        type=int,
        metavar="IMAGES",
        help="quantise the backbone graph to int8 (static, per channel), calibrated on this many images "
        "of the training split; default: float32",
    )
    search = parser.add_argument_group("choosing the deployed form (--search)")
    search.add_argument(
        "--search",
        type=float,
        metavar="POINTS",
        help="export the fastest of: float32 or int8 backbone (calibrated on --int8-backbone images, default "
        f"{SEARCH_CALIBRATION_IMAGES}) x the test scale or 0.8 of it x the proposal cap or 300, 100, whose "
        "validation VOC07 mAP stays within POINTS of the float export as configured (search.json: all)",
    )
    search.add_argument("--val-split", default="val", help="the split searched on (default: val)")
    search.add_argument(
        "--val-images", type=int, default=30, help="validation images (seeded sample; default: 30)"
    )
    search.add_argument("--seed", type=int, default=0, help="seed of the image sample")
    search.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_override_argument(parser)
    parser.set_defaults(func=run)
