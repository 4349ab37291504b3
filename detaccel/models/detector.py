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
        pooled = None
        if sum(counts):
            rois = torch.cat(
                [torch.cat((p.new_full((len(p), 1), i), p), dim=1) for i, p in enumerate(proposals)]
            )
            pooled = self.roi_features.pool(shared, rois.to(shared.dtype), self.backbone)
        sizes = [
            tuple(original_sizes[i])
            if original_sizes is not None
            else (round(image_sizes[i][0] / scales[i]), round(image_sizes[i][1] / scales[i]))
            for i in range(len(proposals))
        ]
        boxes = [proposal / scale for proposal, scale in zip(proposals, scales, strict=True)]
        return self._detections(
            pooled,
            boxes,
            sizes,
            score_threshold=score_threshold,
            nms_threshold=nms_threshold,
            max_per_image=max_per_image,
        )

    @torch.no_grad()
    def detect_multiscale(
        self,
        feature_maps: Sequence[torch.Tensor],
        scales: Sequence[float],
        proposals: torch.Tensor,
        original_size: tuple[int, int],
        *,
        roi_size: float = 224.0,
        score_threshold: float = 0.05,
        nms_threshold: float = 0.3,
        max_per_image: int = 100,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Detections of one image from its shared features at one or more scales (SPPnet's testing).

        ``feature_maps[k]`` is :meth:`shared_features` of the image resized by
        ``scales[k]``; ``proposals`` ``[K, 4]`` are in original pixels. Each RoI is
        pooled on the one map where its scaled area is closest to ``roi_size**2``
        (:func:`assign_test_scales`); head, predictor and post-processing then run
        on all RoIs together, as in :meth:`detect_from_features`. With one scale it
        is single-scale detection of one image (R-CNN included).
        """
        if self.roi_features.per_region and len(scales) > 1:
            raise ValueError("detect_multiscale: R-CNN warps each region; it has no maps to choose among")
        if not scales or len(feature_maps) != len(scales):
            raise ValueError(
                f"detect_multiscale: need one feature map per scale, got {len(feature_maps)} maps "
                f"and {len(scales)} scales"
            )
        pooled = None
        if len(proposals):
            level = assign_test_scales(proposals, scales, roi_size)
            for k, (feature_map, scale) in enumerate(zip(feature_maps, scales, strict=True)):
                index = torch.nonzero(level == k).flatten()
                if not len(index):
                    continue
                boxes = proposals[index] * scale
                rois = torch.cat((boxes.new_zeros((len(boxes), 1)), boxes), dim=1).to(feature_map.dtype)
                part = self.roi_features.pool(feature_map, rois, self.backbone)
                if pooled is None:
                    pooled = part.new_empty((len(proposals), part.shape[1]))
                pooled[index] = part
        return self._detections(
            pooled,
            [proposals],
            [tuple(original_size)],
            score_threshold=score_threshold,
            nms_threshold=nms_threshold,
            max_per_image=max_per_image,
        )[0]

    def _detections(
        self,
        pooled: torch.Tensor | None,
        boxes: Sequence[torch.Tensor],
        sizes: Sequence[tuple[int, int]],
        **options,
    ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Head, predictor and post-processing of pooled RoIs; ``boxes[i]`` are image ``i``'s RoIs."""
        counts = [len(b) for b in boxes]
        if pooled is not None:
            features = self._head(pooled)
            with stage("predictor"):
                logits, deltas = self.predictor(features)
                scores = self.predictor.detection_scores(features, logits)
            scores_per_image = scores.split(counts)
            deltas_per_image = deltas.split(counts)
        outputs = []
        for i, image_boxes in enumerate(boxes):
            if counts[i] == 0:
                empty = image_boxes.new_zeros((0, 4))
                outputs.append((empty, image_boxes.new_zeros(0), torch.zeros(0, dtype=torch.long)))
                continue
            with stage("postprocess"):
                outputs.append(
                    postprocess_detections(
                        scores_per_image[i],
                        deltas_per_image[i],
                        image_boxes,
                        sizes[i],
                        box_weights=self.box_weights,
                        **options,
                    )
                )
        return outputs


def assign_test_scales(boxes: torch.Tensor, scales: Sequence[float], roi_size: float) -> torch.Tensor:
    """Index of the scale at which each box's area is closest to ``roi_size**2`` (SPPnet), ``[K]`` int64.

    ``boxes`` ``[K, 4]`` are inclusive ``(x1, y1, x2, y2)`` in original pixels (a box is
    ``x2 - x1 + 1`` pixels wide); ties go to the first scale.
    """
    sides = (boxes[:, 2:] - boxes[:, :2] + 1).clamp(min=0).double()
    area = sides[:, 0] * sides[:, 1]
    factors = torch.as_tensor(list(scales), dtype=torch.float64, device=boxes.device) ** 2
    return (area[:, None] * factors[None, :] - float(roi_size) ** 2).abs().argmin(dim=1)


def build_detector(config: Config, num_classes: int) -> RegionDetector:
    """The detector a configuration describes, for ``num_classes`` object classes."""
    return RegionDetector(config, num_classes)
