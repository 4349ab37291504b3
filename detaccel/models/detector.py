"""A region-based detector as one forward: backbone, proposal generator, RoI heads.

Training: ``model(images, targets)`` returns a dict of losses, each from the
stage that makes it (the proposal generator's ``loss_objectness`` /
``loss_sides`` with R²-CNN's learned head; the RoI heads' ``loss_cls`` and
``loss_box``), plus figures to log (``accuracy``, ``fg_fraction``); the trainer
sums the ``loss_*`` entries. Inference: :meth:`RegionDetector.predict` is the
one path (evaluation, the benchmark, the profiler and ``detaccel detect`` all
call it): RGB images → preprocess → backbone → proposals → RoI features → head
→ predictor → post-process, each stage timed by :mod:`detaccel.profiling`.

What training learns is a member of the detector: the backbone, the RoI heads,
R²-CNN's objectness head (:attr:`RegionDetector.objectness`) and the typical box
shapes (:attr:`RegionDetector.box_shapes`). The proposal slot holds no weights,
so putting another generator in it and back changes nothing learned.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from detaccel.config.r2cnn import r2cnn_settings
from detaccel.config.schema import Config
from detaccel.data.transforms import IMAGENET_MEAN, IMAGENET_STD, InferenceTransform, Resize, batch_images
from detaccel.models.backbones import build_backbone
from detaccel.models.box_shapes import BoxShapes
from detaccel.models.heads import FCHead
from detaccel.models.objectness import ObjectnessHead
from detaccel.models.packed import install_packed_layers
from detaccel.models.postprocess import clip_pixel_boxes, decode_pixel_boxes, postprocess_detections
from detaccel.models.predictor import Predictor
from detaccel.models.proposal_generator import (
    FeatureProposals,
    ProposalSource,
    build_objectness_head,
    build_proposal_source,
)
from detaccel.models.roi_features import build_roi_features
from detaccel.models.roi_heads import RoIHeads, non_crowd, roi_rows
from detaccel.models.sampling import sampling_options
from detaccel.profiling import stage
from detaccel.proposals.registry import canonical_name


@dataclass(frozen=True, eq=False)
class Prediction:
    """Detections of one image in its original pixels, and the proposals they came from.

    ``labels`` index :attr:`RegionDetector.class_names`; ``proposals`` ``[K, 4]``
    are the boxes the detector scored (after the ``max_test`` cap).
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    proposals: np.ndarray
    image_size: tuple[int, int]


@dataclass(frozen=True, eq=False)
class PooledRegions:
    """RoI features of a batch of images, before the head: what :meth:`RegionDetector.pool_regions` returns.

    ``features`` ``[sum K_i, D]`` (``None`` when no image has proposals) holds
    image ``i``'s ``K_i`` rows after those of the images before it;
    ``proposals[i]`` ``[K_i, 4]`` and ``image_sizes[i]`` (height, width) are in its
    original pixels.
    """

    features: torch.Tensor | None
    proposals: list[np.ndarray]
    image_sizes: list[tuple[int, int]]


def _check_image(image: np.ndarray, index: int) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(
            f"predict: image {index}: expected an RGB uint8 array [H, W, 3], got {shape} {dtype}"
        )
    if min(image.shape[:2]) < 1:
        raise ValueError(f"predict: image {index} is empty ({image.shape[0]}x{image.shape[1]})")
    return image


class RegionDetector(nn.Module):
    """R-CNN, SPPnet or Fast R-CNN (by the RoI feature extractor) with its proposal generator.

    Members, in the order of the forward: ``backbone``, ``proposal_generator``
    (:mod:`detaccel.models.proposal_generator`; holds no weights), ``roi_heads``
    (:class:`~detaccel.models.roi_heads.RoIHeads`: ``roi_features``, ``head``,
    ``predictor``, also reachable as attributes of the detector); the trained parts
    R²-CNN reads, ``objectness`` (``None`` unless trained with ``reduction:
    objectness``) and ``box_shapes``. Test-time resizing, normalisation (the
    backbone's own ``pixel_mean``/``pixel_std``) and post-processing come from the
    configuration.
    """

    def __init__(self, config: Config, num_classes: int, class_names: Sequence[str] | None = None) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError("a detector needs at least one class")
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{num_classes} classes but {len(class_names)} class names")
        self.num_classes = num_classes
        self.class_names = tuple(class_names) if class_names is not None else None
        self.family = config.model.family
        self.box_weights = tuple(config.model.box_weights)
        self.backbone = build_backbone(config.backbone)
        proposals = config.proposals
        self.objectness: ObjectnessHead | None = build_objectness_head(
            proposals.name, proposals.params, self.backbone
        )
        self.box_shapes = BoxShapes()
        if canonical_name(proposals.name) == "r2cnn":
            settings = r2cnn_settings(proposals.params)
            if isinstance(settings.shapes, list) and settings.shapes:
                self.box_shapes.set(settings.shapes, settings.shapes_scale)
        self.max_test = proposals.max_test
        self.test_scale = int(config.data.test_scale)
        self._proposal_spec: tuple[str, dict, int] = (proposals.name, dict(proposals.params), self.test_scale)
        self.proposal_generator: ProposalSource = self._build_source(proposals.name, proposals.params)
        roi_features = build_roi_features(
            config.roi_feature_type, config.roi_features, self.backbone.out_channels, self.backbone.stride
        )
        head = FCHead(
            roi_features.output_dim, config.head.fc_dims, config.head.dropout, config.head.svd_ranks
        )
        predictor = Predictor(head.out_dim, num_classes, svm=config.model.classifier == "svm")
        self.roi_heads = RoIHeads(
            roi_features,
            head,
            predictor,
            sampling_options(config),
            proposals.max_train,
            config.train.box_loss_weight,
        )
        if config.head.packed:
            install_packed_layers(self, config.head.packed)
        self.pixel_mean = tuple(getattr(self.backbone, "pixel_mean", IMAGENET_MEAN))
        self.pixel_std = tuple(getattr(self.backbone, "pixel_std", IMAGENET_STD))
        self.configure_inference(config)

    # The RoI heads' parts, as attributes of the detector.
    @property
    def roi_features(self) -> nn.Module:
        return self.roi_heads.roi_features

    @property
    def head(self) -> nn.Module:
        return self.roi_heads.head

    @head.setter
    def head(self, module: nn.Module) -> None:
        self.roi_heads.head = module

    @property
    def predictor(self) -> nn.Module:
        return self.roi_heads.predictor

    @predictor.setter
    def predictor(self, module: nn.Module) -> None:
        self.roi_heads.predictor = module

    def configure_inference(self, config: Config) -> None:
        """Take test scales, the proposal cap and post-processing options from ``config``."""
        data = config.data
        scales = tuple(data.test_scales or [data.test_scale])
        self.test_transform = InferenceTransform(
            Resize(scales, data.max_size), self.pixel_mean, self.pixel_std
        )
        # Feature-based proposals read the map at data.test_scale (or the test scale nearest to it).
        self.proposal_scale = min(range(len(scales)), key=lambda k: abs(scales[k] - data.test_scale))
        self.roi_size = float(data.test_roi_size)
        self.max_test = config.proposals.max_test
        self.test_scale = int(data.test_scale)
        name, params, built_at = self._proposal_spec
        if built_at != self.test_scale:
            self.set_proposal_generator(name, params)  # shapes in pixels of the new scale
        if config.eval.refine_passes < 0:
            raise ValueError(f"eval.refine_passes must be >= 0, got {config.eval.refine_passes}")
        self.refine_passes = int(config.eval.refine_passes)
        self.postprocess_options = {
            "score_threshold": config.eval.score_threshold,
            "nms_threshold": config.eval.nms_threshold,
            "max_per_image": config.eval.max_per_image,
        }

    def _build_source(self, name: str, params: Any) -> ProposalSource:
        return build_proposal_source(
            name, params, self.backbone, self.max_test, self.test_scale, self.objectness, self.box_shapes
        )

    def set_proposal_generator(self, name: str, params: dict | None = None) -> ProposalSource:
        """Put generator ``name`` with ``params`` in the proposal slot (capped at ``proposals.max_test``).

        Nothing trained changes: R²-CNN on the detector's own map reads the
        detector's objectness head and, with ``shapes: auto``, its typical shapes
        (rescaled to ``data.test_scale``). Settings that do not fit the trained head
        (another layer, width or branch) are refused with a ``ValueError``.
        """
        params = dict(params or {})
        source = self._build_source(name, params)  # R²-CNN's parameters get the loader's checks there
        self._proposal_spec = (name, params, self.test_scale)
        self.proposal_generator = source.to(self.device)
        return self.proposal_generator

    @property
    def size_divisibility(self) -> int:
        return 1 if self.roi_features.per_region else self.backbone.stride

    @property
    def device(self) -> torch.device:
        first = next(self.parameters(), None)
        return torch.device("cpu") if first is None else first.device

    # -- shared pieces ----------------------------------------------------------

    def shared_features(self, images: torch.Tensor) -> torch.Tensor:
        """What all RoIs of an image share: the last conv map (SPPnet, Fast R-CNN) or the image (R-CNN)."""
        return self.roi_features.image_features(images, self.backbone)

    def _maps(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(shared features, the map the proposal generator reads)`` in one backbone pass where possible."""
        generator = self.proposal_generator
        name = generator.stage if isinstance(generator, FeatureProposals) else "out"
        if self.roi_features.per_region:  # R-CNN: the image is shared; R²-CNN needs a whole-image pass
            with stage("backbone"), torch.no_grad():
                return images, self._proposal_map(images, name)
        if name == "out":
            shared = self.shared_features(images)
            return shared, shared
        with stage("backbone"):
            maps = self.backbone.forward_stages(images, (name,))
        return maps["out"], maps[name]

    def _proposal_map(self, images: torch.Tensor, name: str) -> torch.Tensor:
        if name == "out":
            return self.backbone(images)
        return self.backbone.forward_stages(images, (name,))[name]

    def _head(self, pooled: torch.Tensor) -> torch.Tensor:
        with stage("head"):
            return self.head(pooled)

    def region_features(self, images: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        """fc7 features ``[K, D]`` of each RoI ``[K, 5]`` (rows ``(batch_index, x1, y1, x2, y2)``)."""
        return self._head(self.roi_features(images, rois, self.backbone))

    # -- training ---------------------------------------------------------------

    def forward(
        self, images: torch.Tensor, targets: Sequence[dict[str, Any]], seed: int = 0
    ) -> dict[str, torch.Tensor]:
        """Training losses of a batch ``images`` ``[N, 3, H, W]`` (resized, normalised, padded).

        ``targets[i]`` holds image ``i``'s ``boxes`` ``[G, 4]`` and ``labels`` ``[G]``
        in the batch's pixels, ``crowd`` ``[G]`` (or ``None``), ``image_size``
        (unpadded height, width), and ``proposals`` ``[K, 4]`` when the generator
        is image-based (cached); R-CNN's also ``windows``. ``seed`` fixes the RoI
        sampling. Returns the proposal stage's losses (R²-CNN's learned head) and
        the RoI heads' (see :class:`~detaccel.models.roi_heads.RoIHeads`).
        """
        generator = self.proposal_generator
        proposal_losses: dict[str, torch.Tensor] = {}
        if generator.reads_features:
            if self.roi_features.per_region:
                raise ValueError(
                    "R-CNN samples its training regions once from cached proposals; R²-CNN on the model's "
                    "own features trains SPPnet and Fast R-CNN (give R-CNN an image-based generator)"
                )
            shared, proposal_map = self._maps(images)
            sizes = [tuple(t["image_size"]) for t in targets]
            gt = [non_crowd(t)[0].to(proposal_map.device) for t in targets]
            boxes, proposal_losses = generator(proposal_map, sizes, [1.0] * len(sizes), self.objectness, gt)
            proposals = [torch.from_numpy(b) for b in boxes]
        else:
            shared = self.shared_features(images)
            proposals = [t.get("proposals") for t in targets]
        return {**proposal_losses, **self.roi_heads(shared, proposals, targets, self.backbone, seed)}

    # -- inference --------------------------------------------------------------

    @torch.no_grad()
    def predict(
        self,
        images: np.ndarray | Sequence[np.ndarray],
        proposals: Sequence[np.ndarray | None] | None = None,
        image_ids: Sequence | None = None,
    ) -> list[Prediction]:
        """Detect objects in RGB ``uint8`` images ``[H, W, 3]`` (one array or a list): one result each.

        ``proposals[i]`` (original pixels) replaces the generator for image ``i``
        (e.g. boxes cached for a split); ``image_ids`` reach generators that look
        boxes up by id. Images of a list are resized, padded and run as one batch.
        Equal to :meth:`detect_pooled` of :meth:`pool_regions`.
        """
        return self.detect_pooled(self.pool_regions(images, proposals, image_ids))

    @torch.no_grad()
    def pool_regions(
        self,
        images: np.ndarray | Sequence[np.ndarray],
        proposals: Sequence[np.ndarray | None] | None = None,
        image_ids: Sequence | None = None,
    ) -> PooledRegions:
        """The first half of :meth:`predict`: preprocess, backbone, proposals and RoI pooling.

        What it returns does not depend on the head or the predictor, so it can be
        kept and run through :meth:`detect_pooled` by several heads (compression search);
        with ``eval.refine_passes`` the proposals are first refined by the current head
        and predictor (:meth:`refine_proposals`).
        """
        if isinstance(images, np.ndarray) and images.ndim == 3:
            images = [images]
        images = [_check_image(image, i) for i, image in enumerate(images)]
        count = len(images)
        for name, values in (("proposals", proposals), ("image_ids", image_ids)):
            if values is not None and len(values) != count:
                raise ValueError(f"predict: {count} images but {len(values)} {name}")
        device = self.device
        with stage("preprocess"):
            per_image = [self.test_transform(image) for image in images]
            scales = [
                [items[k].scale for items in per_image] for k in range(len(self.test_transform.resize.scales))
            ]
            batches = []
            for k in range(len(scales)):
                batch, sizes = batch_images(
                    [torch.from_numpy(items[k].image) for items in per_image], self.size_divisibility
                )
                batches.append((batch.to(device, non_blocking=True), sizes))
        given = [None] * count if proposals is None else list(proposals)
        need_maps = isinstance(self.proposal_generator, FeatureProposals) and any(p is None for p in given)
        maps, proposal_map = [], None
        for k, (batch, _) in enumerate(batches):
            if need_maps and k == self.proposal_scale:
                shared, proposal_map = self._maps(batch)
            else:
                shared = self.shared_features(batch)
            maps.append(shared)
        with stage("proposals"):
            boxes = self._proposals(images, given, image_ids, proposal_map, batches, scales)
        image_sizes = [(int(image.shape[0]), int(image.shape[1])) for image in images]
        tensors = [torch.tensor(b, device=device) for b in boxes]
        pooled = self.pool_on_maps(maps, scales, tensors, image_sizes)
        for _ in range(self.refine_passes if pooled is not None else 0):
            with stage("refine"):
                tensors = self.refine_proposals(pooled, tensors, image_sizes)
                pooled = self.pool_on_maps(maps, scales, tensors, image_sizes)
            boxes = [t.cpu().numpy() for t in tensors]
        return PooledRegions(pooled, boxes, image_sizes)

    @torch.no_grad()
    def refine_proposals(
        self,
        pooled: torch.Tensor,
        proposals: Sequence[torch.Tensor],
        sizes: Sequence[tuple[int, int]],
    ) -> list[torch.Tensor]:
        """Each proposal moved by the box regression of its top-scoring object class, clipped.

        ``pooled`` ``[sum K_i, D]`` are the RoI features of ``proposals`` (image ``i``'s
        ``[K_i, 4]`` inclusive boxes in original pixels, clipped to ``sizes[i]``).
        """
        counts = [len(p) for p in proposals]
        scores, deltas = self.roi_heads.predict(pooled)
        best = scores.argmax(dim=1) + 1  # column 0 of the deltas is the background's
        decoded = decode_pixel_boxes(deltas, torch.cat(list(proposals)), self.box_weights)
        moved = decoded[torch.arange(len(best), device=best.device), best]
        out = []
        for boxes, size in zip(moved.split(counts), sizes, strict=True):
            boxes = clip_pixel_boxes(boxes, size)
            corner = torch.maximum(boxes[:, 2:], boxes[:, :2])  # never inverted
            out.append(torch.cat((boxes[:, :2], corner), dim=1).contiguous())
        return out

    @torch.no_grad()
    def detect_pooled(self, regions: PooledRegions) -> list[Prediction]:
        """The second half of :meth:`predict`: head, predictor and post-processing of pooled RoIs."""
        device = self.device
        tensors = [torch.tensor(b, device=device) for b in regions.proposals]
        features = None if regions.features is None else regions.features.to(device)
        results = self._detections(features, tensors, regions.image_sizes)
        return [
            Prediction(b.cpu(), s.cpu(), lab.cpu(), box, size)
            for (b, s, lab), box, size in zip(results, regions.proposals, regions.image_sizes, strict=True)
        ]

    def _proposals(self, images, given, image_ids, proposal_map, batches, scales) -> list[np.ndarray]:
        generator = self.proposal_generator
        computed: list[np.ndarray] | None = None
        if proposal_map is not None:
            k = self.proposal_scale
            computed, _ = generator(proposal_map, batches[k][1], scales[k], self.objectness)
        out = []
        for i, boxes in enumerate(given):
            if boxes is not None:
                boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)[: self.max_test]
            elif computed is not None:
                boxes = computed[i]
            else:
                boxes = generator.propose(images[i], None if image_ids is None else image_ids[i])
            out.append(np.ascontiguousarray(boxes, dtype=np.float32))
        return out

    @torch.no_grad()
    def pool_on_maps(
        self,
        maps: Sequence[torch.Tensor],
        scales: Sequence[Sequence[float]],
        proposals: Sequence[torch.Tensor],
        sizes: Sequence[tuple[int, int]],
    ) -> torch.Tensor | None:
        """Pooled features ``[sum K_i, D]`` of every image's proposals (``None`` when there are none).

        ``maps[k]`` is :meth:`shared_features` of the batch resized to test
        scale ``k``, in which image ``i`` was resized by ``scales[k][i]``;
        ``proposals[i]`` ``[K, 4]`` and ``sizes[i]`` (height, width) are in its
        original pixels. Each RoI is pooled on the one map where its scaled area
        is closest to ``roi_size**2`` (SPPnet's multi-scale testing,
        :func:`assign_test_scales`); with one scale, on that map.
        """
        if not maps or len(maps) != len(scales):
            raise ValueError(
                f"pool_on_maps: need one feature map per scale, got {len(maps)} maps and {len(scales)} scales"
            )
        if any(len(s) != len(proposals) for s in scales) or len(sizes) != len(proposals):
            raise ValueError("pool_on_maps: scales, proposals and sizes need one entry per image")
        counts = [len(p) for p in proposals]
        pooled = None
        if sum(counts):
            offsets = np.cumsum([0, *counts])
            levels = [
                assign_test_scales(p, [s[i] for s in scales], self.roi_size)
                if len(scales) > 1
                else torch.zeros(len(p), dtype=torch.long, device=p.device)
                for i, p in enumerate(proposals)
            ]
            for k, feature_map in enumerate(maps):
                rows, slots = [], []
                for i, p in enumerate(proposals):
                    index = torch.nonzero(levels[i] == k).flatten()
                    if len(index):
                        boxes = p[index] * scales[k][i]
                        rows.append(roi_rows(boxes, i))
                        slots.append(index + int(offsets[i]))
                if not rows:
                    continue
                part = self.roi_features.pool(
                    feature_map, torch.cat(rows).to(feature_map.dtype), self.backbone
                )
                if pooled is None:
                    pooled = part.new_empty((sum(counts), part.shape[1]))
                pooled[torch.cat(slots)] = part
        return pooled

    def _detections(
        self,
        pooled: torch.Tensor | None,
        boxes: Sequence[torch.Tensor],
        sizes: Sequence[tuple[int, int]],
    ) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Head, predictor and post-processing of pooled RoIs; ``boxes[i]`` are image ``i``'s RoIs."""
        counts = [len(b) for b in boxes]
        if pooled is not None:
            scores, deltas = self.roi_heads.predict(pooled)
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
                        tuple(sizes[i]),
                        box_weights=self.box_weights,
                        **self.postprocess_options,
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


def build_detector(
    config: Config, num_classes: int, class_names: Sequence[str] | None = None
) -> RegionDetector:
    """The detector a configuration describes, for ``num_classes`` object classes."""
    return RegionDetector(config, num_classes, class_names)
