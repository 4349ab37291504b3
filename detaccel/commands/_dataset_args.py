"""Command-line options shared by commands that load a dataset split."""

from __future__ import annotations

import argparse
import sys
import warnings

from detaccel.data import (
    FORMATS,
    BadInputWarning,
    CategoryWarning,
    DatasetError,
    DetectionDataset,
    load_dataset,
)
from detaccel.data.errors import describe_kinds
from detaccel.data.hints import dataset_error_hint

CLASSES_HELP = (
    "VOC class list: auto (default: the synthetic set's own, the 20 VOC classes for a VOC20xx folder "
    "whose objects are all of them, else discover), voc, synthetic, discover (the sorted names found in "
    "the dataset's annotations), or comma-separated names; COCO: the file's categories that have "
    "objects (auto, default), or the names of the categories to load"
)
SPLIT_DIR_HELP = "VOC: read <split>.txt from this directory (as written by `detaccel data split --split-dir`)"


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("dataset")
    group.add_argument("--format", choices=FORMATS, default="voc", help="dataset format (default: voc)")
    group.add_argument(
        "--root",
        help="VOC: the dataset directory (or a VOCdevkit holding one, or a flat folder of images and "
        ".xml files); COCO: the directory with annotations/instances_<split>.json (COCO, CVAT) or "
        "<split>/_annotations.coco.json (Roboflow)",
    )
    group.add_argument("--split", help="image set / annotation split, e.g. test (VOC: all for every image)")
    group.add_argument(
        "--annotations",
        metavar="FILE",
        help="COCO: the annotation file, in any layout (then --root and --split are optional)",
    )
    group.add_argument(
        "--images",
        metavar="DIR",
        help="COCO: the image folder (default: the one of FILE's folder, ../images and ../<split> that holds "
        "the listed images)",
    )
    group.add_argument("--split-dir", help=SPLIT_DIR_HELP)
    group.add_argument("--classes", default="auto", help=CLASSES_HELP)
    group.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip bad images and objects with a warning instead of failing",
    )
    group.add_argument("--allow-empty", action="store_true", help="VOC: accept images without objects")


def load_from_args(args: argparse.Namespace, check_images: bool) -> DetectionDataset:
    """Load the split the options name; print skipped problems as warnings; errors become CommandError."""
    from detaccel.cli import CommandError

    annotations = getattr(args, "annotations", None)
    if not annotations and not (args.root and args.split):
        raise CommandError("give --root and --split (COCO: or --annotations FILE)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadInputWarning)  # reported below from dataset.issues
        warnings.simplefilter("ignore", CategoryWarning)  # reported below from dataset.left_out_categories
        try:
            dataset = load_dataset(
                args.format,
                args.root,
                args.split,
                classes=args.classes,
                skip_bad=args.skip_bad,
                check_images=check_images,
                allow_empty=args.allow_empty,
                split_dir=getattr(args, "split_dir", None),
                annotations=annotations,
                images=getattr(args, "images", None),
            )
        except DatasetError as error:
            hint = dataset_error_hint(error, classes=args.classes, skip_bad=args.skip_bad, root=args.root)
            raise CommandError(f"{error}\n({hint})" if hint else str(error)) from None
        except ValueError as error:
            raise CommandError(str(error)) from None
    for issue in dataset.issues:
        print(f"detaccel: warning: {issue}", file=sys.stderr)
    if dataset.left_out_categories:
        listed = ", ".join(str(c) for c in dataset.left_out_categories)
        print(
            f"detaccel: warning: {dataset.annotation_file}: categories left out of the class list "
            f"(not trained or scored): {listed}",
            file=sys.stderr,
        )
    return dataset


def skipped_line(dataset: DetectionDataset) -> str:
    """The summary line about skipped problems ('' when there were none)."""
    count = len(dataset.issues)
    if not count:
        return ""
    images = sum(1 for issue in dataset.issues if issue.skipped == "image")
    parts = f"{_plural(images, 'image')}, {_plural(count - images, 'object')}"
    kinds = describe_kinds(dataset.summary()["skipped_by_kind"])
    return f"skipped {_plural(count, 'bad item')} ({parts}){': ' + kinds if kinds else ''}"


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
