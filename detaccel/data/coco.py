"""COCO format: an instances JSON file and an image directory.

Categories are sorted by id and mapped to contiguous labels ``0..K-1``;
``iscrowd`` is kept; images without annotations are kept (they count for
evaluation). A COCO ``[x, y, w, h]`` box loads as the inclusive
``(x, y, x + max(w - 1, 0), y + max(h - 1, 0))`` (see :mod:`detaccel.data.records`).
An optional non-standard ``difficult`` key of an annotation is read as
VOC's flag.

The loaded dataset also keeps the validated ground truth in COCO form
(``images``, ``annotations`` with ``bbox``/``area``/``iscrowd``,
``categories``; no segmentations), so that COCO-style evaluation sees the
annotations exactly as written.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from detaccel.data.errors import DatasetError, IssueLog
from detaccel.data.io import read_image
from detaccel.data.records import DetectionDataset, ImageRecord

__all__ = ["coco_api", "load_coco", "read_coco_json", "resolve_coco_paths", "write_coco_json"]


def resolve_coco_paths(root: str | PathLike, split: str) -> tuple[Path, Path]:
    """``(annotation_file, image_dir)`` of a split in a COCO-style directory.

    The annotations are ``<root>/annotations/instances_<split>.json``; the
    images are in ``<root>/images`` when it exists, else ``<root>/<split>``
    (as in ``train2017/``).
    """
    root = Path(root)
    annotation_file = root / "annotations" / f"instances_{split}.json"
    image_dir = root / "images"
    if not image_dir.is_dir():
        image_dir = root / split
    return annotation_file, image_dir


def read_coco_json(path: str | PathLike) -> dict[str, Any]:
    """Read a COCO instances file; malformed or truncated JSON raises :class:`DatasetError`."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DatasetError(path, "annotation file not found") from None
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


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _categories(path: Path, raw: list[Any]) -> list[dict[str, Any]]:
    categories = []
    for i, cat in enumerate(raw):
        if (
            not isinstance(cat, dict)
            or not isinstance(cat.get("id"), int)
            or not isinstance(cat.get("name"), str)
        ):
            raise DatasetError(path, f"category {i} needs an integer 'id' and a string 'name'")
        categories.append(
            {"id": cat["id"], "name": cat["name"], "supercategory": cat.get("supercategory", "")}
        )
    ids = [c["id"] for c in categories]
    names = [c["name"] for c in categories]
    if len(set(ids)) != len(ids):
        raise DatasetError(path, "duplicate category ids")
    if len(set(names)) != len(names):
        raise DatasetError(path, "duplicate category names")
    if not categories:
        raise DatasetError(path, "no categories")
    return sorted(categories, key=lambda c: c["id"])


def _image_problem(image: Any) -> str | None:
    if not isinstance(image, dict) or not isinstance(image.get("id"), int):
        return "has no integer 'id'"
    if not isinstance(image.get("file_name"), str) or not image["file_name"]:
        return "has no 'file_name'"
    for key in ("width", "height"):
        value = image.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            return f"has no positive integer {key!r}"
    return None


def _annotation_problem(ann: dict[str, Any], image: dict[str, Any]) -> str | None:
    bbox = ann.get("bbox")
    if not isinstance(bbox, list) or len(bbox) != 4 or not all(_is_number(v) for v in bbox):
        return f"has a bad 'bbox' {bbox!r} (expected [x, y, width, height])"
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        side = "x2 < x1 (width <= 0)" if w <= 0 else "y2 < y1 (height <= 0)"
        return f"has an empty box, {side}: bbox {bbox}"
    width, height = image["width"], image["height"]
    if x < -1 or y < -1 or x + w > width + 1 or y + h > height + 1:
        return f"has a box outside the {width}x{height} image: bbox {bbox}"
    return None


def load_coco(
    annotation_file: str | PathLike,
    image_dir: str | PathLike,
    *,
    skip_bad: bool = False,
    check_images: bool = False,
) -> DetectionDataset:
    """Load a COCO instances file whose ``file_name`` entries are relative to ``image_dir``.

    Args:
        skip_bad: leave out bad annotations and images with a warning instead
            of raising :class:`DatasetError`; they are listed in ``issues``.
        check_images: decode every image, catching corrupt files and sizes
            that disagree with the annotation file (slower).
    """
    path, image_dir = Path(annotation_file), Path(image_dir)
    data = read_coco_json(path)
    log = IssueLog(skip_bad)
    categories = _categories(path, data["categories"])
    label_of = {c["id"]: label for label, c in enumerate(categories)}

    images: dict[int, dict[str, Any]] = {}
    for i, image in enumerate(data["images"]):
        problem = _image_problem(image)
        if problem is None and image["id"] in images:
            problem = f"repeats image id {image['id']}"
        if problem is not None:
            log.report(path, f"image entry {i} {problem}", "image")
            continue
        image_path = image_dir / image["file_name"]
        if not check_images and not image_path.is_file():
            log.report(image_path, "image file not found", "image")
            continue
        if check_images:
            try:
                pixels = read_image(image_path)
            except DatasetError as error:
                log.report(error.path, error.problem, "image")
                continue
            if pixels.shape[:2] != (image["height"], image["width"]):
                log.report(
                    image_path,
                    f"image is {pixels.shape[1]}x{pixels.shape[0]} but {path.name} says "
                    f"{image['width']}x{image['height']}",
                    "image",
                )
                continue
        images[image["id"]] = image

    kept: dict[int, list[dict[str, Any]]] = {image_id: [] for image_id in images}
    all_image_ids = {im.get("id") for im in data["images"] if isinstance(im, dict)}
    for i, ann in enumerate(data.get("annotations", [])):
        if not isinstance(ann, dict):
            log.report(path, f"annotation entry {i} is not an object", "object")
            continue
        name = f"annotation {ann.get('id', f'entry {i}')}"
        image_id = ann.get("image_id")
        if image_id not in all_image_ids:
            log.report(path, f"{name} refers to unknown image id {image_id!r}", "object")
            continue
        if image_id not in images:
            continue  # its image was skipped, with a warning
        if ann.get("category_id") not in label_of:
            log.report(path, f"{name} has unknown category id {ann.get('category_id')!r}", "object")
            continue
        problem = _annotation_problem(ann, images[image_id])
        if problem is not None:
            log.report(path, f"{name} (image {images[image_id]['file_name']}) {problem}", "object")
            continue
        kept[image_id].append(ann)

    records, gt_images, gt_annotations = [], [], []
    for image_id, image in images.items():
        records.append(_record(image, image_dir, kept[image_id], label_of))
        gt_images.append({k: image[k] for k in ("id", "file_name", "width", "height")})
        for ann in kept[image_id]:
            x, y, w, h = ann["bbox"]
            gt_annotations.append(
                {
                    "id": ann.get("id", len(gt_annotations) + 1),
                    "image_id": image_id,
                    "category_id": ann["category_id"],
                    "bbox": [x, y, w, h],
                    "area": ann["area"] if _is_number(ann.get("area")) else w * h,
                    "iscrowd": int(bool(ann.get("iscrowd", 0))),
                    "difficult": int(bool(ann.get("difficult", 0))),
                }
            )
    split = path.stem.removeprefix("instances_")
    return DetectionDataset(
        format="coco",
        root=image_dir,
        split=split,
        class_names=tuple(c["name"] for c in categories),
        records=tuple(records),
        category_ids=tuple(c["id"] for c in categories),
        annotation_file=path,
        issues=tuple(log.issues),
        coco_annotations={"images": gt_images, "annotations": gt_annotations, "categories": categories},
    )


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
