"""``detaccel data``: write the synthetic dataset, check a dataset, split a dataset into parts."""

from __future__ import annotations

import argparse
import json
import math
import os
import stat
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from detaccel.commands._dataset_args import add_dataset_arguments, load_from_args, skipped_line
from detaccel.data import DetectionDataset, ImageRecord
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
        existing = str(error).split(" (pass ")[0]  # the library's wording names its keyword argument too
        raise CommandError(f"{existing} (pass --overwrite to replace it)") from None
    seconds = time.perf_counter() - start
    print(f"wrote {args.num_images} synthetic images ({args.format}, seed {args.seed}) in {seconds:.1f} s")
    print(f"load with: --format {args.format} --root {root} --split <train|val|test|trainval>", end="")
    print(" --classes synthetic" if args.format == "voc" else "")
    return 0


def _voc_split_report(args: argparse.Namespace, dataset: DetectionDataset) -> dict[str, Any]:
    """Layout, split overlaps and inconsistent unions of the VOC dataset being checked."""
    from detaccel.data.splits import split_overlaps, union_problems, voc_split_ids
    from detaccel.data.voc import find_voc_layout

    splits = voc_split_ids(dataset.root, args.split_dir)
    overlaps = split_overlaps(splits)
    return {
        "layout": find_voc_layout(dataset.root).describe(),
        "splits": {name: len(ids) for name, ids in splits.items()},
        "split_overlaps": [
            {"splits": [o.first, o.second], "shared": o.shared, "sizes": [o.first_size, o.second_size]}
            for o in overlaps
        ],
        "split_warnings": [str(o) for o in overlaps] + union_problems(splits),
    }


def run_check(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    dataset = load_from_args(args, check_images=not args.no_decode)
    seconds = time.perf_counter() - start
    summary = dataset.summary()
    summary["seconds"] = round(seconds, 3)
    summary["class_names"] = list(dataset.class_names)
    if dataset.format == "voc":
        summary.update(_voc_split_report(args, dataset))
    for warning in summary.get("split_warnings", []):
        print(f"detaccel: warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(json_safe(summary), indent=2))
        return 0
    if "layout" in summary:
        print(f"layout: {summary['layout']}")
    print(
        f"{dataset.format} {dataset.root} split {dataset.split}: {summary['images']} images, "
        f"{summary['objects']} objects ({summary['difficult']} difficult, {summary['crowd']} crowd), "
        f"{summary['images_without_objects']} images without objects; loaded in {seconds:.2f} s"
    )
    print(
        f"{_plural(len(dataset.class_names), 'class', 'classes')} ({_class_source(args.classes, dataset)}):"
    )
    for name, count in summary["objects_per_class"].items():
        print(f"  {name:20s} {count}")
    if "splits" in summary:
        found = ", ".join(f"{name} ({count})" for name, count in summary["splits"].items())
        print(f"split files: {found or 'none'}")
    if summary.get("split_warnings"):
        print(f"{_plural(len(summary['split_warnings']), 'split warning')} (see above)")
    line = skipped_line(dataset)
    if line:
        print(line)
    return 0


def _plural(count: int, noun: str, nouns: str | None = None) -> str:
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


def _class_source(spec: Any, dataset: DetectionDataset) -> str:
    from detaccel.data.classes import AUTO, DISCOVER, NAMED_CLASS_LISTS

    if not isinstance(spec, str) or spec not in (AUTO, DISCOVER):
        return f"--classes {spec}" if isinstance(spec, str) else "given"
    if dataset.format == "coco":
        return "the annotation file's categories"
    for name, names in NAMED_CLASS_LISTS.items():
        if spec == AUTO and tuple(dataset.class_names) == names:
            return f"{name}, chosen by --classes auto"
    return "discovered in the annotation files"


def _parse_split_request(args: argparse.Namespace) -> tuple[list[str], list[float]]:
    from detaccel.cli import CommandError
    from detaccel.data.voc import ALL_SPLIT

    names = [name.strip() for name in args.out_split_names.split(",")]
    for name in names:
        if not name or any(c in name for c in "/\\ \t") or name.startswith("."):
            raise CommandError(f"--out-split-names: {name!r} is not a usable file name")
        if name == ALL_SPLIT:
            raise CommandError(f"--out-split-names: {ALL_SPLIT!r} names every image; choose another name")
    if len(set(names)) != len(names):
        raise CommandError(f"--out-split-names: {args.out_split_names!r} repeats a name")
    try:
        ratios = [float(r) for r in args.ratios.split(",")]
    except ValueError:
        raise CommandError(f"--ratios: {args.ratios!r} is not comma-separated numbers") from None
    if len(ratios) != len(names):
        raise CommandError(
            f"--ratios: {len(ratios)} ratios for {len(names)} split names ({', '.join(names)})"
        )
    if min(ratios) <= 0 or not all(map(math.isfinite, ratios)):
        raise CommandError("--ratios: every ratio must be positive")
    if abs(sum(ratios) - 1.0) > 1e-3:
        raise CommandError(f"--ratios: must add up to 1, got {sum(ratios):g}")
    return names, ratios


def run_split(args: argparse.Namespace) -> int:
    from detaccel.cli import CommandError
    from detaccel.data.splits import split_dataset, write_split_files
    from detaccel.data.voc import find_voc_layout

    names, ratios = _parse_split_request(args)
    source = argparse.Namespace(**vars(args))  # --split: in --split-dir where it is there, else the dataset's
    if args.split_dir and not (Path(args.split_dir) / f"{args.split}.txt").is_file():
        source.split_dir = None
    dataset = load_from_args(source, check_images=False)
    if len(dataset) < len(names):
        raise CommandError(
            f"split {dataset.split!r} of {dataset.root} has {_plural(len(dataset), 'image')}: "
            f"too few for {len(names)} splits"
        )
    parts = split_dataset(dataset, names, ratios, args.seed)
    files = {name: [str(r.image_id) for r in records] for name, records in parts.items()}
    if "train" in files and "val" in files and "trainval" not in files:
        chosen = set(files["train"]) | set(files["val"])
        files["trainval"] = [str(r.image_id) for r in dataset.records if str(r.image_id) in chosen]
    out_dir = Path(args.split_dir) if args.split_dir else find_voc_layout(dataset.root).image_sets
    if not args.split_dir and _read_only(out_dir):
        raise CommandError(
            f"{dataset.root}: the dataset is read-only "
            "(pass --split-dir DIR to write the split files elsewhere)"
        )
    try:
        paths = write_split_files(out_dir, files, overwrite=args.overwrite)
    except FileExistsError as error:
        raise CommandError(f"{error}: split file already exists (pass --overwrite to replace it)") from None
    except OSError as error:
        where = error.filename or out_dir
        hint = "" if args.split_dir else "; pass --split-dir DIR to write them elsewhere"
        raise CommandError(f"{where}: cannot write split files ({error.strerror or error}){hint}") from None

    counts = {
        name: _class_counts(records, dataset.class_names)
        for name, records in {"all": dataset.records, **parts}.items()
    }
    report = {
        "root": str(dataset.root),
        "source_split": dataset.split,
        "seed": args.seed,
        "ratios": dict(zip(names, ratios, strict=True)),
        "split_dir": str(out_dir),
        "files": [str(p) for p in paths],
        "splits": counts,
    }
    if args.json:
        print(json.dumps(json_safe(report), indent=2))
        return 0
    sizes = ", ".join(f"{name} {len(parts[name])}" for name in names)
    print(
        f"split {_plural(len(dataset), 'image')} of {dataset.root} (split {dataset.split!r}, "
        f"seed {args.seed}) into {sizes}"
    )
    print(_counts_table(counts, dataset.class_names))
    for name in dataset.class_names:
        images = counts["all"]["images_per_class"][name]
        missing = [part for part in names if counts[part]["images_per_class"][name] == 0]
        if images and missing:
            print(f"note: class {name!r} ({_plural(images, 'image')}) is not in {', '.join(missing)}")
    union = " (train + val)" if "trainval" in files and "trainval" not in names else ""
    print(f"wrote {', '.join(p.name for p in paths)}{union} to {out_dir}")
    skipped = skipped_line(dataset)
    if skipped:
        print(f"{skipped}: left out of every split")
    split_dir = f" --split-dir {out_dir}" if args.split_dir else ""
    print(f"load with: --root {args.root}{split_dir} --split {names[0]}", end="")
    print(f" (config: data.split_dir: {out_dir})" if args.split_dir else "")
    return 0


def _read_only(directory: Path) -> bool:
    """Whether ``directory`` (or its nearest existing parent) has no write permission, for anyone."""
    while not directory.exists() and directory.parent != directory:
        directory = directory.parent
    mode = directory.stat().st_mode
    return not os.access(directory, os.W_OK) or not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)


def _class_counts(records: Sequence[ImageRecord], class_names: Sequence[str]) -> dict[str, Any]:
    objects = dict.fromkeys(class_names, 0)
    images = dict.fromkeys(class_names, 0)
    for record in records:
        labels = record.labels.tolist()
        for label in labels:
            objects[class_names[label]] += 1
        for label in set(labels):
            images[class_names[label]] += 1
    return {
        "images": len(records),
        "objects": sum(objects.values()),
        "objects_per_class": objects,
        "images_per_class": images,
    }


def _counts_table(counts: Mapping[str, Mapping[str, Any]], class_names: Sequence[str]) -> str:
    """Objects (and images) per class in each split, as a fixed-width table."""
    columns = list(counts)
    rows = [["", *columns], ["images", *(str(counts[c]["images"]) for c in columns)]]
    for name in class_names:
        cells = [
            f"{counts[c]['objects_per_class'][name]} ({counts[c]['images_per_class'][name]})" for c in columns
        ]
        rows.append([name, *cells])
    first = max(len(row[0]) for row in rows)
    widths = [max(len(row[i]) for row in rows) for i in range(1, len(columns) + 1)]
    lines = [
        "  ".join([row[0].ljust(first), *(cell.rjust(w) for cell, w in zip(row[1:], widths, strict=True))])
        for row in rows
    ]
    lines.append("(per class: objects (images with the class))")
    return "\n".join(lines)


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="write the synthetic dataset, check or split a dataset")
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

    split = commands.add_parser(
        "split",
        help="split a VOC dataset into parts (stratified by class, reproducible) and write the split files",
        description="Share the images of a VOC-format dataset (any layout) out into disjoint splits by the "
        "given ratios, so that every class appears in each split where it has enough images, and write "
        "<name>.txt for each (and trainval.txt when there are train and val). The same seed gives the "
        "same split.",
    )
    split.add_argument(
        "--root", required=True, help="the dataset directory (VOCdevkit layout or a flat folder)"
    )
    split.add_argument(
        "--split", default="all", help="the images to split: a split name, or all (default) for every image"
    )
    split.add_argument(
        "--out-split-names",
        default="train,val,test",
        help="comma-separated names of the splits to write (default: train,val,test)",
    )
    split.add_argument(
        "--ratios",
        default="0.7,0.15,0.15",
        help="share of each split, adding up to 1 (default: 0.7,0.15,0.15)",
    )
    split.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    split.add_argument(
        "--split-dir",
        help="write the split files to this directory (default: the dataset's ImageSets/Main); "
        "--split is read from there too when it has that split",
    )
    split.add_argument(
        "--classes",
        default="auto",
        help="class list: auto (default), voc, synthetic, discover or comma-separated names (see data check)",
    )
    split.add_argument(
        "--skip-bad", action="store_true", help="leave bad images out of every split, with a warning"
    )
    split.add_argument("--allow-empty", action="store_true", help="also split images without objects")
    split.add_argument("--overwrite", action="store_true", help="replace split files that exist")
    split.add_argument("--json", action="store_true", help="print the counts as JSON")
    split.set_defaults(func=run_split, format="voc")
