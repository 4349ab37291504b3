"""PASCAL VOC format: its layouts, XML annotations and image sets.

A VOC-format dataset is a directory in one of these layouts (see :func:`find_voc_layout`):

- the VOCdevkit layout: ``Annotations/<id>.xml``, ``JPEGImages/<id>.jpg`` and
  ``ImageSets/Main/<split>.txt``;
- a flat folder as labelling tools (labelImg, CVAT) write it: the ``<id>.xml`` files
  beside their images, or in one subfolder with the images in another (any names).

An image is found by the ``<filename>`` its XML names, else by the XML's stem. Splits
are ``<split>.txt`` files listing image ids, in ``ImageSets/Main/`` or in a separate
split directory; the split ``all`` is every annotation file when no ``all.txt`` exists.

XML is read as real-world tools write it: any element order, extra tags, float
coordinates, missing optional flags. Coordinates in the XML are 1-based inclusive
pixels; records hold them 0-based (see :mod:`detaccel.data.records`). A box may
stick out of the image by at most one pixel (as written by tools that use 0-based
pixels); it is clipped to the image.
"""

from __future__ import annotations

import json
import math
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from detaccel.data.classes import AUTO, DISCOVER, VOC_CLASSES, ClassSpec, resolve_class_names
from detaccel.data.errors import DatasetError, IssueLog
from detaccel.data.io import read_image
from detaccel.data.records import DetectionDataset, ImageRecord

__all__ = [
    "ALL_SPLIT",
    "VOC_CLASSES",
    "SplitNotFoundError",
    "UnknownClassError",
    "VocAnnotation",
    "VocLayout",
    "VocObject",
    "discover_voc_classes",
    "find_voc_layout",
    "list_image_sets",
    "load_voc",
    "parse_voc_annotation",
    "read_image_set",
    "resolve_voc_root",
    "write_image_sets",
    "write_voc_annotation",
]

# The split holding every annotation file of the dataset (unless an ``all.txt`` says otherwise).
ALL_SPLIT = "all"

# Image file suffixes looked for (compared in lower case), in order of preference.
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_COORDINATES = ("xmin", "ymin", "xmax", "ymax")
_VOC_YEAR = re.compile(r"VOC\d{4}")


class UnknownClassError(DatasetError):
    """An object whose class is not in the class list."""


class SplitNotFoundError(DatasetError):
    """A split (image set) that the dataset or the split directory lacks; ``known``: the splits found."""

    def __init__(self, path: str | PathLike, problem: str, known: Sequence[str] = ()) -> None:
        super().__init__(path, problem)
        self.known = tuple(known)


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


@dataclass(frozen=True)
class VocLayout:
    """Where the files of a VOC-format dataset are.

    Attributes:
        root: the dataset directory.
        annotations: the directory of the ``<id>.xml`` files.
        image_dirs: the directories searched for images, in order.
        image_sets: the dataset's own directory of ``<split>.txt`` files (may not exist).
        devkit: the VOCdevkit layout; false for a flat labelling-tool folder.
    """

    root: Path
    annotations: Path
    image_dirs: tuple[Path, ...]
    image_sets: Path
    devkit: bool

    def folder_name(self, path: Path) -> str:
        """``path`` as named in messages: relative to the dataset directory."""
        return "the dataset folder" if path == self.root else f"{path.relative_to(self.root)}/"

    def describe(self) -> str:
        """``"VOCdevkit"``, or where a flat folder keeps its annotations and images."""
        if self.devkit:
            return "VOCdevkit"
        images = ", ".join(map(self.folder_name, self.image_dirs)) or "none found"
        return f"flat folder (annotations in {self.folder_name(self.annotations)}, images in {images})"


def natural_key(text: str) -> list[int | str]:
    """Sort key ordering embedded numbers by value: ``img2`` before ``img10``."""
    return [int(part) if i % 2 else part for i, part in enumerate(re.split(r"(\d+)", text))]


def _subdirs(path: Path) -> list[Path]:
    try:
        entries = sorted(os.scandir(path), key=lambda e: e.name)
    except OSError:
        return []
    return [
        Path(e.path) for e in entries if e.is_dir() and not e.name.startswith(".") and e.name != "ImageSets"
    ]


def _has_files(path: Path, suffixes: tuple[str, ...]) -> bool:
    try:
        with os.scandir(path) as entries:
            return any(e.is_file() and Path(e.name).suffix.lower() in suffixes for e in entries)
    except OSError:
        return False


def _devkit_layout(root: Path) -> VocLayout:
    images = root / "JPEGImages"
    image_dirs = (images,) if images.is_dir() else _image_dirs(root, root / "Annotations")
    return VocLayout(root, root / "Annotations", image_dirs, root / "ImageSets" / "Main", devkit=True)


def _image_dirs(root: Path, annotations: Path) -> tuple[Path, ...]:
    candidates = [annotations, root, *(p for p in _subdirs(root) if p != annotations)]
    found: list[Path] = []
    for path in candidates:
        if path not in found and _has_files(path, _IMAGE_SUFFIXES):
            found.append(path)
    return tuple(found)


def find_voc_layout(path: str | PathLike) -> VocLayout:
    """The layout of the VOC-format dataset at ``path``.

    ``path`` is a dataset directory, a ``VOCdevkit`` directory or a directory
    containing one (as long as it holds a single dataset), or a flat folder: the
    ``.xml`` files in it, or in exactly one of its subfolders, with the images
    beside them or in other subfolders.
    """
    path = Path(path)
    if not path.is_dir():
        raise DatasetError(path, "dataset directory not found")
    if (path / "Annotations").is_dir():
        return _devkit_layout(path)
    search = path / "VOCdevkit" if (path / "VOCdevkit").is_dir() else path
    found = [p for p in _subdirs(search) if (p / "Annotations").is_dir()]
    if len(found) == 1:
        return _devkit_layout(found[0])
    if found:
        names = ", ".join(p.name for p in found)
        raise DatasetError(path, f"holds several VOC datasets ({names}); give one of them")
    if _has_files(path, (".xml",)):
        annotations = path
    else:
        xml_dirs = [p for p in _subdirs(path) if _has_files(p, (".xml",))]
        if not xml_dirs:
            raise DatasetError(
                path,
                "not a VOC dataset (no Annotations/ directory, and no .xml annotation files in it "
                "or in its subfolders)",
            )
        if len(xml_dirs) > 1:
            names = ", ".join(f"{p.name}/" for p in xml_dirs)
            raise DatasetError(
                path, f"holds .xml annotation files in several folders ({names}); give one of them"
            )
        annotations = xml_dirs[0]
    return VocLayout(path, annotations, _image_dirs(path, annotations), path / "ImageSets" / "Main", False)


def resolve_voc_root(path: str | PathLike) -> Path:
    """The dataset directory at ``path``: itself or its only VOC dataset (see :func:`find_voc_layout`)."""
    return find_voc_layout(path).root


def _layout(root: str | PathLike | VocLayout) -> VocLayout:
    return root if isinstance(root, VocLayout) else find_voc_layout(root)


def _annotation_ids(layout: VocLayout) -> list[str]:
    try:
        names = [e.name for e in os.scandir(layout.annotations) if e.is_file()]
    except OSError as error:
        raise DatasetError(layout.annotations, f"cannot list annotation files ({error.strerror})") from None
    return sorted((name[:-4] for name in names if name.lower().endswith(".xml")), key=natural_key)


def _xml_path(layout: VocLayout, image_id: str) -> Path:
    """``<id>.xml`` in the annotation directory (``<id>.XML`` where only that exists)."""
    path = layout.annotations / f"{image_id}.xml"
    upper = path.with_suffix(".XML")
    return upper if not path.is_file() and upper.is_file() else path


def list_image_sets(
    root: str | PathLike | VocLayout, split_dir: str | PathLike | None = None
) -> dict[str, Path]:
    """The splits in ``split_dir`` (default: the dataset's ``ImageSets/Main``): name to file, sorted.

    Per-class lists (``<class>_<split>.txt``, as in VOC) are left out.
    """
    directory = Path(split_dir) if split_dir is not None else _layout(root).image_sets
    if not directory.is_dir():
        return {}
    files = {p.stem: p for p in sorted(directory.glob("*.txt"), key=lambda p: natural_key(p.stem))}
    return {
        name: path
        for name, path in files.items()
        if not ("_" in name and name.rsplit("_", 1)[1] in files and name.rsplit("_", 1)[1] != name)
    }


def read_image_set(
    root: str | PathLike | VocLayout, split: str, split_dir: str | PathLike | None = None
) -> list[str]:
    """Image ids of ``split``: the first column of each line of ``<split>.txt``, in order.

    The file is read from ``split_dir`` when given, else from the dataset's
    ``ImageSets/Main``. Without an ``all.txt``, the split ``all`` is every
    annotation file, in natural order of the ids.
    """
    layout = _layout(root)
    directory = Path(split_dir) if split_dir is not None else layout.image_sets
    path = directory / f"{split}.txt"
    if not path.is_file():
        if split == ALL_SPLIT:
            return _annotation_ids(layout)
        if split_dir is not None and not directory.is_dir():
            raise SplitNotFoundError(directory, "split directory not found")
        known = list_image_sets(layout, split_dir)
        where = "" if split_dir is None else " in the split directory"
        hint = f" (splits found: {', '.join(known)})" if known else f" (no split files{where})"
        raise SplitNotFoundError(path, f"image set {split!r} not found{hint}", known)
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


class _ImageFinder:
    """Finds each image in the layout's image directories (listed once)."""

    def __init__(self, layout: VocLayout) -> None:
        self.layout = layout
        self._by_name: dict[str, Path] = {}
        self._by_stem: dict[str, list[Path]] = {}
        for directory in layout.image_dirs:
            try:
                names = sorted(e.name for e in os.scandir(directory) if e.is_file())
            except OSError:
                continue
            for name in names:
                suffix = Path(name).suffix.lower()
                if suffix not in _IMAGE_SUFFIXES:
                    continue
                path = directory / name
                self._by_name.setdefault(name, path)
                self._by_stem.setdefault(name[: -len(suffix)], []).append(path)

    def find(self, image_id: str, filename: str | None) -> Path | None:
        """The image the XML's ``<filename>`` names, else the one named after the id."""
        if filename:
            found = self._by_name.get(Path(filename.replace("\\", "/")).name)
            if found is not None:
                return found
        candidates = self._by_stem.get(image_id, [])
        if not candidates:
            return None
        return min(candidates, key=lambda p: _IMAGE_SUFFIXES.index(p.suffix.lower()))

    def missing(self, image_id: str, xml_path: Path, filename: str | None) -> tuple[Path, str]:
        """The path and problem to report for an image that is not found."""
        if self.layout.devkit and self.layout.image_dirs:
            return self.layout.image_dirs[0] / f"{image_id}.jpg", "image file not found"
        where = ", ".join(map(self.layout.folder_name, self.layout.image_dirs)) or "no folder with images"
        named = f"{Path(filename).name!r} or " if filename else ""
        return xml_path, f"image file not found (looked for {named}{image_id}.<jpg|png|...> in {where})"


def _synthetic_classes(root: Path) -> tuple[str, ...] | None:
    """The class list of the embedded synthetic set (``synthetic.json`` beside its ``VOCdevkit``)."""
    for directory in (root, root.parent, root.parent.parent):
        meta = directory / "synthetic.json"
        if meta.is_file():
            try:
                data = json.loads(meta.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return None
            if not isinstance(data, dict) or data.get("generator") != "detaccel synthetic":
                return None
            classes = data.get("classes")
            return tuple(str(name) for name in classes) if isinstance(classes, list) and classes else None
    return None


def _object_names(annotations: Iterable[VocAnnotation]) -> set[str]:
    return {obj.name for annotation in annotations for obj in annotation.objects if obj.problem is None}


def discover_voc_classes(
    root: str | PathLike | VocLayout, parsed: Mapping[str, VocAnnotation] | None = None
) -> tuple[str, ...]:
    """The sorted class names of every annotation file of the dataset (not one split's alone).

    ``parsed`` maps ids to annotations already read; files that cannot be parsed
    are left out (loading their split reports them).
    """
    layout = _layout(root)
    parsed = parsed or {}
    annotations = list(parsed.values())
    for image_id in _annotation_ids(layout):
        if image_id not in parsed:
            try:
                annotations.append(parse_voc_annotation(_xml_path(layout, image_id)))
            except DatasetError:
                continue
    return tuple(sorted(_object_names(annotations)))


def _choose_classes(
    spec: ClassSpec, layout: VocLayout, parsed: Mapping[str, VocAnnotation]
) -> tuple[str, ...]:
    if isinstance(spec, str) and spec == AUTO:
        synthetic = _synthetic_classes(layout.root)
        if synthetic is not None:
            return synthetic
        if _VOC_YEAR.fullmatch(layout.root.name) and _object_names(parsed.values()) <= set(VOC_CLASSES):
            return VOC_CLASSES
        spec = DISCOVER
    names = resolve_class_names(spec)
    return names if names is not None else discover_voc_classes(layout, parsed)


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
    classes: ClassSpec = AUTO,
    *,
    skip_bad: bool = False,
    check_images: bool = False,
    allow_empty: bool = False,
    split_dir: str | PathLike | None = None,
) -> DetectionDataset:
    """Load one split of a VOC-format dataset.

    Args:
        root: the dataset directory in any layout :func:`find_voc_layout` reads.
        split: image set name, e.g. ``"trainval"`` or ``"test"``; ``"all"`` for
            every annotation file when there is no ``all.txt``.
        classes: ``"auto"`` (the synthetic set's own list for it; the 20 VOC
            classes for a ``VOC20xx`` folder whose objects are all of them;
            else ``"discover"``), a named list (``"voc"``, ``"synthetic"``),
            ``"discover"`` for the sorted names found in the dataset's annotation
            files, or the class names.
        skip_bad: leave out bad objects and images with a warning instead of
            raising :class:`DatasetError`; they are listed in ``issues``.
        check_images: decode every image, catching corrupt files and sizes
            that disagree with the annotation (slower).
        allow_empty: accept images whose annotation has no objects.
        split_dir: read ``<split>.txt`` from this directory instead of the
            dataset's ``ImageSets/Main``.
    """
    layout = find_voc_layout(root)
    log = IssueLog(skip_bad)
    image_ids = read_image_set(layout, split, split_dir)
    directory = Path(split_dir) if split_dir is not None else layout.image_sets
    split_file = directory / f"{split}.txt"
    images = _ImageFinder(layout)

    parsed: dict[str, VocAnnotation] = {}
    found: list[tuple[str, VocAnnotation, Path]] = []
    seen: set[str] = set()
    for image_id in image_ids:
        if image_id in seen:
            log.report(split_file, f"lists image {image_id!r} more than once", "image")
            continue
        seen.add(image_id)
        xml_path = _xml_path(layout, image_id)
        try:
            annotation = parse_voc_annotation(xml_path)
        except DatasetError as error:
            log.report(error.path, error.problem, "image")
            continue
        parsed[image_id] = annotation
        image_path = images.find(image_id, annotation.filename)
        if image_path is None:
            log.report(*images.missing(image_id, xml_path, annotation.filename), "image")
            continue
        if not annotation.objects and not allow_empty:
            log.report(xml_path, "annotation has no objects", "image")
            continue
        found.append((image_id, annotation, image_path))

    class_names = _choose_classes(classes, layout, parsed)
    label_of = {name: label for label, name in enumerate(class_names)}

    records = []
    for image_id, annotation, image_path in found:
        record = _build_record(image_id, annotation, image_path, label_of, log, check_images)
        if record is not None:
            records.append(record)
    return DetectionDataset(
        format="voc",
        root=layout.root,
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
            if not log.skip_bad:
                error = UnknownClassError(annotation.path, problem)
                error.skippable = True  # skipping bad input would leave the object out
                raise error
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
