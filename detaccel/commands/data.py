"""``detaccel data``: write the synthetic dataset, check a dataset."""

from __future__ import annotations

import argparse
import json
import time

from detaccel.commands._dataset_args import add_dataset_arguments, load_from_args, skipped_line
from detaccel.serialization import json_safe


def run_synth(args: argparse.Namespace) -> int:
    from detaccel.cli import CommandError
    from detaccel.data.synthetic import write_synthetic

    if args.num_images < 1:
        raise CommandError("--num-images must be at least 1")
    if args.width < 64 or args.height < 64:
        raise CommandError("--width and --height must be at least 64")
    start = time.perf_counter()
    try:
        root = write_synthetic(
            args.out,
            args.format,
            seed=args.seed,
            num_images=args.num_images,
            width=args.width,
            height=args.height,
            overwrite=args.overwrite,
        )
    except FileExistsError as error:
        raise CommandError(str(error)) from None
    seconds = time.perf_counter() - start
    print(f"wrote {args.num_images} synthetic images ({args.format}, seed {args.seed}) in {seconds:.1f} s")
    print(f"load with: --format {args.format} --root {root} --split <train|val|test|trainval>", end="")
    print(" --classes synthetic" if args.format == "voc" else "")
    return 0


def run_check(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    dataset = load_from_args(args, check_images=not args.no_decode)
    seconds = time.perf_counter() - start
    summary = dataset.summary()
    summary["seconds"] = round(seconds, 3)
    if args.json:
        print(json.dumps(json_safe(summary), indent=2))
        return 0
    print(
        f"{dataset.format} {dataset.root} split {dataset.split}: {summary['images']} images, "
        f"{summary['objects']} objects ({summary['difficult']} difficult, {summary['crowd']} crowd), "
        f"{summary['images_without_objects']} images without objects; loaded in {seconds:.2f} s"
    )
    for name, count in summary["objects_per_class"].items():
        print(f"  {name:20s} {count}")
    line = skipped_line(dataset)
    if line:
        print(line)
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="write the synthetic dataset, check a dataset")
    commands = parser.add_subparsers(dest="data_command", metavar="<data command>", required=True)

    synth = commands.add_parser(
        "synth", help="write the synthetic dataset (VOCdevkit or COCO layout, train/val/test splits)"
    )
    synth.add_argument("--out", required=True, help="output directory")
    synth.add_argument("--format", choices=("voc", "coco"), default="voc", help="layout (default: voc)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    synth.add_argument("--num-images", type=int, default=300, help="number of images (default: 300)")
    synth.add_argument("--width", type=int, default=320, help="image width (default: 320)")
    synth.add_argument("--height", type=int, default=240, help="image height (default: 240)")
    synth.add_argument("--overwrite", action="store_true", help="replace a dataset already written there")
    synth.set_defaults(func=run_synth)

    check = commands.add_parser("check", help="load a split, decode every image, print counts and problems")
    add_dataset_arguments(check)
    check.add_argument(
        "--no-decode", action="store_true", help="do not decode images (only check they exist)"
    )
    check.add_argument("--json", action="store_true", help="print as JSON")
    check.set_defaults(func=run_check)
