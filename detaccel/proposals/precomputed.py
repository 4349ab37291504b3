"""Proposals read from a file, looked up by image id.

Boxes in the file use the project's convention (inclusive 0-based
``(x1, y1, x2, y2)`` pixels of the original image). Accepted files:

- ``.npz`` with one array per image id (the array name), ``[N, 4]`` boxes
  or ``[N, 5]`` boxes with a score column; or the packed layout written by
  :func:`detaccel.evaluation.write_proposals` (``image_ids``, ``counts``,
  ``boxes`` and optionally ``scores``);
- ``.pkl`` / ``.pickle`` holding a dict image id -> ``[N, 4]``/``[N, 5]``
  array, ``(boxes, scores)`` or ``{"boxes": ..., "scores": ...}`` (pickle
  runs code when loaded: only read files you trust);
- ``.json`` holding a dict image id -> list of ``[x1, y1, x2, y2]`` or
  ``[x1, y1, x2, y2, score]``, or ``{"boxes": [...], "scores": [...]}``; or a
  COCO results list of ``{"image_id", "bbox": [x, y, w, h], "score"}``
  (``bbox`` becomes ``(x, y, x + w - 1, y + h - 1)``).

Image ids are matched as given and then as strings (JSON and ``.npz`` keys
are always strings).
"""

from __future__ import annotations

import json
import pickle
from collections import defaultdict
from collections.abc import Mapping
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np

from detaccel.proposals.base import GeneratorBase, ImageId, RawProposals

_PACKED_KEYS = {"image_ids", "counts", "boxes"}
SUFFIXES = (".npz", ".pkl", ".pickle", ".json")


class MissingProposalsError(LookupError):
    """The proposals file has no entry for the requested image id."""


class ProposalsFileError(ValueError):
    """The proposals file cannot be read or has an entry of the wrong form."""


class Precomputed(GeneratorBase):
    """Boxes (and scores, when the file has them) of each image from ``path``.

    The file is opened on first use. :meth:`generate` needs ``image_id``; an
    id the file does not have raises :class:`MissingProposalsError` naming
    the id and the file.
    """

    name = "precomputed"

    def __init__(
        self, *, path: str | PathLike, max_proposals: int | None = None, min_size: float = 1.0
    ) -> None:
        super().__init__(max_proposals=max_proposals, min_size=min_size)
        self.path = Path(path)
        if self.path.suffix.lower() not in SUFFIXES:
            raise ValueError(f"path: {self.path}: expected a file ending in {', '.join(SUFFIXES)}")
        self._entries: Mapping[Any, Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_entries"] = None  # reopened after unpickling (e.g. in a data-loader worker)
        return state

    def image_ids(self) -> list[str]:
        """The image ids in the file, as strings."""
        return [str(key) for key in self._load()]

    def _load(self) -> Mapping[Any, Any]:
        if self._entries is None:
            if not self.path.is_file():
                raise FileNotFoundError(f"proposals file not found: {self.path}")
            try:
                self._entries = _read(self.path)
            except (OSError, ValueError, KeyError, TypeError, pickle.UnpicklingError, EOFError) as error:
                raise ProposalsFileError(f"{self.path}: cannot read proposals ({error})") from error
        return self._entries

    def lookup(self, image_id: ImageId) -> tuple[np.ndarray, np.ndarray | None]:
        """``(boxes [N, 4], scores [N] or None)`` stored for ``image_id``."""
        entries = self._load()
        for key in (image_id, str(image_id)):
            if key in entries:
                return _parse_entry(entries[key], image_id, self.path)
        raise MissingProposalsError(f"no proposals for image id {image_id!r} in {self.path}")

    def _propose(self, image: np.ndarray, features: Any | None, image_id: ImageId | None) -> RawProposals:
        if image_id is None:
            raise ValueError(f"precomputed proposals ({self.path}) need the image_id of each image")
        return RawProposals(*self.lookup(image_id))


def _read(path: Path) -> Mapping[Any, Any]:
    suffix = path.suffix.lower()
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        return _unpack(arrays) if set(arrays) >= _PACKED_KEYS else arrays
    if suffix == ".json":
        content = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(content, list):
            return _group_coco_results(content)
        if not isinstance(content, dict):
            raise ValueError("expected a JSON object (image id -> boxes) or a COCO results list")
        return content
    with path.open("rb") as file:
        content = pickle.load(file)
    if not isinstance(content, Mapping):
        raise ValueError(f"expected a pickled dict (image id -> boxes), got {type(content).__name__}")
    return content


def _unpack(arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    image_ids, counts, boxes = arrays["image_ids"], arrays["counts"].astype(np.int64), arrays["boxes"]
    scores = arrays.get("scores")
    if len(counts) != len(image_ids) or int(counts.sum()) != len(boxes):
        raise ValueError("inconsistent packed proposals (image_ids, counts and boxes disagree)")
    offsets = np.concatenate([[0], np.cumsum(counts)])
    return {
        str(name): (boxes[start:stop], None if scores is None else scores[start:stop])
        for name, start, stop in zip(image_ids, offsets[:-1], offsets[1:], strict=True)
    }


def _group_coco_results(results: list[Any]) -> dict[str, Any]:
    grouped: dict[str, list[list[float]]] = defaultdict(list)
    for i, result in enumerate(results):
        try:
            x, y, w, h = (float(v) for v in result["bbox"])
            grouped[str(result["image_id"])].append([x, y, x + w - 1.0, y + h - 1.0, float(result["score"])])
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"result {i}: expected {{'image_id', 'bbox': [x, y, w, h], 'score'}}") from None
    return dict(grouped)


def _parse_entry(entry: Any, image_id: ImageId, path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    scores = None
    if isinstance(entry, Mapping):
        boxes, scores = entry.get("boxes"), entry.get("scores")
    elif isinstance(entry, tuple) and len(entry) == 2:
        boxes, scores = entry
    else:
        boxes = entry
    try:
        boxes = np.asarray(boxes, dtype=np.float64)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] not in (4, 5):
            raise ValueError(f"expected boxes of shape [N, 4] or [N, 5], got {boxes.shape}")
        if boxes.shape[1] == 5:
            if scores is not None:
                raise ValueError("scores given both as a fifth column and separately")
            boxes, scores = boxes[:, :4], boxes[:, 4]
        if scores is not None:
            scores = np.asarray(scores, dtype=np.float64).reshape(-1)
            if len(scores) != len(boxes):
                raise ValueError(f"{len(boxes)} boxes but {len(scores)} scores")
    except (TypeError, ValueError) as error:
        raise ProposalsFileError(f"{path}: image id {image_id!r}: {error}") from None
    return boxes, scores
