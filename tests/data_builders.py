"""Small dataset files written by the data and evaluation tests."""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

IMAGE_SIZE = (64, 48)  # width, height


def write_test_jpeg(
    path: Path, width: int = IMAGE_SIZE[0], height: int = IMAGE_SIZE[1], seed: int = 0
) -> Path:
    """A real little JPEG with some structure in it."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.uint8)
    image[:] = rng.integers(0, 255, 3, dtype=np.uint8)
    cv2.rectangle(image, (width // 4, height // 4), (width // 2, height // 2), (255, 255, 255), -1)
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    path.write_bytes(buffer.tobytes())
    return path


def voc_object_xml(
    name: str,
    box: Sequence[float],
    difficult: Any = 0,
    order: Sequence[str] = ("xmin", "ymin", "xmax", "ymax"),
) -> str:
    """An ``<object>`` element; ``box`` is (xmin, ymin, xmax, ymax) as written in the file (1-based)."""
    values = dict(zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True))
    coordinates = "".join(f"<{tag}>{values[tag]}</{tag}>" for tag in order)
    flag = "" if difficult is None else f"<difficult>{difficult}</difficult>"
    return f"<object><name>{name}</name><pose>Unspecified</pose>{flag}<bndbox>{coordinates}</bndbox></object>"


def voc_xml(
    objects: Sequence[str], width: int = IMAGE_SIZE[0], height: int = IMAGE_SIZE[1], filename: str = "x.jpg"
) -> str:
    size = f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"
    return (
        f"<annotation><folder>T</folder><filename>{filename}</filename>{size}{''.join(objects)}</annotation>"
    )


def make_voc(
    root: Path,
    annotations: Mapping[str, str | None],
    split: str = "train",
    images: bool = True,
) -> Path:
    """A VOC dataset directory: ``annotations`` maps image id to XML text (``None``: no XML file)."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for i, (image_id, xml) in enumerate(annotations.items()):
        if xml is not None:
            (root / "Annotations" / f"{image_id}.xml").write_text(xml)
        if images:
            write_test_jpeg(root / "JPEGImages" / f"{image_id}.jpg", seed=i)
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in annotations))
    return root


def make_coco(
    root: Path,
    images: Sequence[dict[str, Any]],
    annotations: Sequence[dict[str, Any]],
    categories: Sequence[dict[str, Any]],
    split: str = "val",
    write_images: bool = True,
) -> Path:
    """A COCO directory (``annotations/instances_<split>.json`` and ``images/``); returns the JSON path."""
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / "images").mkdir(parents=True, exist_ok=True)
    if write_images:
        for i, image in enumerate(images):
            write_test_jpeg(root / "images" / image["file_name"], image["width"], image["height"], seed=i)
    path = root / "annotations" / f"instances_{split}.json"
    path.write_text(
        json.dumps({"images": list(images), "annotations": list(annotations), "categories": list(categories)})
    )
    return path


def pycocotools_stats(gt_path: Path, results_path: Path) -> list[float]:
    """pycocotools' own twelve COCOeval stats for a results file (NaN where it reports -1)."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        evaluator = COCOeval(gt, gt.loadRes(str(results_path)), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return [math.nan if v == -1 else float(v) for v in evaluator.stats]
