"""Command-line options shared by commands that load a dataset split."""

from __future__ import annotations

import argparse
import sys
import warnings

from detaccel.data import FORMATS, BadInputWarning, DatasetError, DetectionDataset, load_dataset

SKIP_HINT = "rerun with --skip-bad to skip bad items with a warning"


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("dataset")
    group.add_argument("--format", choices=FORMATS, default="voc", help="dataset format (default: voc)")
    group.add_argument(
        "--root",
        required=True,
        help="VOC: the dataset directory (or a VOCdevkit holding one); COCO: the directory "
        "with annotations/instances_<split>.json",
    )
    group.add_argument("--split", required=True, help="image set / annotation split, e.g. test")
    group.add_argument(
        "--classes",
        default="voc",
        help="VOC class list: voc (the 20 classes, default), synthetic, discover (from the "
        "annotations), or comma-separated names",
    )
    group.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip bad images and objects with a warning instead of failing",
    )
    group.add_argument("--allow-empty", action="store_true", help="VOC: accept images without objects")


def load_from_args(args: argparse.Namespace, check_images: bool) -> DetectionDataset:
    """Load the split the options name; print skipped problems as warnings; errors become CommandError."""
    from detaccel.cli import CommandError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadInputWarning)  # reported below from dataset.issues
        try:
            dataset = load_dataset(
                args.format,
                args.root,
                args.split,
                classes=args.classes,
                skip_bad=args.skip_bad,
                check_images=check_images,
                allow_empty=args.allow_empty,
            )
        except DatasetError as error:
            raise CommandError(f"{error}\n({SKIP_HINT})" if not args.skip_bad else str(error)) from None
        except ValueError as error:
            raise CommandError(str(error)) from None
    for issue in dataset.issues:
        print(f"detaccel: warning: {issue}", file=sys.stderr)
    return dataset


def skipped_line(dataset: DetectionDataset) -> str:
    """The summary line about skipped problems ('' when there were none)."""
    count = len(dataset.issues)
    if not count:
        return ""
    images = sum(1 for issue in dataset.issues if issue.skipped == "image")
    parts = f"{_plural(images, 'image')}, {_plural(count - images, 'object')}"
    return f"skipped {_plural(count, 'bad item')} ({parts})"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
