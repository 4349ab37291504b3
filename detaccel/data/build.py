"""Load a dataset split from a format name and a directory, or from a config mapping."""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from typing import Any

from detaccel.data.classes import ClassSpec
from detaccel.data.coco import load_coco, resolve_coco_paths
from detaccel.data.records import DetectionDataset
from detaccel.data.voc import VOC_CLASSES, load_voc

FORMATS = ("voc", "coco")


def load_dataset(
    format: str,
    root: str | PathLike,
    split: str,
    *,
    classes: ClassSpec = VOC_CLASSES,
    skip_bad: bool = False,
    check_images: bool = False,
    allow_empty: bool = False,
) -> DetectionDataset:
    """Load ``split`` of a VOC or COCO dataset under ``root``.

    VOC: ``root`` as for :func:`load_voc`; ``classes`` picks the class list.
    COCO: ``<root>/annotations/instances_<split>.json`` with images in
    ``<root>/images`` or ``<root>/<split>``; classes come from the categories
    (``classes`` and ``allow_empty`` do not apply: images without objects are kept).
    """
    if format == "voc":
        return load_voc(
            root, split, classes, skip_bad=skip_bad, check_images=check_images, allow_empty=allow_empty
        )
    if format == "coco":
        annotation_file, image_dir = resolve_coco_paths(root, split)
        return load_coco(annotation_file, image_dir, skip_bad=skip_bad, check_images=check_images)
    raise ValueError(f"unknown dataset format {format!r} (expected one of {', '.join(FORMATS)})")


def dataset_from_config(config: Mapping[str, Any], split: str | None = None) -> DetectionDataset:
    """Load a dataset described by a mapping.

    Keys: ``format`` (``voc``/``coco``), ``root``, ``split`` (unless given),
    and optionally ``classes`` (a list, ``voc``, ``synthetic`` or ``discover``),
    ``skip_bad``, ``check_images``, ``allow_empty``.
    """
    unknown = set(config) - {"format", "root", "split", "classes", "skip_bad", "check_images", "allow_empty"}
    if unknown:
        raise ValueError(f"unknown dataset config keys: {', '.join(sorted(unknown))}")
    split = split or config.get("split")
    if not split:
        raise ValueError("dataset config needs a split")
    return load_dataset(
        config["format"],
        config["root"],
        split,
        classes=config.get("classes", VOC_CLASSES),
        skip_bad=bool(config.get("skip_bad", False)),
        check_images=bool(config.get("check_images", False)),
        allow_empty=bool(config.get("allow_empty", False)),
    )
