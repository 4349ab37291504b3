"""Detections and proposals on disk, in formats other tools read and write.

- VOC: one ``<comp>_det_<split>_<class>.txt`` per class (``comp4`` by
  default), each line ``<image id> <score> <xmin> <ymin> <xmax> <ymax>`` with
  the devkit's 1-based pixel coordinates.
- COCO results JSON: a list of ``{"image_id", "category_id", "bbox": [x, y,
  w, h], "score"}`` in the dataset's own ids (image ids as in
  :func:`coco_image_ids`, category ids the dataset's ``category_ids``), so
  that pycocotools scores it against the annotation file as detaccel does.
- Proposals: ``.npz`` with ``image_ids`` (strings), ``counts`` ``[N]``,
  ``boxes`` float32 ``[sum(counts), 4]`` (records' inclusive 0-based pixels)
  and optionally ``scores``; or a COCO results JSON (``category_id`` 1).

Readers check what they read and raise :class:`DatasetError` naming the file
(and line) and the problem.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from detaccel.data.errors import DatasetError
from detaccel.data.records import ImageId, ImageRecord
from detaccel.evaluation.coco_eval import coco_box, coco_image_ids, detections_to_coco
from detaccel.evaluation.detections import Detections, DetectionsInput, align_detections, as_numpy

_VOC_NAME = re.compile(r"^(?P<comp>[^_]+)_det_(?P<rest>.+)\.txt$")


def voc_detection_path(out_dir: str | PathLike, split: str, class_name: str, comp: str = "comp4") -> Path:
    """``<out_dir>/<comp>_det_<split>_<class>.txt``."""
    return Path(out_dir) / f"{comp}_det_{split}_{class_name}.txt"


def write_voc_detections(
    out_dir: str | PathLike,
    records: Sequence[ImageRecord],
    detections: DetectionsInput,
    class_names: Sequence[str],
    split: str,
    comp: str = "comp4",
) -> list[Path]:
    """Write one VOC results file per class (empty when the class has no detections)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lines: dict[int, list[str]] = defaultdict(list)
    for record, dets in zip(records, align_detections(records, detections), strict=True):
        for box, score, label in zip(dets.boxes, dets.scores, dets.labels, strict=True):
            x1, y1, x2, y2 = (float(v) + 1.0 for v in box)
            lines[int(label)].append(f"{record.image_id} {score:.8g} {x1:.2f} {y1:.2f} {x2:.2f} {y2:.2f}\n")
    paths = []
    for label, name in enumerate(class_names):
        path = voc_detection_path(out_dir, split, name, comp)
        path.write_text("".join(lines.get(label, [])), encoding="utf-8")
        paths.append(path)
    return paths


def _voc_files(path: Path, split: str, class_names: Sequence[str]) -> list[tuple[Path, int]]:
    candidates = [path] if path.is_file() else sorted(path.glob("*_det_*.txt")) if path.is_dir() else None
    if candidates is None:
        raise DatasetError(path, "detections not found")
    label_of = {name: label for label, name in enumerate(class_names)}
    files = []
    for file in candidates:
        match = _VOC_NAME.match(file.name)
        if match is None:
            raise DatasetError(file, "not a VOC results file name (expected <comp>_det_<split>_<class>.txt)")
        rest = match.group("rest")
        if not rest.startswith(f"{split}_"):
            if path.is_file():
                raise DatasetError(file, f"holds detections for another split than {split!r}")
            continue
        name = rest[len(split) + 1 :]
        if name not in label_of:
            raise DatasetError(file, f"unknown class {name!r} (known: {', '.join(class_names)})")
        files.append((file, label_of[name]))
    if not files:
        raise DatasetError(path, f"no VOC results files for split {split!r} (<comp>_det_{split}_<class>.txt)")
    return files


def read_voc_detections(
    path: str | PathLike,
    records: Sequence[ImageRecord],
    class_names: Sequence[str],
    split: str,
) -> dict[ImageId, Detections]:
    """Read VOC results files (a directory of them, or one file) into per-image detections."""
    by_name = {str(r.image_id): r.image_id for r in records}
    boxes: dict[ImageId, list] = defaultdict(list)
    scores: dict[ImageId, list] = defaultdict(list)
    labels: dict[ImageId, list] = defaultdict(list)
    for file, label in _voc_files(Path(path), split, class_names):
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise DatasetError(file, f"cannot read detections ({error})") from None
        for number, line in enumerate(text.splitlines(), start=1):
            fields = line.split()
            if not fields:
                continue
            where = f"{file}:{number}"
            if len(fields) != 6:
                raise DatasetError(where, "expected '<image id> <score> <xmin> <ymin> <xmax> <ymax>'")
            if fields[0] not in by_name:
                raise DatasetError(where, f"unknown image id {fields[0]!r} (not in split {split!r})")
            try:
                values = [float(v) for v in fields[1:]]
            except ValueError:
                raise DatasetError(where, "score and coordinates must be numbers") from None
            if not all(math.isfinite(v) for v in values):
                raise DatasetError(where, "score and coordinates must be finite")
            image_id = by_name[fields[0]]
            scores[image_id].append(values[0])
            boxes[image_id].append([v - 1.0 for v in values[1:]])
            labels[image_id].append(label)
    return {i: Detections(boxes[i], scores[i], labels[i]) for i in boxes}


def write_coco_detections(
    path: str | PathLike,
    records: Sequence[ImageRecord],
    detections: DetectionsInput,
    category_ids: Sequence[int],
) -> Path:
    """Write per-image detections as a COCO results JSON file.

    ``category_ids`` are the dataset's (``dataset.category_ids``): label ``k`` is
    written as category ``category_ids[k]``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(detections_to_coco(records, detections, category_ids)), encoding="utf-8")
    return path


def read_coco_results(path: str | PathLike) -> list[dict[str, Any]]:
    """A COCO results JSON file, checked: a list of dicts with ``image_id``, ``bbox`` and ``score``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(path, "results file not found") from None
    except json.JSONDecodeError as error:
        raise DatasetError(
            path, f"malformed or truncated JSON at line {error.lineno} column {error.colno}: {error.msg}"
        ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise DatasetError(path, f"cannot read results ({error})") from None
    if not isinstance(data, list):
        raise DatasetError(path, "not a COCO results file (expected a JSON list)")
    for i, entry in enumerate(data):
        if not isinstance(entry, dict) or not {"image_id", "bbox", "score"} <= entry.keys():
            raise DatasetError(path, f"result {i} needs 'image_id', 'bbox' and 'score'")
        bbox = entry["bbox"]
        if not isinstance(bbox, list) or len(bbox) != 4 or not all(isinstance(v, int | float) for v in bbox):
            raise DatasetError(path, f"result {i} has a bad 'bbox' {bbox!r}")
    return data


def _group_coco_results(
    path: Path, results: list[dict[str, Any]], records: Sequence[ImageRecord]
) -> dict[ImageId, list[tuple[list[float], float, Any]]]:
    record_id = {coco_id: image_id for image_id, coco_id in coco_image_ids(records).items()}
    grouped: dict[ImageId, list] = defaultdict(list)
    for i, entry in enumerate(results):
        if entry["image_id"] not in record_id:
            raise DatasetError(path, f"result {i} refers to unknown image id {entry['image_id']!r}")
        x, y, w, h = (float(v) for v in entry["bbox"])
        box = [x, y, x + w - 1.0, y + h - 1.0]
        grouped[record_id[entry["image_id"]]].append((box, float(entry["score"]), entry.get("category_id")))
    return grouped


def read_coco_detections(
    path: str | PathLike,
    records: Sequence[ImageRecord],
    category_ids: Sequence[int],
) -> dict[ImageId, Detections]:
    """Read a COCO results JSON file into per-image detections."""
    path = Path(path)
    label_of = {int(c): label for label, c in enumerate(category_ids)}
    out = {}
    for image_id, entries in _group_coco_results(path, read_coco_results(path), records).items():
        labels = []
        for _, _, category in entries:
            if category not in label_of:
                known = ", ".join(map(str, label_of))
                raise DatasetError(
                    path, f"unknown category id {category!r} (image {image_id!r}; the classes' ids: {known})"
                )
            labels.append(label_of[category])
        out[image_id] = Detections([e[0] for e in entries], [e[1] for e in entries], labels)
    return out


def write_proposals(
    path: str | PathLike,
    records: Sequence[ImageRecord],
    proposals: Sequence[Any] | Mapping[ImageId, Any] | None = None,
) -> Path:
    """Save proposals (boxes, or ``(boxes, scores)`` per image; the records' own when ``None``).

    The format follows the suffix: ``.npz`` or ``.json`` (see the module docstring); JSON
    proposals without scores get decreasing scores that keep their order.
    """
    path = Path(path)
    entries = []
    for i, record in enumerate(records):
        if proposals is None:
            value = (record.proposals, record.proposal_scores)
            if record.proposals is None:
                raise ValueError(f"record {record.image_id!r} carries no proposals")
        elif isinstance(proposals, Mapping):
            value = proposals.get(record.image_id, np.zeros((0, 4)))
        else:
            value = proposals[i]
        boxes, scores = value if isinstance(value, tuple) else (value, None)
        boxes = as_numpy(boxes, np.float32).reshape(-1, 4)
        scores = None if scores is None else as_numpy(scores, np.float32).reshape(-1)
        entries.append((record, boxes, scores))
    have_scores = {scores is not None for _, _, scores in entries}
    if len(have_scores) > 1:
        raise ValueError("either every image's proposals have scores or none do")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npz":
        arrays = {
            "image_ids": np.array([str(r.image_id) for r, _, _ in entries]),
            "counts": np.array([len(b) for _, b, _ in entries], np.int64),
            "boxes": np.concatenate([b for _, b, _ in entries]) if entries else np.zeros((0, 4), np.float32),
        }
        if have_scores == {True}:
            arrays["scores"] = np.concatenate([s for _, _, s in entries])
        np.savez_compressed(path, **arrays)
    elif path.suffix == ".json":
        ids = coco_image_ids(records)
        results = []
        for record, boxes, scores in entries:
            for j, box in enumerate(boxes):
                score = float(scores[j]) if scores is not None else float(len(boxes) - j)
                results.append(
                    {
                        "image_id": ids[record.image_id],
                        "category_id": 1,
                        "bbox": coco_box(box),
                        "score": score,
                    }
                )
        path.write_text(json.dumps(results), encoding="utf-8")
    else:
        raise ValueError(f"{path}: proposals are saved as .npz or .json")
    return path


def read_proposals(
    path: str | PathLike, records: Sequence[ImageRecord]
) -> dict[ImageId, tuple[np.ndarray, np.ndarray | None]]:
    """Read proposals saved by :func:`write_proposals` (or another tool): image id -> ``(boxes, scores)``."""
    path = Path(path)
    if path.suffix == ".json":
        grouped = _group_coco_results(path, read_coco_results(path), records)
        return {
            image_id: (
                np.array([e[0] for e in entries], np.float32),
                np.array([e[1] for e in entries], np.float32),
            )
            for image_id, entries in grouped.items()
        }
    by_name = {str(r.image_id): r.image_id for r in records}
    try:
        with np.load(path, allow_pickle=False) as data:
            image_ids, counts, boxes = data["image_ids"], data["counts"], data["boxes"]
            scores = data["scores"] if "scores" in data.files else None
    except FileNotFoundError:
        raise DatasetError(path, "proposals file not found") from None
    except KeyError as error:
        raise DatasetError(path, f"not a proposals file (no {error} array)") from None
    except (OSError, ValueError) as error:
        raise DatasetError(path, f"cannot read proposals ({error})") from None
    if (
        boxes.ndim != 2
        or boxes.shape[1] != 4
        or int(counts.sum()) != len(boxes)
        or len(counts) != len(image_ids)
    ):
        raise DatasetError(path, "inconsistent proposals file (counts, image_ids and boxes disagree)")
    if scores is not None and len(scores) != len(boxes):
        raise DatasetError(path, "inconsistent proposals file (scores and boxes disagree)")
    out = {}
    offsets = np.concatenate([[0], np.cumsum(counts)])
    for name, start, stop in zip(image_ids, offsets[:-1], offsets[1:], strict=True):
        if str(name) not in by_name:
            raise DatasetError(path, f"proposals for unknown image id {str(name)!r}")
        out[by_name[str(name)]] = (boxes[start:stop], None if scores is None else scores[start:stop])
    return out
