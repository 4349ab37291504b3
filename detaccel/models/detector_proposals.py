"""A trained detector's own proposal slot as a proposal generator, for proposal benchmarks.

R²-CNN inside a detector reads the detector's map (and, with ``reduction:
objectness``, its learned objectness head); :class:`DetectorProposals` runs
exactly that — the detector's test-time resize, its backbone, its proposal
slot — so recall and AR are measured on the boxes :meth:`RegionDetector.predict`
scores, beside image-based generators on the same images.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch

from detaccel.data.transforms import batch_images
from detaccel.models.detector import RegionDetector
from detaccel.models.proposal_generator import FeatureProposals
from detaccel.proposals.base import GeneratorBase, ImageId, RawProposals


class DetectorProposals(GeneratorBase):
    """The proposals ``model.predict`` would score, image by image (BGR in, like every generator).

    Timings: ``backbone`` (the detector's pass at its proposal scale) and
    ``proposals`` (the slot itself: R²-CNN's levels, boxes, ranking, a learned
    head); an image-based slot is timed whole as ``proposals``.
    """

    name = "detector"

    def __init__(self, model: RegionDetector, *, max_proposals: int | None = None) -> None:
        super().__init__(max_proposals=max_proposals)
        self.model = model.eval()

    def describe(self) -> str:
        return f"the trained detector's {self.model.proposal_generator.describe()}"

    @torch.no_grad()
    def _propose(self, image: np.ndarray, features: Any | None, image_id: ImageId | None) -> RawProposals:
        if features is not None:
            raise ValueError("detector proposals: the detector computes its own features")
        model, rgb = self.model, np.ascontiguousarray(image[:, :, ::-1])
        source = model.proposal_generator
        if not isinstance(source, FeatureProposals):
            start = time.perf_counter()
            boxes = source.propose(rgb, image_id)
            return RawProposals(boxes, None, {"proposals": time.perf_counter() - start})
        start = time.perf_counter()
        item = model.test_transform(rgb)[model.proposal_scale]
        batch, sizes = batch_images([torch.from_numpy(item.image)], model.size_divisibility)
        _, proposal_map = model._maps(batch.to(model.device))
        middle = time.perf_counter()
        (boxes,), _ = source(proposal_map, sizes, [item.scale], model.objectness)
        timings = {"backbone": middle - start, "proposals": time.perf_counter() - middle}
        return RawProposals(boxes, None, timings)
