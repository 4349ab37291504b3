"""PASCAL VOC format: the VOCdevkit layout, its XML annotations and image sets.

A VOC dataset directory holds ``Annotations/<id>.xml``, ``JPEGImages/<id>.jpg``
and ``ImageSets/Main/<split>.txt``. XML is read as real-world tools write it:
any element order, extra tags, float coordinates, missing optional flags.
Coordinates in the XML are 1-based inclusive pixels; records hold them
0-based (see :mod:`detaccel.data.records`). A box may stick out of the image
by at most one pixel (as written by tools that use 0-based pixels); it is
clipped to the image.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from detaccel.data.classes import VOC_CLASSES, ClassSpec, resolve_class_names
from detaccel.data.errors import DatasetError, IssueLog
from detaccel.data.io import read_image
from detaccel.data.records import DetectionDataset, ImageRecord

__all__ = [
    "VOC_CLASSES",
    "VocAnnotation",
    "VocObject",
    "load_voc",
    "parse_voc_annotation",
    "read_image_set",
    "resolve_voc_root",
    "write_image_sets",
    "write_voc_annotation",
]

_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".JPG", ".JPEG", ".png", ".PNG")
_COORDINATES = ("xmin", "ymin", "xmax", "ymax")


@dataclass
class VocObject:
    """One ``<object>``: its class name, 1-based box as written, and flags; or why it is unusable."""

    index: int
    name: str
    bndbox: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    difficult: bool = False
    truncated: bool = False
    problem: str | None = None

    def describe(self) -> str:
        return f"object {self.index} ({self.name!r})" if self.name else f"object {self.index}"


@dataclass
class VocAnnotation:
    """The parts of one VOC XML file that detection uses."""

    path: Path
    filename: str | None
    width: int | None
    height: int | None
    objects: list[VocObject] = field(default_factory=list)


def resolve_voc_root(path: str | PathLike) -> Path:
    """The directory holding ``Annotations/``: ``path`` itself or its only VOC subdirectory.

    Accepts a dataset directory (``.../VOC2007``), a ``VOCdevkit`` directory,
    or a directory containing ``VOCdevkit``, as long as one dataset is found.
    """
    path = Path(path)
    if (path / "Annotations").is_dir():
        return path
    if not path.is_dir():
        raise DatasetError(path, "dataset directory not found")
    search = path / "VOCdevkit" if (path / "VOCdevkit").is_dir() else path
    found = sorted(p for p in search.iterdir() if (p / "Annotations").is_dir())
    if len(found) == 1:
        return found[0]
    if not found:
        raise DatasetError(path, "not a VOC dataset (no Annotations/ directory found)")
    names = ", ".join(p.name for p in found)
    raise DatasetError(path, f"holds several VOC datasets ({names}); give one of them")


def read_image_set(root: Path, split: str) -> list[str]:
    """Image ids listed in ``ImageSets/Main/<split>.txt`` (first column of each line), in order."""
    path = root / "ImageSets" / "Main" / f"{split}.txt"
    if not path.is_file():
        main = root / "ImageSets" / "Main"
        known = sorted(p.stem for p in main.glob("*.txt") if "_" not in p.stem) if main.is_dir() else []
        hint = f" (splits found: {', '.join(known)})" if known else ""
        raise DatasetError(path, f"image set {split!r} not found{hint}")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(path, f"cannot read image set ({error})") from None
    return [line.split()[0] for line in text.splitlines() if line.strip()]


def _text(element: ET.Element, tag: str) -> str | None:
    child = element.find(tag)
    if child is None or child.text is None:
        return None
    return child.text.strip()


def _flag(text: str | None) -> bool:
    if text is None or text == "":
        return False
    lowered = text.lower()
    if lowered in ("true", "yes"):
        return True
    if lowered in ("false", "no"):
        return False
    return float(text) != 0.0


def _size(root: ET.Element, tag: str) -> int | None:
    text = _text(root, f"size/{tag}")
    if text is None or text == "":
        return None
    value = float(text)
    if not math.isfinite(value) or value < 0 or value != int(value):
        raise ValueError(f"<{tag}> is not a pixel count: {text!r}")
    return int(value) or None


def _parse_object(index: int, element: ET.Element) -> VocObject:
    obj = VocObject(index=index, name=_text(element, "name") or "")
    if not obj.name:
        obj.problem = "has no <name>"
        return obj
    try:
        obj.difficult = _flag(_text(element, "difficult"))
        obj.truncated = _flag(_text(element, "truncated"))
    except ValueError:
        obj.problem = "has a <difficult> or <truncated> flag that is not 0/1"
        return obj
    box = element.find("bndbox")
    if box is None:
        obj.problem = "has no <bndbox>"
        return obj
    values = []
    for tag in _COORDINATES:
        text = _text(box, tag)
        if text is None or text == "":
            obj.problem = f"has no <{tag}> in <bndbox>"
            return obj
        try:
            value = float(text)
        except ValueError:
            obj.problem = f"has a non-numeric <{tag}> {text!r}"
            return obj
        if not math.isfinite(value):
            obj.problem = f"has a non-finite <{tag}> {text!r}"
            return obj
        values.append(value)
    obj.bndbox = (values[0], values[1], values[2], values[3])
    return obj


def parse_voc_annotation(path: str | PathLike) -> VocAnnotation:
    """Parse one VOC XML file. Unreadable or malformed XML raises :class:`DatasetError`.

    Problems confined to one object are returned in :attr:`VocObject.problem`.
    A missing or zero ``<size>`` is returned as ``None``.
    """
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise DatasetError(path, "annotation file not found") from None
    except ET.ParseError as error:
        raise DatasetError(path, f"malformed XML ({error})") from None
    except OSError as error:
        raise DatasetError(path, f"cannot read annotation file ({error.strerror or error})") from None
    if root.tag != "annotation":
        raise DatasetError(path, f"not a VOC annotation (root element <{root.tag}>, expected <annotation>)")
    try:
        width, height = _size(root, "width"), _size(root, "height")
    except ValueError as error:
        raise DatasetError(path, f"bad <size>: {error}") from None
    objects = [_parse_object(i, element) for i, element in enumerate(root.findall("object"))]
    return VocAnnotation(path, _text(root, "filename"), width, height, objects)


def _find_image(root: Path, image_id: str, filename: str | None) -> Path | None:
    images = root / "JPEGImages"
    for extension in _IMAGE_EXTENSIONS:
        candidate = images / f"{image_id}{extension}"
        if candidate.is_file():
            return candidate
    if filename:
        candidate = images / Path(filename).name
        if candidate.is_file():
            return candidate
    return None


def _box_problem(obj: VocObject, width: int, height: int) -> str | None:
    xmin, ymin, xmax, ymax = obj.bndbox
    coordinates = f"(xmin, ymin, xmax, ymax) = ({xmin:g}, {ymin:g}, {xmax:g}, {ymax:g})"
    if xmax < xmin or ymax < ymin:
        side = "xmax < xmin" if xmax < xmin else "ymax < ymin"
        return f"{obj.describe()} has an inverted box, {side}: {coordinates}"
    if xmin < 0 or ymin < 0 or xmax > width + 1 or ymax > height + 1:
        return f"{obj.describe()} has a box outside the {width}x{height} image: {coordinates}"
    return None


def _to_record_box(bndbox: tuple[float, float, float, float], width: int, height: int) -> list[float]:
    xmin, ymin, xmax, ymax = bndbox
    return [
        min(max(xmin - 1.0, 0.0), width - 1.0),
        min(max(ymin - 1.0, 0.0), height - 1.0),
        min(max(xmax - 1.0, 0.0), width - 1.0),
        min(max(ymax - 1.0, 0.0), height - 1.0),
    ]


def load_voc(
    root: str | PathLike,
    split: str,
    classes: ClassSpec = VOC_CLASSES,
    *,
    skip_bad: bool = False,
    check_images: bool = False,
    allow_empty: bool = False,
) -> DetectionDataset:
    """Load one image set of a VOC-format dataset.

    Args:
        root: the dataset directory (holding ``Annotations/``), or a directory
            leading to exactly one (see :func:`resolve_voc_root`).
        split: image set name, e.g. ``"trainval"`` or ``"test"``.
        classes: class names, a named list (``"voc"``, ``"synthetic"``) or
            ``"discover"`` for the sorted names found in this split.
        skip_bad: leave out bad objects and images with a warning instead of
            raising :class:`DatasetError`; they are listed in ``issues``.
        check_images: decode every image, catching corrupt files and sizes
            that disagree with the annotation (slower).
        allow_empty: accept images whose annotation has no objects.
    """
    root = resolve_voc_root(root)
    log = IssueLog(skip_bad)
    image_ids = read_image_set(root, split)
    split_file = root / "ImageSets" / "Main" / f"{split}.txt"

    parsed: list[tuple[str, VocAnnotation, Path]] = []
    seen: set[str] = set()
    for image_id in image_ids:
        if image_id in seen:
            log.report(split_file, f"lists image {image_id!r} more than once", "image")
            continue
        seen.add(image_id)
        xml_path = root / "Annotations" / f"{image_id}.xml"
        try:
            annotation = parse_voc_annotation(xml_path)
        except DatasetError as error:
            log.report(error.path, error.problem, "image")
            continue
        image_path = _find_image(root, image_id, annotation.filename)
        if image_path is None:
            log.report(root / "JPEGImages" / f"{image_id}.jpg", "image file not found", "image")
            continue
        if not annotation.objects and not allow_empty:
            log.report(xml_path, "annotation has no objects", "image")
            continue
        parsed.append((image_id, annotation, image_path))

    class_names = resolve_class_names(classes)
    if class_names is None:
        found = {obj.name for _, ann, _ in parsed for obj in ann.objects if obj.problem is None}
        class_names = tuple(sorted(found))
    label_of = {name: label for label, name in enumerate(class_names)}

    records = []
    for image_id, annotation, image_path in parsed:
        record = _build_record(image_id, annotation, image_path, label_of, log, check_images)
        if record is not None:
            records.append(record)
    return DetectionDataset(
        format="voc",
        root=root,
        split=split,
        class_names=class_names,
        records=tuple(records),
        category_ids=tuple(range(1, len(class_names) + 1)),
        issues=tuple(log.issues),
    )


def _build_record(
    image_id: str,
    annotation: VocAnnotation,
    image_path: Path,
    label_of: Mapping[str, int],
    log: IssueLog,
    check_images: bool,
) -> ImageRecord | None:
    width, height = annotation.width, annotation.height
    if check_images or width is None or height is None:
        try:
            image = read_image(image_path)
        except DatasetError as error:
            log.report(error.path, error.problem, "image")
            return None
        actual_h, actual_w = image.shape[:2]
        if width is not None and height is not None and (width, height) != (actual_w, actual_h):
            log.report(
                image_path,
                f"image is {actual_w}x{actual_h} but {annotation.path.name} says {width}x{height}",
                "image",
            )
            return None
        width, height = actual_w, actual_h

    boxes, labels, difficult = [], [], []
    for obj in annotation.objects:
        problem = obj.problem
        if problem is not None:
            problem = f"{obj.describe()} {problem}"
        elif obj.name not in label_of:
            problem = f"{obj.describe()} has unknown class {obj.name!r} (known: {', '.join(label_of)})"
        else:
            problem = _box_problem(obj, width, height)
        if problem is not None:
            log.report(annotation.path, problem, "object")
            continue
        boxes.append(_to_record_box(obj.bndbox, width, height))
        labels.append(label_of[obj.name])
        difficult.append(obj.difficult)
    return ImageRecord(
        image_id=image_id,
        file_path=str(image_path),
        width=width,
        height=height,
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        labels=labels,
        difficult=difficult,
        crowd=np.zeros(len(boxes), bool),
    )


def _format_coordinate(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


def write_voc_annotation(
    path: str | PathLike,
    *,
    filename: str,
    width: int,
    height: int,
    objects: Sequence[tuple[str, Sequence[float], bool, bool]],
    folder: str = "",
    database: str = "",
) -> None:
    """Write a VOC XML file.

    ``objects`` are ``(name, box, difficult, truncated)`` with ``box`` in the
    records' 0-based inclusive convention; the file holds it 1-based.
    """
    lines = [
        "<annotation>",
        f"\t<folder>{escape(folder)}</folder>",
        f"\t<filename>{escape(filename)}</filename>",
        "\t<source>",
        f"\t\t<database>{escape(database)}</database>",
        "\t</source>",
        "\t<size>",
        f"\t\t<width>{int(width)}</width>",
        f"\t\t<height>{int(height)}</height>",
        "\t\t<depth>3</depth>",
        "\t</size>",
        "\t<segmented>0</segmented>",
    ]
    for name, box, difficult, truncated in objects:
        lines += [
            "\t<object>",
            f"\t\t<name>{escape(name)}</name>",
            "\t\t<pose>Unspecified</pose>",
            f"\t\t<truncated>{int(bool(truncated))}</truncated>",
            f"\t\t<difficult>{int(bool(difficult))}</difficult>",
            "\t\t<bndbox>",
        ]
        for tag, value in zip(_COORDINATES, box, strict=True):
            lines.append(f"\t\t\t<{tag}>{_format_coordinate(float(value) + 1.0)}</{tag}>")
        lines += ["\t\t</bndbox>", "\t</object>"]
    lines.append("</annotation>")
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_image_sets(root: str | PathLike, splits: Mapping[str, Sequence[str]]) -> None:
    """Write ``ImageSets/Main/<split>.txt`` for each split."""
    main = Path(root) / "ImageSets" / "Main"
    main.mkdir(parents=True, exist_ok=True)
    for split, image_ids in splits.items():
        (main / f"{split}.txt").write_text("".join(f"{i}\n" for i in image_ids), encoding="utf-8")
