"""Load a dataset split from a format name and a directory, or from a config mapping."""

from __future__ import annotations

from collections.abc import Mapping
from os import PathLike
from typing import Any

from detaccel.data.classes import AUTO, ClassSpec
from detaccel.data.coco import SplitPath, load_coco_split
from detaccel.data.records import DetectionDataset
from detaccel.data.voc import load_voc

FORMATS = ("voc", "coco")


def load_dataset(
    format: str,
    root: str | PathLike | None,
    split: str | None,
    *,
    classes: ClassSpec = AUTO,
    skip_bad: bool = False,
    check_images: bool = False,
    allow_empty: bool = False,
    split_dir: str | PathLike | None = None,
    annotations: SplitPath | None = None,
    images: SplitPath | None = None,
) -> DetectionDataset:
    """Load ``split`` of a VOC or COCO dataset under ``root``.

    VOC: ``root`` as for :func:`load_voc`; ``classes`` picks the class list;
    ``split_dir`` holds the ``<split>.txt`` files when they are not in the dataset.
    COCO: the split's annotation file and images found under ``root`` in the
    layouts of :func:`detaccel.data.coco.find_coco_split`, or the ``annotations``
    file and ``images`` folder given (per split, relative to ``root`` when given; see
    :func:`detaccel.data.coco.load_coco_split`); ``classes`` as for
    :func:`detaccel.data.coco.load_coco` (``auto``: the categories with objects);
    ``allow_empty`` and ``split_dir`` do not apply: images without objects are kept.
    """
    if format == "voc":
        if annotations is not None or images is not None:
            raise ValueError("an annotation file and image folder apply to COCO datasets only")
        return load_voc(
            root,
            split,
            classes,
            skip_bad=skip_bad,
            check_images=check_images,
            allow_empty=allow_empty,
            split_dir=split_dir,
        )
    if format == "coco":
        if split_dir is not None:
            raise ValueError(
                "a split directory applies to VOC datasets only (COCO splits are annotation files)"
            )
        return load_coco_split(
            root,
            split,
            annotations=annotations,
            images=images,
            classes=classes,
            skip_bad=skip_bad,
            check_images=check_images,
        )
    raise ValueError(f"unknown dataset format {format!r} (expected one of {', '.join(FORMATS)})")


def dataset_from_config(config: Mapping[str, Any], split: str | None = None) -> DetectionDataset:
    """Load a dataset described by a mapping.

    Keys: ``format`` (``voc``/``coco``), ``root``, ``split`` (unless given),
    and optionally ``classes`` (a list, ``auto``, ``voc``, ``synthetic`` or ``discover``),
    ``skip_bad``, ``check_images``, ``allow_empty``, ``split_dir``, and for COCO
    ``annotations`` and ``images`` (then ``root`` is optional).
    """
    known = {"format", "root", "split", "classes", "skip_bad", "check_images", "allow_empty", "split_dir"}
    known |= {"annotations", "images"}
    unknown = set(config) - known
    if unknown:
        raise ValueError(f"unknown dataset config keys: {', '.join(sorted(unknown))}")
    split = split or config.get("split")
    if not split and not config.get("annotations"):
        raise ValueError("dataset config needs a split")
    return load_dataset(
        config["format"],
        config.get("root"),
        split,
        classes=config.get("classes", AUTO),
        skip_bad=bool(config.get("skip_bad", False)),
        check_images=bool(config.get("check_images", False)),
        allow_empty=bool(config.get("allow_empty", False)),
        split_dir=config.get("split_dir"),
        annotations=config.get("annotations"),
        images=config.get("images"),
    )
