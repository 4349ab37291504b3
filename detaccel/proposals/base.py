"""What a proposal generator is: the :class:`Proposals` it returns, the
:class:`ProposalGenerator` protocol, and :class:`GeneratorBase`, which the
built-in generators derive from.

A generator takes one image (``[H, W, 3]`` uint8 BGR as ``cv2.imread``
decodes it; grayscale, BGRA, 16-bit and float images are converted by
:func:`~detaccel.proposals.image.to_bgr8`) and, optionally, the detector's
feature map of that image, and returns boxes in the image's pixels. Boxes are
inclusive 0-based ``(x1, y1, x2, y2)`` like the dataset records; all of them
pass through :func:`~detaccel.proposals.postprocess.finalize_proposals`.
"""

from __future__ import annotations

import abc
import inspect
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple, Protocol, runtime_checkable

import numpy as np

from detaccel.proposals._checks import check_float, check_int
from detaccel.proposals.image import to_bgr8
from detaccel.proposals.postprocess import finalize_proposals

ImageId = int | str


@dataclass
class Proposals:
    """Proposals of one image.

    Attributes:
        boxes: float32 ``[N, 4]`` inclusive ``(x1, y1, x2, y2)`` pixels, inside the image.
        scores: float32 ``[N]`` in decreasing order, or ``None`` when the
            generator does not score its boxes (then the order is the generator's).
        image_size: ``(height, width)`` of the image.
        timings: seconds spent per stage: ``"proposals"`` (the generator's own
            work), ``"postprocess"``, and ``"backbone"`` for generators that run
            a network. Image decoding and conversion are not included.
    """

    boxes: np.ndarray
    scores: np.ndarray | None = None
    image_size: tuple[int, int] = (0, 0)
    timings: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        if self.scores is not None:
            self.scores = np.asarray(self.scores, dtype=np.float32).reshape(-1)
            if len(self.scores) != len(self.boxes):
                raise ValueError(f"{len(self.boxes)} boxes but {len(self.scores)} scores")
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def seconds(self) -> float:
        """Total time over all stages in :attr:`timings`."""
        return float(sum(self.timings.values()))


class RawProposals(NamedTuple):
    """What :meth:`GeneratorBase._propose` returns, before post-processing."""

    boxes: Any
    scores: Any | None = None
    timings: dict[str, float] | None = None


@runtime_checkable
class ProposalGenerator(Protocol):
    """Anything that turns images into :class:`Proposals`."""

    name: ClassVar[str]

    def generate(
        self, image: np.ndarray, features: Any | None = None, *, image_id: ImageId | None = None
    ) -> Proposals:
        """Proposals of one image (``features``: the detector's feature map of it, if any)."""
        ...

    def generate_batch(
        self,
        images: Sequence[np.ndarray],
        features: Any | None = None,
        *,
        image_ids: Sequence[ImageId] | None = None,
    ) -> list[Proposals]:
        """Proposals of each image (``features``: one entry per image, if any)."""
        ...


class GeneratorBase(abc.ABC):
    """Base of the built-in generators: conversion, timing, post-processing, batching.

    Subclasses set :attr:`name`, take their parameters as keyword-only
    ``__init__`` arguments stored under the same attribute names, and
    implement :meth:`_propose`.

    Args:
        max_proposals: keep at most this many boxes per image (``None``: all).
        min_size: drop boxes narrower or shorter than this many pixels.
    """

    name: ClassVar[str] = ""

    def __init__(self, *, max_proposals: int | None = None, min_size: float = 1.0) -> None:
        self.max_proposals = check_int("max_proposals", max_proposals, minimum=1, allow_none=True)
        self.min_size = check_float("min_size", min_size, minimum=0.0)

    @abc.abstractmethod
    def _propose(self, image: np.ndarray, features: Any | None, image_id: ImageId | None) -> RawProposals:
        """Raw boxes (inclusive pixels of ``image``), optional scores and stage timings.

        ``image`` is already ``[H, W, 3]`` uint8 BGR. Timings the subclass does
        not report are measured around this call and reported as ``"proposals"``.
        """

    def generate(
        self, image: np.ndarray, features: Any | None = None, *, image_id: ImageId | None = None
    ) -> Proposals:
        """Proposals of one image; see :class:`ProposalGenerator`."""
        image = to_bgr8(image)
        start = time.perf_counter()
        raw = self._propose(image, features, image_id)
        elapsed = time.perf_counter() - start
        return self._finish(raw, image.shape[:2], elapsed)

    __call__ = generate

    def generate_batch(
        self,
        images: Sequence[np.ndarray],
        features: Any | None = None,
        *,
        image_ids: Sequence[ImageId] | None = None,
    ) -> list[Proposals]:
        """Proposals of each image; ``features`` and ``image_ids`` have one entry per image."""
        count = len(images)
        if features is not None and len(features) != count:
            raise ValueError(f"{count} images but {len(features)} feature maps")
        if image_ids is not None and len(image_ids) != count:
            raise ValueError(f"{count} images but {len(image_ids)} image ids")
        return [
            self.generate(
                image,
                None if features is None else features[i],
                image_id=None if image_ids is None else image_ids[i],
            )
            for i, image in enumerate(images)
        ]

    def _finish(self, raw: RawProposals, image_size: tuple[int, int], elapsed: float) -> Proposals:
        timings = dict(raw.timings or {})
        timings.setdefault("proposals", max(0.0, elapsed - sum(timings.values())))
        start = time.perf_counter()
        boxes, scores = finalize_proposals(
            raw.boxes, raw.scores, image_size, min_size=self.min_size, max_proposals=self.max_proposals
        )
        timings["postprocess"] = time.perf_counter() - start
        return Proposals(boxes, scores, image_size, timings)

    def describe(self) -> str:
        """One line saying what this generator reads (for reports)."""
        return self.name

    def parameters(self) -> dict[str, Any]:
        """The constructor arguments of this generator (enough to build it again)."""
        names = [
            p.name
            for p in inspect.signature(type(self).__init__).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        ]
        return {n: getattr(self, n) for n in names if hasattr(self, n)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.parameters().items())
        return f"{type(self).__name__}({args})"
