"""Fitness of a compressed head from RoI features pooled once.

Compression changes only the head and the predictor: the backbone, the
proposals and the pooling of every image are computed once
(:meth:`RegionDetector.pool_regions`), and each candidate runs
:meth:`RegionDetector.detect_pooled` on them — the same code as a full
evaluation, so the mAP is the one ``detaccel eval`` would report.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from tqdm import tqdm

from detaccel.data import ImageRecord, read_image
from detaccel.evaluation import Detections
from detaccel.evaluation.voc_eval import evaluate_voc
from detaccel.models.detector import PooledRegions, RegionDetector


class CachedRegions:
    """Pooled RoI features of ``records`` (with their cached proposals, if any) for ``model``."""

    def __init__(
        self,
        model: RegionDetector,
        records: Sequence[ImageRecord],
        class_names: Sequence[str],
        progress: bool = True,
    ) -> None:
        model.eval()
        self.records = list(records)
        self.class_names = tuple(class_names)
        self.regions: list[PooledRegions] = []
        for record in tqdm(self.records, desc="pool RoIs", disable=not progress, leave=False):
            image = read_image(record.file_path)
            self.regions.append(model.pool_regions([image], [record.proposals], [record.image_id]))

    def voc07_map(self, model: RegionDetector) -> float:
        """VOC07 mAP of ``model``'s head on the cached features (each image as ``predict`` runs it)."""
        detections = {}
        for record, regions in zip(self.records, self.regions, strict=True):
            (prediction,) = model.detect_pooled(regions)
            detections[record.image_id] = Detections(prediction.boxes, prediction.scores, prediction.labels)
        return float(evaluate_voc(self.records, detections, self.class_names, use_07_metric=True)["mAP"])

    def head_ms_per_image(self, model: RegionDetector, repeats: int = 3, max_rois: int = 2000) -> float:
        """Milliseconds of head + predictor per image: the fastest of ``repeats`` runs over the
        first cached RoIs (at most ``max_rois``), scaled to the mean RoI count per image."""
        rows = [r.features for r in self.regions if r.features is not None]
        if not rows:
            return 0.0
        features = torch.cat(rows)[:max_rois].to(model.device)
        per_image = sum(len(r.proposals[0]) for r in self.regions) / len(self.regions)
        best = float("inf")
        with torch.no_grad():
            model.predictor(model.head(features[:8]))  # unpack packed layers outside the timing
            for _ in range(repeats):
                start = time.perf_counter()
                model.predictor(model.head(features))
                best = min(best, time.perf_counter() - start)
        return best * 1000.0 * per_image / len(features)
