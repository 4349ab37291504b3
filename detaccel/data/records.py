"""The image record shared by every dataset format, and a loaded dataset.

Box convention
--------------
Boxes are ``(x1, y1, x2, y2)`` float32 in pixels, 0-based, and *inclusive*:
``x1``/``x2`` are the first and last pixel columns the object covers, so a box
is ``x2 - x1 + 1`` pixels wide and a one-pixel box has ``x1 == x2``. This is
the convention of the PASCAL VOC devkit (whose XML files hold the same pixels
1-based) and of Fast R-CNN. A VOC ``<xmin>`` of 1 loads as ``x1 = 0``; a COCO
``[x, y, w, h]`` loads as ``(x, y, x + w - 1, y + h - 1)``.

Labels index the dataset's ``class_names`` (0-based; there is no background
class here).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from detaccel.data.errors import DatasetIssue, count_kinds, plural

ImageId = int | str


def _frozen(array: Any, dtype: Any, shape_tail: tuple[int, ...], name: str) -> np.ndarray:
    out = np.array(array, dtype=dtype, copy=True)
    if out.size == 0:
        out = out.reshape((0, *shape_tail))
    if out.ndim != 1 + len(shape_tail) or out.shape[1:] != shape_tail:
        raise ValueError(
            f"{name}: expected shape [N{''.join(f', {d}' for d in shape_tail)}], got {out.shape}"
        )
    out.flags.writeable = False
    return out


@dataclass(frozen=True, eq=False)
class ImageRecord:
    """One annotated image.

    Attributes:
        image_id: the VOC image name (``"000001"``) or the COCO image id.
        file_path: path of the image file.
        width, height: image size in pixels.
        boxes: float32 ``[N, 4]``, inclusive ``(x1, y1, x2, y2)`` (see the module docstring).
        labels: int64 ``[N]`` indices into the dataset's class names.
        difficult: bool ``[N]``, VOC's ``difficult`` flag.
        crowd: bool ``[N]``, COCO's ``iscrowd`` flag.
        proposals: optional float32 ``[P, 4]`` precomputed region proposals.
        proposal_scores: optional float32 ``[P]`` scores of the proposals.
    """

    image_id: ImageId
    file_path: str
    width: int
    height: int
    boxes: np.ndarray
    labels: np.ndarray
    difficult: np.ndarray
    crowd: np.ndarray
    proposals: np.ndarray | None = None
    proposal_scores: np.ndarray | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "file_path", str(self.file_path))
        set_(self, "width", int(self.width))
        set_(self, "height", int(self.height))
        set_(self, "boxes", _frozen(self.boxes, np.float32, (4,), "boxes"))
        n = len(self.boxes)
        for name, dtype in (("labels", np.int64), ("difficult", bool), ("crowd", bool)):
            value = _frozen(getattr(self, name), dtype, (), name)
            if len(value) != n:
                raise ValueError(f"{name}: expected {n} values (one per box), got {len(value)}")
            set_(self, name, value)
        if self.proposals is not None:
            set_(self, "proposals", _frozen(self.proposals, np.float32, (4,), "proposals"))
            if self.proposal_scores is not None:
                scores = _frozen(self.proposal_scores, np.float32, (), "proposal_scores")
                if len(scores) != len(self.proposals):
                    raise ValueError("proposal_scores: expected one score per proposal")
                set_(self, "proposal_scores", scores)
        elif self.proposal_scores is not None:
            raise ValueError("proposal_scores given without proposals")

    @property
    def num_objects(self) -> int:
        return len(self.boxes)

    @property
    def ignored(self) -> np.ndarray:
        """Objects that evaluation neither requires nor penalises: difficult or crowd."""
        return self.difficult | self.crowd

    def with_proposals(self, boxes: Any, scores: Any = None) -> ImageRecord:
        """A copy of this record carrying the given proposals."""
        return replace(self, proposals=boxes, proposal_scores=scores)

    def same_annotations(self, other: ImageRecord) -> bool:
        """Whether size, boxes, labels and flags equal those of ``other`` (ids and paths aside)."""
        return (
            self.width == other.width
            and self.height == other.height
            and np.array_equal(self.boxes, other.boxes)
            and np.array_equal(self.labels, other.labels)
            and np.array_equal(self.difficult, other.difficult)
            and np.array_equal(self.crowd, other.crowd)
        )


@dataclass(frozen=True)
class LeftOutCategory:
    """A COCO category that is not a class of the loaded dataset, and how many objects it has there."""

    id: int
    name: str
    objects: int  # 0: the split has no object of it

    def __str__(self) -> str:
        reason = "no objects" if not self.objects else f"{plural(self.objects, 'object')} left out"
        return f"{self.id} {self.name!r} ({reason})"


@dataclass(frozen=True, eq=False)
class DetectionDataset:
    """A loaded dataset split: its records, class names and any skipped problems.

    Attributes:
        format: ``"voc"`` or ``"coco"``.
        root: the dataset directory (VOC) or the image directory (COCO).
        split: the split name (VOC image set, or the COCO annotation file's stem).
        class_names: the class of each label.
        records: one per image, in split order.
        category_ids: the COCO category id of each label (``1..K`` for VOC).
        annotation_file: the COCO JSON file, ``None`` for VOC.
        issues: problems skipped while loading (only when skipping bad input).
        coco_annotations: for COCO, the validated ground truth as a COCO dataset
            dict (``images``, ``annotations``, ``categories``) as written in the file,
            restricted to the categories of ``class_names``.
        left_out_categories: COCO categories of the file that are not classes of
            this dataset (no objects in the split, or not in the class list asked for).
    """

    format: str
    root: Path
    split: str
    class_names: tuple[str, ...]
    records: tuple[ImageRecord, ...]
    category_ids: tuple[int, ...]
    annotation_file: Path | None = None
    issues: tuple[DatasetIssue, ...] = field(default=())
    coco_annotations: dict[str, Any] | None = None
    left_out_categories: tuple[LeftOutCategory, ...] = field(default=())

    @property
    def categories(self) -> dict[int, str]:
        """The category id of each class and its name, in label order (what a checkpoint records)."""
        return dict(zip(self.category_ids, self.class_names, strict=True))

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[ImageRecord]:
        return iter(self.records)

    def __getitem__(self, index: int) -> ImageRecord:
        return self.records[index]

    def summary(self) -> dict[str, Any]:
        """Counts of images, objects per class, difficult and crowd objects, skipped problems."""
        per_class = dict.fromkeys(self.class_names, 0)
        difficult = crowd = 0
        for record in self.records:
            for label in record.labels:
                per_class[self.class_names[label]] += 1
            difficult += int(record.difficult.sum())
            crowd += int(record.crowd.sum())
        return {
            "format": self.format,
            "split": self.split,
            "images": len(self.records),
            "images_without_objects": sum(1 for r in self.records if r.num_objects == 0),
            "objects": sum(per_class.values()),
            "difficult": difficult,
            "crowd": crowd,
            "objects_per_class": per_class,
            "skipped_problems": len(self.issues),
            "skipped_by_kind": count_kinds(self.issues),
            "left_out_categories": [
                {"id": c.id, "name": c.name, "objects": c.objects} for c in self.left_out_categories
            ],
        }


def attach_proposals(
    records: Sequence[ImageRecord],
    proposals: Mapping[ImageId, Any],
) -> list[ImageRecord]:
    """Copies of ``records`` carrying precomputed proposals.

    ``proposals`` maps an image id to boxes ``[P, 4]`` or to a pair
    ``(boxes, scores)``. Every record must have an entry.
    """
    out = []
    for record in records:
        if record.image_id not in proposals:
            raise KeyError(f"no proposals for image {record.image_id!r}")
        entry = proposals[record.image_id]
        boxes, scores = entry if isinstance(entry, tuple) else (entry, None)
        out.append(record.with_proposals(boxes, scores))
    return out
