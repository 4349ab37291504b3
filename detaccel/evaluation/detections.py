"""Detections of one image, and how per-image detections line up with dataset records."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from detaccel.data.records import ImageId, ImageRecord


def as_numpy(value: Any, dtype: Any) -> np.ndarray:
    """A numpy copy of an array-like or a ``torch.Tensor`` (on any device)."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    return np.array(value, dtype=dtype, copy=True)


@dataclass(frozen=True, eq=False)
class Detections:
    """Scored, labelled boxes of one image.

    Attributes:
        boxes: float64 ``[N, 4]``, inclusive ``(x1, y1, x2, y2)`` in original image pixels.
        scores: float64 ``[N]``, higher is more confident.
        labels: int64 ``[N]``, indices into the dataset's class names.
    """

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        boxes = as_numpy(self.boxes, np.float64).reshape(-1, 4)
        scores = as_numpy(self.scores, np.float64).reshape(-1)
        labels = as_numpy(self.labels, np.int64).reshape(-1)
        if not len(boxes) == len(scores) == len(labels):
            counts = f"{len(boxes)} boxes, {len(scores)} scores and {len(labels)} labels"
            raise ValueError(f"detections: {counts} differ in number")
        for name, value in (("boxes", boxes), ("scores", scores), ("labels", labels)):
            value.flags.writeable = False
            object.__setattr__(self, name, value)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))

    def __len__(self) -> int:
        return len(self.scores)

    def of_class(self, label: int) -> Detections:
        keep = self.labels == label
        return Detections(self.boxes[keep], self.scores[keep], self.labels[keep])


DetectionsLike = Detections | tuple | Mapping[str, Any]
# Per-image detections: a sequence aligned with the records, or a mapping from image id.
DetectionsInput = Sequence[DetectionsLike] | Mapping[ImageId, DetectionsLike]


def to_detections(value: DetectionsLike) -> Detections:
    """A :class:`Detections` from itself, a ``(boxes, scores, labels)`` tuple or a dict with those keys."""
    if isinstance(value, Detections):
        return value
    if isinstance(value, Mapping):
        return Detections(value["boxes"], value["scores"], value["labels"])
    boxes, scores, labels = value
    return Detections(boxes, scores, labels)


def align_detections(records: Sequence[ImageRecord], detections: DetectionsInput) -> list[Detections]:
    """One :class:`Detections` per record.

    A mapping may leave images out (they have no detections) but may not name
    an image that is not among the records; a sequence must match the records
    one to one.
    """
    if isinstance(detections, Mapping):
        known = {record.image_id for record in records}
        unknown = [image_id for image_id in detections if image_id not in known]
        if unknown:
            raise ValueError(
                f"detections for {len(unknown)} image(s) not in the dataset, e.g. {unknown[0]!r}"
            )
        empty = Detections.empty()
        return [to_detections(detections[r.image_id]) if r.image_id in detections else empty for r in records]
    if len(detections) != len(records):
        raise ValueError(f"{len(detections)} detection entries for {len(records)} images")
    return [to_detections(value) for value in detections]
