"""COCO format: an instances JSON file and an image folder, in the layouts that tools write.

Layouts found from a dataset folder ``R`` and a split ``S`` (:func:`find_coco_split`):

- ``R/annotations/instances_S.json``: the COCO release (images in ``R/S``,
  ``R/images/S`` or ``R/images``) and CVAT's "COCO 1.0" export
  (``instances_default.json``, so split ``default``, images in ``R/images``);
- ``R/S/_annotations.coco.json`` with the images beside it: Roboflow's export
  (splits ``train``, ``valid``, ``test``).

Any other layout loads from an explicit annotation file and image folder
(:func:`load_coco`, :func:`load_coco_split`). Of several candidate image folders, the one holding the
listed images is used.

Classes are the file's categories in id order, mapped to contiguous labels
``0..K-1``. Categories without an object in the file (such as the
supercategory entry some tools write as category 0) are left out of the class
list with a :class:`CategoryWarning`, and so are categories not in an explicit
class list (their objects are left out; this is how a test split is loaded
with the classes a model was trained on). Category and image ids need not
start at 1 or be contiguous; they are kept, so that results are written in the
file's own ids.

A COCO ``[x, y, w, h]`` box loads as the inclusive ``(x, y, x + max(w - 1, 0),
y + max(h - 1, 0))`` (see :mod:`detaccel.data.records`). ``iscrowd`` is kept
(0 when missing); a missing ``area`` is the box area; an optional non-standard
``difficult`` key is read as VOC's flag. Images without annotations are kept
(they count for evaluation).

Every bad entry is found in one pass: zero-area or negative-size boxes, boxes
outside the image, unknown image or category ids, repeated image or annotation
ids, missing or unreadable images and images whose decoded size differs from
``width``/``height``. Without ``skip_bad`` the first is raised with the count
of each kind; with it, each is left out with a warning.

The loaded dataset also keeps the validated ground truth in COCO form
(``images``, ``annotations`` with ``bbox``/``area``/``iscrowd``, the class
list's ``categories``; no segmentations), so that COCO-style evaluation sees
the annotations as written. Annotation ids that pycocotools cannot match (0,
missing) get fresh ids there.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from detaccel.data.classes import ClassSpec, resolve_class_names
from detaccel.data.errors import BadInputWarning, DatasetError, DatasetIssue, count_kinds, describe_kinds
from detaccel.data.io import read_image
from detaccel.data.records import DetectionDataset, ImageRecord, LeftOutCategory

__all__ = [
    "ROBOFLOW_ANNOTATIONS",
    "CategoryWarning",
    "CocoSplit",
    "coco_api",
    "coco_split_name",
    "find_coco_split",
    "load_coco",
    "load_coco_split",
    "read_coco_json",
    "resolve_coco_paths",
    "split_path",
    "write_coco_json",
]

ROBOFLOW_ANNOTATIONS = "_annotations.coco.json"
# A path per split: a mapping from split names to paths, or a path where "{split}" stands for the name.
SplitPath = str | PathLike | Mapping[str, str | PathLike]
_PACKAGE_DIR = str(Path(__file__).resolve().parent)
# Looked at when choosing among candidate image folders.
_PROBE_IMAGES = 8


class CategoryWarning(UserWarning):
    """Categories of a COCO file were left out of the class list."""


@dataclass(frozen=True)
class CocoSplit:
    """Where one split of a COCO dataset is: its annotation file and candidate image folders."""

    annotation_file: Path
    image_dirs: tuple[Path, ...]
    split: str


def _instances_file(root: Path, split: str) -> Path:
    return root / "annotations" / f"instances_{split}.json"


def _splits_found(root: Path) -> list[str]:
    found = []
    annotations = root / "annotations"
    if annotations.is_dir():
        found += sorted(p.stem.removeprefix("instances_") for p in annotations.glob("instances_*.json"))
    if root.is_dir():
        found += sorted(p.name for p in root.iterdir() if (p / ROBOFLOW_ANNOTATIONS).is_file())
    return found


def find_coco_split(root: str | PathLike, split: str) -> CocoSplit:
    """The annotation file and candidate image folders of ``split`` under ``root`` (see the module docstring).

    Raises :class:`DatasetError` naming what was looked for, and the splits
    that are there when the one asked for is not.
    """
    root = Path(root)
    instances = _instances_file(root, split)
    roboflow = root / split / ROBOFLOW_ANNOTATIONS
    if instances.is_file():
        return CocoSplit(instances, (root / split, root / "images" / split, root / "images"), split)
    if roboflow.is_file():
        return CocoSplit(roboflow, (root / split,), split)
    if not root.is_dir():
        raise DatasetError(root, "dataset directory not found")
    looked = f"looked for annotations/instances_{split}.json and {split}/{ROBOFLOW_ANNOTATIONS}"
    found = _splits_found(root)
    if found:
        raise DatasetError(root, f"no COCO split {split!r} ({looked}); splits found: {', '.join(found)}")
    if (root / ROBOFLOW_ANNOTATIONS).is_file():
        raise DatasetError(
            root,
            f"no COCO split {split!r} ({looked}); this folder holds one split ({ROBOFLOW_ANNOTATIONS}): "
            f"give its parent folder with split {root.name!r}, or that file as the annotation file",
        )
    raise DatasetError(
        root,
        f"not a COCO dataset ({looked}); give the annotation file and image folder "
        "(--annotations FILE --images DIR, or data.annotations and data.images)",
    )


def resolve_coco_paths(root: str | PathLike, split: str) -> tuple[Path, Path]:
    """``(annotation_file, image_dir)`` of a split: the file :func:`find_coco_split` finds and the first
    of its candidate image folders that exists."""
    found = find_coco_split(root, split)
    image_dir = next((d for d in found.image_dirs if d.is_dir()), found.image_dirs[0])
    return found.annotation_file, image_dir


def split_path(value: SplitPath | None, split: str | None, key: str = "annotations") -> Path | None:
    """The path a per-split setting gives for ``split``: a mapping from split names to paths, or one
    path in which ``{split}`` stands for the split name."""
    if value is None or value == "":
        return None
    if isinstance(value, Mapping):
        if split is None or split not in value:
            given = ", ".join(map(str, value)) or "none"
            raise ValueError(f"{key}: no path for split {split!r} (given for: {given})")
        return Path(value[split])
    text = str(value)
    if "{split}" in text:
        if split is None:
            raise ValueError(f"{key}: {text!r} stands for a split, but no split was given")
        text = text.replace("{split}", split)
    return Path(text)


def load_coco_split(
    root: str | PathLike | None,
    split: str | None,
    *,
    annotations: SplitPath | None = None,
    images: SplitPath | None = None,
    classes: ClassSpec | None = None,
    skip_bad: bool = False,
    check_images: bool = False,
) -> DetectionDataset:
    """Load ``split`` of a COCO dataset: found under ``root`` (:func:`find_coco_split`), or from the
    ``annotations`` file and ``images`` folder given (see :func:`split_path`; relative to ``root``
    when it is given). ``classes``, ``skip_bad`` and ``check_images`` as for :func:`load_coco`."""
    base = Path(root) if root else None
    annotation_file = split_path(annotations, split, "annotations")
    if annotation_file is not None:
        annotation_file = base / annotation_file if base is not None else annotation_file
        split = split or coco_split_name(annotation_file)
    image_dir = split_path(images, split, "images")
    if image_dir is not None and base is not None:
        image_dir = base / image_dir
    options: dict[str, Any] = {"classes": classes, "skip_bad": skip_bad, "check_images": check_images}
    if annotation_file is not None:
        return load_coco(annotation_file, image_dir, split=split, **options)
    if base is None or not split:
        raise ValueError("a COCO dataset needs a root folder and a split, or an annotation file")
    found = find_coco_split(base, split)
    return load_coco(found.annotation_file, image_dir or found.image_dirs, split=split, **options)


def coco_split_name(annotation_file: str | PathLike) -> str:
    """The split an annotation file holds: ``instances_<split>.json``, ``<split>/_annotations.coco.json``,
    else the file's stem."""
    path = Path(annotation_file)
    if path.name == ROBOFLOW_ANNOTATIONS:
        return path.parent.name or path.stem
    return path.stem.removeprefix("instances_")


def read_coco_json(path: str | PathLike) -> dict[str, Any]:
    """Read a COCO instances file; malformed or truncated JSON raises :class:`DatasetError`."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DatasetError(path, "annotation file not found") from None
    except IsADirectoryError:
        raise DatasetError(path, "is a directory, not an annotation file") from None
    except json.JSONDecodeError as error:
        raise DatasetError(
            path, f"malformed or truncated JSON at line {error.lineno} column {error.colno}: {error.msg}"
        ) from None
    except UnicodeDecodeError:
        raise DatasetError(path, "not a UTF-8 text file") from None
    except OSError as error:
        raise DatasetError(path, f"cannot read annotation file ({error.strerror or error})") from None
    if not isinstance(data, dict):
        raise DatasetError(path, "not a COCO annotation file (top level is not an object)")
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(path, f"not a COCO annotation file (no {key!r} list)")
    if not isinstance(data.get("annotations", []), list):
        raise DatasetError(path, "'annotations' is not a list")
    return data


def coco_api(dataset: dict[str, Any]):
    """A ``pycocotools.coco.COCO`` built in memory from a dataset dict, without console output."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _caller_level() -> int:
    """The ``stacklevel`` of a warning that names the first caller outside ``detaccel.data``."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    return level


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _categories(path: Path, raw: list[Any]) -> list[dict[str, Any]]:
    categories = []
    for i, cat in enumerate(raw):
        if not isinstance(cat, dict) or not _is_id(cat.get("id")) or not isinstance(cat.get("name"), str):
            raise DatasetError(path, f"category {i} needs an integer 'id' and a string 'name'")
        categories.append(
            {"id": cat["id"], "name": cat["name"], "supercategory": cat.get("supercategory", "")}
        )
    if not categories:
        raise DatasetError(path, "no categories")
    ids = [c["id"] for c in categories]
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise DatasetError(path, f"repeats category id {repeated[0]}")
    return sorted(categories, key=lambda c: c["id"])


def _image_problem(image: Any) -> tuple[str, str] | None:
    if not isinstance(image, dict) or not _is_id(image.get("id")):
        return "has no integer 'id'", "bad image entry"
    if not isinstance(image.get("file_name"), str) or not image["file_name"]:
        return "has no 'file_name'", "bad image entry"
    for key in ("width", "height"):
        value = image.get(key)
        if not _is_id(value) or value <= 0:
            return f"has no positive integer {key!r}", "bad image entry"
    return None


def _box_problem(ann: dict[str, Any], image: dict[str, Any]) -> tuple[str, str] | None:
    bbox = ann.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        return f"has a bad 'bbox' {bbox!r} (expected [x, y, width, height])", "bad bbox"
    x, y, w, h = bbox
    if w < 0 or h < 0:
        side = "width" if w < 0 else "height"
        return f"has a box of negative {side}: bbox {bbox}", "negative-size box"
    if w == 0 or h == 0:
        side = "width" if w == 0 else "height"
        return f"has a zero-area box ({side} 0): bbox {bbox}", "zero-area box"
    width, height = image["width"], image["height"]
    if x < -1 or y < -1 or x + w > width + 1 or y + h > height + 1:
        return f"has a box outside the {width}x{height} image: bbox {bbox}", "out-of-image box"
    return None


class _Problems:
    """Every problem of one file, raised together (the first, with counts) or skipped with warnings."""

    def __init__(self) -> None:
        self.issues: list[DatasetIssue] = []

    def add(self, path: str | PathLike, problem: str, skipped: str, kind: str) -> None:
        self.issues.append(DatasetIssue(str(path), problem, skipped, kind))

    def settle(self, skip_bad: bool) -> None:
        if not self.issues:
            return
        if not skip_bad:
            first = self.issues[0]
            more = f"; {len(self.issues)} problems in all: {describe_kinds(count_kinds(self.issues))}"
            if len(self.issues) == 1:
                more = ""
            raise DatasetError(first.path, f"{first.problem}{more}", skippable=True)
        for issue in self.issues:
            warnings.warn(str(issue), BadInputWarning, stacklevel=_caller_level())


def _choose_image_dir(candidates: Sequence[Path], images: Iterable[Any]) -> Path:
    """The candidate folder holding most of the first listed images (the first candidate on a tie)."""
    if len(candidates) == 1:
        return candidates[0]
    names = [im["file_name"] for im in images if _image_problem(im) is None][:_PROBE_IMAGES]
    hits = [sum((folder / name).is_file() for name in names) for folder in candidates]
    best = max(range(len(candidates)), key=lambda i: (hits[i], -i))
    if hits[best] == 0:
        return next((d for d in candidates if d.is_dir()), candidates[0])
    return candidates[best]


def _default_image_dirs(path: Path, split: str) -> tuple[Path, ...]:
    parent = path.parent
    return (parent, parent.parent / split, parent.parent / "images" / split, parent.parent / "images")


def load_coco(
    annotation_file: str | PathLike,
    image_dir: str | PathLike | Sequence[str | PathLike] | None = None,
    *,
    classes: ClassSpec | None = None,
    split: str | None = None,
    skip_bad: bool = False,
    check_images: bool = False,
) -> DetectionDataset:
    """Load a COCO instances file whose ``file_name`` entries are relative to ``image_dir``.

    Args:
        image_dir: the image folder, or candidate folders (the one holding the
            listed images is used); by default the file's own folder, then
            ``../<split>``, ``../images/<split>`` and ``../images``.
        classes: ``None`` (or ``"auto"``, ``"discover"``): the categories with objects,
            in id order; otherwise class names (a list, comma-separated, or a named list
            such as ``"synthetic"``): those categories in that order, the objects of
            the others left out.
        split: the split's name (default: from the file name, see :func:`coco_split_name`).
        skip_bad: leave out bad annotations and images with a warning instead
            of raising :class:`DatasetError`; they are listed in ``issues``.
        check_images: decode every image, catching corrupt files and sizes
            that disagree with the annotation file (slower).
    """
    path = Path(annotation_file)
    split = split or coco_split_name(path)
    data = read_coco_json(path)
    if image_dir is None:
        candidates = _default_image_dirs(path, split)
    elif isinstance(image_dir, str | PathLike):
        candidates = (Path(image_dir),)
    else:
        candidates = tuple(Path(d) for d in image_dir)
    image_dir = _choose_image_dir(candidates, data["images"])
    categories = _categories(path, data["categories"])
    problems = _Problems()
    images = _check_images(path, image_dir, data["images"], problems, check_images)
    if (
        data["images"]
        and not images
        and problems.issues
        and all(issue.kind == "missing image file" for issue in problems.issues)
    ):
        looked = ", ".join(str(d) for d in candidates)
        raise DatasetError(
            path,
            f"none of its {len(problems.issues)} images is in the image folder (looked in: {looked}); "
            "give the folder that holds them (--images DIR, or data.images)",
        )
    listed = {im.get("id") for im in data["images"] if isinstance(im, dict)}
    kept = _check_annotations(path, data.get("annotations", []), listed, images, categories, problems)
    problems.settle(skip_bad)

    class_list, left_out = _class_list(path, categories, kept, classes)
    if left_out:
        names = ", ".join(str(c) for c in left_out)
        warnings.warn(
            f"{path}: categories left out of the class list: {names}",
            CategoryWarning,
            stacklevel=_caller_level(),
        )
    label_of = {c["id"]: label for label, c in enumerate(class_list)}

    records, gt_images, gt_annotations = [], [], []
    next_id = max((a["id"] for anns in kept.values() for a in anns if _is_id(a.get("id"))), default=0) + 1
    for image_id, image in images.items():
        objects = [ann for ann in kept[image_id] if ann["category_id"] in label_of]
        records.append(_record(image, image_dir, objects, label_of))
        gt_images.append({k: image[k] for k in ("id", "file_name", "width", "height")})
        for ann in objects:
            x, y, w, h = ann["bbox"]
            ann_id = ann.get("id")
            if not _is_id(ann_id) or ann_id <= 0:
                ann_id, next_id = next_id, next_id + 1
            gt_annotations.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": ann["category_id"],
                    "bbox": [x, y, w, h],
                    "area": ann["area"] if _is_number(ann.get("area")) else w * h,
                    "iscrowd": int(bool(ann.get("iscrowd", 0))),
                    "difficult": int(bool(ann.get("difficult", 0))),
                }
            )
    return DetectionDataset(
        format="coco",
        root=image_dir,
        split=split,
        class_names=tuple(c["name"] for c in class_list),
        records=tuple(records),
        category_ids=tuple(c["id"] for c in class_list),
        annotation_file=path,
        issues=tuple(problems.issues) if skip_bad else (),
        coco_annotations={"images": gt_images, "annotations": gt_annotations, "categories": class_list},
        left_out_categories=tuple(left_out),
    )


def _check_images(
    path: Path, image_dir: Path, entries: list[Any], problems: _Problems, decode: bool
) -> dict[int, dict[str, Any]]:
    images: dict[int, dict[str, Any]] = {}
    seen: set[int] = set()
    for i, image in enumerate(entries):
        found = _image_problem(image)
        if found is None and image["id"] in seen:
            found = f"repeats image id {image['id']}", "duplicate image id"
        if found is not None:
            problems.add(path, f"image entry {i} {found[0]}", "image", found[1])
            continue
        seen.add(image["id"])
        image_path = image_dir / image["file_name"]
        if not image_path.is_file():
            problems.add(image_path, "image file not found", "image", "missing image file")
            continue
        if decode:
            try:
                pixels = read_image(image_path)
            except DatasetError as error:
                problems.add(error.path, error.problem, "image", "unreadable image")
                continue
            actual = (pixels.shape[1], pixels.shape[0])
            written = (image["width"], image["height"])
            if actual != written:
                swapped = " (width and height swapped: EXIF orientation?)" if actual == written[::-1] else ""
                problem = f"image is {actual[0]}x{actual[1]} but {path.name} says {written[0]}x{written[1]}"
                problems.add(image_path, problem + swapped, "image", "size mismatch")
                continue
        images[image["id"]] = image
    return images


def _check_annotations(
    path: Path,
    entries: list[Any],
    listed_images: set[Any],
    images: dict[int, dict[str, Any]],
    categories: list[dict[str, Any]],
    problems: _Problems,
) -> dict[int, list[dict[str, Any]]]:
    """The valid annotations of each kept image (those of skipped images are dropped silently)."""
    kept: dict[int, list[dict[str, Any]]] = {image_id: [] for image_id in images}
    category_ids = {c["id"] for c in categories}
    seen_ids: set[int] = set()
    for i, ann in enumerate(entries):
        if not isinstance(ann, dict):
            problems.add(path, f"annotation entry {i} is not an object", "object", "bad annotation entry")
            continue
        name = f"annotation {ann['id']}" if "id" in ann else f"annotation entry {i}"
        image_id = ann.get("image_id")
        if _is_id(ann.get("id")):
            if ann["id"] in seen_ids:
                problem = f"{name} repeats annotation id {ann['id']}"
                problems.add(path, problem, "object", "duplicate annotation id")
                continue
            seen_ids.add(ann["id"])
        if image_id not in listed_images:
            problem = f"{name} refers to unknown image id {image_id!r}"
            problems.add(path, problem, "object", "unknown image id")
            continue
        if image_id not in images:
            continue  # its image was skipped, with its own problem
        if ann.get("category_id") not in category_ids:
            problem = f"{name} has unknown category id {ann.get('category_id')!r}"
            problems.add(path, problem, "object", "unknown category id")
            continue
        found = _box_problem(ann, images[image_id])
        if found is not None:
            problem = f"{name} (image {images[image_id]['file_name']}) {found[0]}"
            problems.add(path, problem, "object", found[1])
            continue
        kept[image_id].append(ann)
    return kept


def _class_list(
    path: Path,
    categories: list[dict[str, Any]],
    kept: dict[int, list[dict[str, Any]]],
    classes: ClassSpec | None,
) -> tuple[list[dict[str, Any]], list[LeftOutCategory]]:
    """The categories that are classes, in label order, and the others with their object counts."""
    objects = dict.fromkeys((c["id"] for c in categories), 0)
    for anns in kept.values():
        for ann in anns:
            objects[ann["category_id"]] += 1
    names = None if classes is None else resolve_class_names(classes)  # None also for auto, discover
    if names is None:
        chosen = [c for c in categories if objects[c["id"]]]
        if not chosen:
            raise DatasetError(
                path,
                f"none of its {len(categories)} categories has an object, so there is no class list to "
                "take from it; name the classes (--classes NAMES, or data.classes)",
            )
    else:
        by_name: dict[str, list[dict[str, Any]]] = {}
        for c in categories:
            by_name.setdefault(c["name"], []).append(c)
        unknown = [n for n in names if n not in by_name]
        if unknown:
            known = ", ".join(c["name"] for c in categories)
            raise DatasetError(path, f"class {unknown[0]!r} is not one of its categories ({known})")
        chosen = []
        for name in names:
            matches = by_name[name]
            if len(matches) > 1:
                # Same-named categories: the one with objects is the class (a supercategory entry has none).
                with_objects = [c for c in matches if objects[c["id"]]]
                matches = with_objects or matches[:1]
            chosen.append(matches[0] if len(matches) == 1 else _same_name(path, matches))
    seen: dict[str, dict[str, Any]] = {}
    for c in chosen:
        if c["name"] in seen:
            _same_name(path, [seen[c["name"]], c])
        seen[c["name"]] = c
    chosen_ids = {c["id"] for c in chosen}
    left_out = [
        LeftOutCategory(c["id"], c["name"], objects[c["id"]]) for c in categories if c["id"] not in chosen_ids
    ]
    return chosen, left_out


def _same_name(path: Path, matches: list[dict[str, Any]]) -> dict[str, Any]:
    ids = " and ".join(str(c["id"]) for c in matches)
    raise DatasetError(path, f"categories {ids} are both named {matches[0]['name']!r} and both have objects")


def _record(
    image: dict[str, Any], image_dir: Path, annotations: list[dict[str, Any]], label_of: dict[int, int]
) -> ImageRecord:
    width, height = image["width"], image["height"]
    boxes = np.zeros((len(annotations), 4), np.float64)
    for row, ann in zip(boxes, annotations, strict=True):
        x, y, w, h = ann["bbox"]
        row[:] = (x, y, x + max(w - 1.0, 0.0), y + max(h - 1.0, 0.0))
    np.clip(boxes[:, 0::2], 0.0, width - 1.0, out=boxes[:, 0::2])
    np.clip(boxes[:, 1::2], 0.0, height - 1.0, out=boxes[:, 1::2])
    return ImageRecord(
        image_id=image["id"],
        file_path=str(image_dir / image["file_name"]),
        width=width,
        height=height,
        boxes=boxes,
        labels=[label_of[ann["category_id"]] for ann in annotations],
        difficult=[bool(ann.get("difficult", 0)) for ann in annotations],
        crowd=[bool(ann.get("iscrowd", 0)) for ann in annotations],
    )


def write_coco_json(
    path: str | PathLike,
    *,
    images: Sequence[dict[str, Any]],
    annotations: Sequence[dict[str, Any]],
    categories: Sequence[dict[str, Any]],
    info: dict[str, Any] | None = None,
) -> None:
    """Write a COCO instances file."""
    data = {
        "info": info or {},
        "licenses": [],
        "images": list(images),
        "annotations": list(annotations),
        "categories": list(categories),
    }
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(data, separators=(",", ":")), encoding="utf-8")
