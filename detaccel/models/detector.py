"""A region-based detector as a composition: backbone, RoI features, FC head, predictor, post-processing."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from detaccel.config.schema import Config
from detaccel.models.backbones import build_backbone
from detaccel.models.heads import FCHead
from detaccel.models.postprocess import postprocess_detections
from detaccel.models.predictor import Predictor
from detaccel.models.roi_features import build_roi_features
from detaccel.profiling import stage


class RegionDetector(nn.Module):
    """R-CNN, SPPnet or Fast R-CNN, depending on the RoI feature extractor.

    ``forward(images, rois)`` returns class logits ``[K, N + 1]`` and box
    deltas ``[K, 4 * (N + 1)]`` for RoIs ``[K, 5]`` in the images' pixels;
    :meth:`detect` adds post-processing for inference.
    """

    def __init__(self, config: Config, num_classes: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError("a detector needs at least one class")
        self.num_classes = num_classes
        self.family = config.model.family
        self.box_weights = tuple(config.model.box_weights)
        self.backbone = build_backbone(config.backbone)
        self.roi_features = build_roi_features(
            config.roi_feature_type, config.roi_features, self.backbone.out_channels, self.backbone.stride
        )
        self.head = FCHead(
            self.roi_features.output_dim, config.head.fc_dims, config.head.dropout, config.head.svd_ranks
        )
        self.predictor = Predictor(self.head.out_dim, num_classes, svm=config.model.classifier == "svm")

    @property
    def size_divisibility(self) -> int:
        return 1 if self.roi_features.per_region else self.backbone.stride

    def region_features(self, images: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        """fc7 features ``[K, D]`` of each RoI."""
        return self._head(self.roi_features(images, rois, self.backbone))

    def _head(self, pooled: torch.Tensor) -> torch.Tensor:
        with stage("head"):
            return self.head(pooled)

    def forward(self, images: torch.Tensor, rois: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.region_features(images, rois)
        with stage("predictor"):
            return self.predictor(features)

    def shared_features(self, images: torch.Tensor) -> torch.Tensor:
        """What all RoIs of an image share: the last conv map (SPPnet, Fast R-CNN) or the image (R-CNN)."""
        return self.roi_features.image_features(images, self.backbone)

    @torch.no_grad()
    def detect(
        self,
        images: torch.Tensor,
        proposals: Sequence[torch.Tensor],
        image_sizes: Sequence[tuple[int, int]],
        scales: Sequence[float],
        **options,
    ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Detections per image: :meth:`detect_from_features` on this batch's :meth:`shared_features`."""
        return self.detect_from_features(
            self.shared_features(images), proposals, image_sizes, scales, **options
        )

    @torch.no_grad()
    def detect_from_features(
        self,
        shared: torch.Tensor,
        proposals: Sequence[torch.Tensor],
        image_sizes: Sequence[tuple[int, int]],
        scales: Sequence[float],
        *,
        score_threshold: float = 0.05,
        nms_threshold: float = 0.3,
        max_per_image: int = 100,
        original_sizes: Sequence[tuple[int, int]] | None = None,
    ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Detections per image, in original-image pixels: ``(boxes, scores, labels)``.

        ``shared`` is :meth:`shared_features` of the (resized, normalised,
        batched) images. ``proposals[i]`` are image ``i``'s boxes in the resized image's pixels;
        ``scales[i]`` is the resize factor; ``original_sizes`` (height, width)
        clip the output (default: the resized sizes divided by the scale).
        An image without proposals gets no detections.
        """
        counts = [len(p) for p in proposals]
        outputs = []
        if sum(counts):
            rois = torch.cat(
                [torch.cat((p.new_full((len(p), 1), i), p), dim=1) for i, p in enumerate(proposals)]
            )
            features = self._head(self.roi_features.pool(shared, rois.to(shared.dtype), self.backbone))
            with stage("predictor"):
                logits, deltas = self.predictor(features)
                scores = self.predictor.detection_scores(features, logits)
            scores_per_image = scores.split(counts)
            deltas_per_image = deltas.split(counts)
        for i, proposal in enumerate(proposals):
            if original_sizes is not None:
                size = tuple(original_sizes[i])
            else:
                size = (round(image_sizes[i][0] / scales[i]), round(image_sizes[i][1] / scales[i]))
            if counts[i] == 0:
                outputs.append(
                    (proposal.new_zeros((0, 4)), proposal.new_zeros(0), torch.zeros(0, dtype=torch.long))
                )
                continue
            boxes = proposal / scales[i]
            with stage("postprocess"):
                detections = postprocess_detections(
                    scores_per_image[i],
                    deltas_per_image[i],
                    boxes,
                    size,
                    box_weights=self.box_weights,
                    score_threshold=score_threshold,
                    nms_threshold=nms_threshold,
                    max_per_image=max_per_image,
                )
            outputs.append(detections)
        return outputs


def build_detector(config: Config, num_classes: int) -> RegionDetector:
    """The detector a configuration describes, for ``num_classes`` object classes."""
    return RegionDetector(config, num_classes)
