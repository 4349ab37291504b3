"""R²-CNN proposals: regions read off the detector's own convolutional features.

1. A backbone turns the image into a feature map (or the caller passes the
   detector's feature map of the image).
2. ``ops.r2cnn_feature_levels`` integrates the channels into one map (after
   the ``reduction``: as they are, or absolute values) and quantises it into
   ``num_levels`` levels (a uniform split of the maximum).
3. ``ops.r2cnn_level_boxes`` boxes each level and its groups (8-connected
   components, or the original layer's greedy box growing), in inclusive
   feature-cell coordinates.
4. Each cell box is mapped to pixels through the receptive field
   (:func:`~detaccel.proposals.receptive_field.cell_boxes_to_pixels`), and a
   local search adds variants of it around the same centre, with width and
   height scaled by each of ``scale_factors`` and of each size in ``shapes``
   (and, with ``peaks``, the shapes centred on the map's local maxima). With a
   learned head's box sides (``boxes_from_features(..., box_sides)``), the
   boxes they describe at each box's centre and each peak join them.
5. With ``ranking="contrast"`` every box is scored by its integrated value
   against a ring around it, sorted and de-duplicated by NMS at ``nms_iou``, so
   that the first ``k`` boxes are the best ``k`` (learned boxes first).

Steps 2-4 run in compiled operators and numpy; they are timed apart from the
backbone (``Proposals.timings["proposals"]`` and ``["backbone"]``).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from detaccel.data.transforms import IMAGENET_MEAN, IMAGENET_STD, resize_scale, resized_size
from detaccel.profiling import stage
from detaccel.proposals._checks import check_choice, check_float, check_int, check_numbers, check_pairs
from detaccel.proposals.backbone import default_cut, flatten_layers, torchvision_features, truncate
from detaccel.proposals.base import GeneratorBase, ImageId, Proposals, RawProposals
from detaccel.proposals.image import rescale_boxes, resize_image, to_bgr8
from detaccel.proposals.r2cnn_scoring import (
    RANKINGS,
    REDUCTIONS,
    boxes_from_sides,
    contrast_scores,
    local_maxima,
    reduce_channels,
)
from detaccel.proposals.receptive_field import (
    ReceptiveField,
    UnsupportedLayerError,
    cell_boxes_to_pixels,
    footprint_size,
    minimum_input_size,
    receptive_fields,
    upsampled_field,
)

DEFAULT_SCALE_FACTORS = ((0.8, 0.8), (0.8, 1.5), (1.5, 0.8), (1.5, 1.5))
# Default cut of a named backbone when none is given (others: before the last max-pooling).
DEFAULT_LAYERS = {"alexnet": 2}


def local_search(
    boxes: Any,
    scale_factors: Sequence[tuple[float, float]] = DEFAULT_SCALE_FACTORS,
    shapes: Sequence[tuple[float, float]] = (),
) -> np.ndarray:
    """Each inclusive box followed by its variants, float64 ``[M * (1 + F + S), 4]``.

    Every variant keeps the box's centre ``((x1 + x2) / 2, (y1 + y2) / 2)``.
    The one for factors ``(fw, fh)`` has width ``fw * (x2 - x1 + 1)`` and
    height ``fh * (y2 - y1 + 1)`` pixels; the one for shape ``(w, h)`` has
    ``w`` x ``h`` pixels (e.g. a training set's typical object shapes,
    :mod:`detaccel.proposals.box_shapes`). Nothing is clipped here.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2.0
    size = boxes[:, 2:] - boxes[:, :2] + 1.0
    out = [boxes]
    for fw, fh in scale_factors:
        half = (size * np.array([fw, fh]) - 1.0) / 2.0
        out.append(np.concatenate([centre - half, centre + half], axis=1))
    for w, h in shapes:
        half = (np.array([w, h]) - 1.0) / 2.0
        out.append(np.concatenate([centre - half, centre + half], axis=1))
    return np.stack(out, axis=1).reshape(-1, 4)


def r2cnn_ops() -> Any:
    """``detaccel.ops`` when it provides the R²-CNN operators; a clear error otherwise."""
    try:
        from detaccel import ops
    except Exception as error:
        raise RuntimeError(
            f"R²-CNN needs the compiled operators, but detaccel.ops failed to load: {error}"
        ) from error
    names = ("r2cnn_feature_levels", "r2cnn_level_boxes", "r2cnn_contrast_scores")
    missing = [n for n in names if not hasattr(ops, n)]
    if missing:
        raise RuntimeError(
            f"R²-CNN needs detaccel.ops.{' and '.join(missing)}, missing from this build "
            "(rebuild the extension)"
        )
    return ops


def _as_field(value: Any) -> tuple[ReceptiveField, ReceptiveField]:
    if isinstance(value, ReceptiveField):
        return value, value
    try:
        if len(value) == 2 and all(isinstance(v, ReceptiveField) for v in value):
            return value[0], value[1]
        stride, offset, extent = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ValueError(
            "receptive_field: expected a ReceptiveField, an (x, y) pair of them or (stride, offset, extent), "
            f"got {value!r}"
        ) from None
    if stride <= 0 or extent <= 0:
        raise ValueError(f"receptive_field: stride and extent must be positive, got {value!r}")
    field = ReceptiveField(stride, offset, extent)
    return field, field


def _is_efficientnet(backbone: Any) -> bool:
    return isinstance(backbone, str) and backbone.startswith("efficientnet_lite")


def _has_stages(backbone: Any) -> bool:
    """Whether ``backbone`` is a detaccel backbone (named stages and their receptive fields)."""
    return isinstance(backbone, nn.Module) and all(
        hasattr(backbone, name) for name in ("forward_stages", "receptive_fields", "stage_names")
    )


class _StageMap(nn.Module):
    """A detaccel backbone's map at one named stage."""

    def __init__(self, backbone: nn.Module, stage: str) -> None:
        super().__init__()
        self.backbone = backbone
        self.stage = stage

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_stages(images, [self.stage])[self.stage]


class R2CNN(GeneratorBase):
    """R²-CNN proposal generator (see the module docstring).

    Output order without ranking (the original, no scores): the operators'
    order of cell boxes (per level: the level's box, then its groups, largest
    first), each box followed by its local-search variants in the order of
    ``scale_factors``. With ``ranking="contrast"``: by decreasing contrast
    score, after NMS.

    Args:
        backbone: ``efficientnet_lite0``/``1``/``2`` (the default: ImageNet
            weights from their pip package, or the ``weights`` file; cut at
            stage ``layer``, default ``stride16``), a torchvision name from
            :data:`~detaccel.proposals.backbone.SEQUENTIAL_FEATURE_MODELS`
            (its ``features``), a detaccel backbone (for example a trained
            detector's ``backbone``: read at stage ``layer``, default ``"out"``,
            with its own normalisation), an ``nn.Module`` (``nn.Sequential``-like
            to be cut or to have its receptive field computed), or ``None`` when
            the caller always passes ``features``.
        layer: cut the backbone after this layer (top-level index or qualified
            name; for EfficientNet-Lite a stage name such as ``stride8``);
            ``None``: EfficientNet-Lite at ``stride16``, AlexNet after pool1
            (stride 8, the layer of the original R²-CNN, random weights: the
            fidelity option), another named backbone before its last
            max-pooling (VGG16: conv5_3, stride 16), a module is used whole.
        weights: torchvision weights name for a named torchvision backbone
            (``None``: random, seeded); a state dict file for EfficientNet-Lite
            (``None``: its ImageNet weights).
        receptive_field: geometry of the feature map; computed from the
            backbone when omitted (required without one). A
            :class:`ReceptiveField`, an ``(x, y)`` pair, or ``(stride, offset, extent)``.
        num_levels: levels of the integrated map.
        max_boxes_per_level: cell boxes per level, at most.
        grouping: groups of a level's cells, ``"flood"`` (8-connected
            components, largest first) or ``"original"`` (the original layer's
            greedy box growing in raster order); see ``ops.r2cnn_level_boxes``.
        superlevel: level ``l``'s set is the cells of level ``>= l`` (nested
            regions) instead of ``== l``.
        scale_factors: ``(width, height)`` factors of the local search.
        shapes: ``(width, height)`` boxes in pixels of the network input that
            the local search also centres on each box (a detector's config may
            say ``shapes: auto``: the training boxes' ``num_shapes`` typical
            shapes, found when training starts).
        reduction: how channels enter the integrated map: ``"sum"`` (as they
            are, the original) or ``"abs"`` (absolute values: for signed maps
            such as linear bottlenecks); ``None``: ``abs`` on EfficientNet-Lite, ``sum`` otherwise. (On a
            detector's own map, ``"objectness"`` reads a learned head instead:
            :mod:`detaccel.models.objectness`.)
        peaks: also centre the ``shapes`` (each times every ``peak_scales``
            factor) on the map's ``peaks`` strongest local maxima (cells at least
            ``peak_threshold`` of the maximum): boxes for blobs that no level
            separates from their neighbours. ``0``: off (the original).
        upsample: read the reduced map at this many times its resolution
            (bilinear): boxes on a ``stride / upsample`` pixel grid, for objects
            a few cells wide.
        side_passes: with learned box sides (``boxes_from_features``'s
            ``box_sides``), how many times they are read: at each box's centre
            cell, then (2) again at the centre of the box that read gave.
        ranking: ``"none"`` (the original order, no scores) or ``"contrast"``
            (mean integrated value inside the box minus a ring around it).
        nms_iou: IoU of the NMS after ranking (``None``: no NMS).
        footprint: pixels per cell when mapping cell boxes: ``"stride"``,
            ``"extent"`` or a number (see ``cell_boxes_to_pixels``).
        short_side, max_side: resize the image for the backbone (shorter side
            to ``short_side``, longer side at most ``max_side``; ``None``:
            native size). Features passed by the caller must come from the
            image resized by the same rule.
        pixel_mean, pixel_std: RGB normalisation of ``[0, 1]`` pixels (``None``:
            the backbone's own; ImageNet statistics for torchvision networks).
        device: where the backbone and the level operator run.
    """

    name = "r2cnn"

    def __init__(
        self,
        *,
        backbone: str | nn.Module | None = "efficientnet_lite0",
        layer: int | str | None = None,
        weights: str | None = None,
        receptive_field: Any | None = None,
        num_levels: int = 10,
        max_boxes_per_level: int = 100,
        grouping: str = "flood",
        superlevel: bool = False,
        scale_factors: Sequence[tuple[float, float]] = DEFAULT_SCALE_FACTORS,
        shapes: Sequence[tuple[float, float]] = (),
        reduction: str | None = None,
        peaks: int = 0,
        peak_threshold: float = 0.1,
        peak_scales: Sequence[float] = (1.0,),
        upsample: int = 1,
        side_passes: int = 1,
        ranking: str = "none",
        nms_iou: float | None = 0.8,
        footprint: str | float = "stride",
        short_side: int | None = None,
        max_side: int | None = None,
        pixel_mean: Sequence[float] | None = None,
        pixel_std: Sequence[float] | None = None,
        device: str | torch.device = "cpu",
        max_proposals: int | None = None,
        min_size: float = 1.0,
    ) -> None:
        super().__init__(max_proposals=max_proposals, min_size=min_size)
        self.backbone = backbone
        self.layer = layer
        self.weights = weights
        self.num_levels = check_int("num_levels", num_levels, minimum=1)
        self.max_boxes_per_level = check_int("max_boxes_per_level", max_boxes_per_level, minimum=1)
        self.grouping = check_choice("grouping", grouping, ("flood", "original"))
        if not isinstance(superlevel, bool):
            raise ValueError(f"superlevel: expected True or False, got {superlevel!r}")
        self.superlevel = superlevel
        self.scale_factors = check_pairs("scale_factors", scale_factors)
        if isinstance(shapes, str):
            raise ValueError(
                f"shapes: {shapes!r} is resolved from the training boxes by `detaccel train` (a detector's "
                "own R²-CNN); give (width, height) pairs here"
            )
        self.shapes = check_pairs("shapes", shapes) if shapes is not None and len(shapes) else ()
        if reduction is None:
            reduction = "abs" if _is_efficientnet(backbone) else "sum"
        if reduction == "objectness":
            raise ValueError(
                "reduction: 'objectness' is a head learned with a detector; use R²-CNN on a detector's own "
                "map (proposals.name: r2cnn without a backbone parameter)"
            )
        self.reduction = check_choice("reduction", reduction, REDUCTIONS)
        self.peaks = check_int("peaks", peaks, minimum=0)
        self.peak_threshold = check_float("peak_threshold", peak_threshold, minimum=0.0)
        self.peak_scales = check_numbers("peak_scales", peak_scales)
        if self.peaks and not self.shapes:
            raise ValueError(
                "peaks: the boxes centred on the peaks are the shapes; give shapes (or shapes: auto)"
            )
        # (width, height) of the boxes centred on each peak: every shape times every peak scale
        self._peak_sizes = np.array([[w * f, h * f] for w, h in self.shapes for f in self.peak_scales])
        self.upsample = check_int("upsample", upsample, minimum=1)
        self.side_passes = check_int("side_passes", side_passes, minimum=1)
        self.ranking = check_choice("ranking", ranking, RANKINGS)
        if nms_iou is not None and not (isinstance(nms_iou, int | float) and 0 < nms_iou <= 1):
            raise ValueError(f"nms_iou: expected a number in (0, 1] or None, got {nms_iou!r}")
        self.nms_iou = None if nms_iou is None else float(nms_iou)
        self.short_side = check_int("short_side", short_side, minimum=1, allow_none=True)
        self.max_side = check_int("max_side", max_side, minimum=1, allow_none=True)
        self.device = torch.device(device)
        self.network = self._build_network()
        own_mean, own_std = IMAGENET_MEAN, IMAGENET_STD
        if self._stage_backbone is not None:
            own_mean, own_std = self._stage_backbone.pixel_mean, self._stage_backbone.pixel_std
        pixel_mean = own_mean if pixel_mean is None else pixel_mean
        self.pixel_mean = check_numbers("pixel_mean", pixel_mean, positive=False)
        self.pixel_std = check_numbers("pixel_std", own_std if pixel_std is None else pixel_std)
        if len(self.pixel_mean) != 3 or len(self.pixel_std) != 3:
            raise ValueError("pixel_mean and pixel_std: expected three values (R, G, B)")
        self.footprint = footprint
        self.receptive_field = receptive_field

        if receptive_field is not None:
            self.field = _as_field(receptive_field)
        elif self._stage_backbone is not None:
            self.field = self._stage_backbone.receptive_fields(self.layer)
        elif self.network is None:
            raise ValueError("receptive_field: required when there is no backbone")
        else:
            try:
                self.field = receptive_fields(self.network)
            except UnsupportedLayerError as error:
                raise ValueError(f"{error}; pass receptive_field=(stride, offset, extent)") from error
        for field in self.field:
            footprint_size(field, footprint)
        # Geometry of the map the levels are read on (finer than the backbone's with upsample > 1).
        self.read_field = tuple(upsampled_field(f, self.upsample) for f in self.field)
        # Smallest input the network accepts; smaller images are zero-padded (after normalisation).
        self.min_input_size: tuple[int, int] | None = None
        if self.network is not None and self._stage_backbone is None:
            with contextlib.suppress(UnsupportedLayerError):
                self.min_input_size = minimum_input_size(self.network)
        self._mean = torch.tensor(self.pixel_mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(self.pixel_std, device=self.device).view(1, 3, 1, 1)

    def _build_network(self) -> nn.Module | None:
        if self.backbone is None:
            if self.layer is not None:
                raise ValueError("layer: given without a backbone")
            return None
        if _is_efficientnet(self.backbone):
            return self._efficientnet_stage()
        if isinstance(self.backbone, str):
            features = torchvision_features(self.backbone, self.weights)
            layer = self.layer if self.layer is not None else DEFAULT_LAYERS.get(self.backbone)
            network = truncate(features, default_cut(features) if layer is None else layer)
        elif _has_stages(self.backbone):
            if self.weights is not None:
                raise ValueError("weights: load the backbone module's weights yourself")
            return self._stage_network(self.backbone, "out")
        elif isinstance(self.backbone, nn.Module):
            if self.weights is not None:
                raise ValueError(
                    "weights: only for a named torchvision backbone; load a module's weights yourself"
                )
            network = self.backbone if self.layer is None else truncate(self.backbone, self.layer)
        else:
            raise TypeError(
                f"backbone: expected a name, an nn.Module or None, got {type(self.backbone).__name__}"
            )
        if not flatten_layers(network):
            raise ValueError("backbone: the cut network has no layers")
        return network.to(self.device).eval().requires_grad_(False)

    def _efficientnet_stage(self) -> nn.Module:
        """The named EfficientNet-Lite (ImageNet weights from its package, or ``weights`` file)."""
        from detaccel.config.schema import BackboneConfig
        from detaccel.models.backbones import build_backbone

        pretrained = None if self.weights else "imagenet"
        config = BackboneConfig(name=self.backbone, pretrained=pretrained, weights=self.weights)
        return self._stage_network(build_backbone(config), "stride16")

    def _stage_network(self, backbone: nn.Module, default: str) -> nn.Module:
        """A detaccel backbone (named stages, receptive fields, its own normalisation) up to stage
        ``layer`` (``default`` when not given)."""
        self.layer = default if self.layer is None else str(self.layer)
        if self.layer not in (*backbone.stage_names, "out"):
            raise ValueError(
                f"layer: the backbone has no stage {self.layer!r}; "
                f"stages: {', '.join((*backbone.stage_names, 'out'))}"
            )
        return _StageMap(backbone, self.layer).to(self.device).eval().requires_grad_(False)

    @property
    def _stage_backbone(self) -> Any:
        """The detaccel backbone read at a named stage, or ``None``."""
        return self.network.backbone if isinstance(self.network, _StageMap) else None

    def describe(self) -> str:
        """Which network, weights and map this generator reads, and how."""
        if self.backbone is None:
            source = "the caller's feature map"
        elif _is_efficientnet(self.backbone):
            source = f"{self.backbone} ({self.weights or 'ImageNet weights'}) at {self.layer}"
        elif isinstance(self.backbone, str):
            weights = self.weights or "random weights, seeded"
            cut = self.layer if self.layer is not None else DEFAULT_LAYERS.get(self.backbone, "default")
            source = f"{self.backbone} ({weights}) cut after layer {cut}"
        elif self._stage_backbone is not None:
            source = f"the given {type(self.backbone).__name__} at {self.layer}"
        else:
            source = f"a {type(self.backbone).__name__} module"
        finer = f" read at {self.upsample}x" if self.upsample > 1 else ""
        peaks = f", {len(self.shapes)} shapes on {self.peaks} peaks" if self.peaks else ""
        return (
            f"r2cnn on {source}, stride {self.field[0].stride:g}{finer}; reduction {self.reduction}, "
            f"{self.num_levels} levels{' (superlevel sets)' if self.superlevel else ''}, "
            f"{self.grouping} grouping, ranking {self.ranking}{peaks}"
        )

    # -- stages ---------------------------------------------------------------

    def _scale(self, height: int, width: int) -> float:
        return resize_scale(height, width, self.short_side, self.max_side, upscale=True)

    def _input_factors(self, height: int, width: int) -> tuple[float, float]:
        new_height, new_width = resized_size(height, width, self._scale(height, width))
        return new_width / width, new_height / height

    def _run_backbone(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Features ``[N, C, h, w]`` of same-sized BGR images, resized by this generator's rule."""
        if self.network is None:
            raise ValueError("r2cnn without a backbone needs the image's features")
        height, width = images[0].shape[:2]
        scale = self._scale(height, width)
        resized = [resize_image(image, scale)[0] for image in images]
        batch = torch.from_numpy(np.stack(resized)[..., ::-1].copy()).to(self.device)
        batch = batch.permute(0, 3, 1, 2).float().div_(255.0).sub_(self._mean).div_(self._std)
        if self.min_input_size is not None:
            pad_h = max(0, self.min_input_size[0] - batch.shape[2])
            pad_w = max(0, self.min_input_size[1] - batch.shape[3])
            if pad_h or pad_w:
                batch = nn.functional.pad(batch, (0, pad_w, 0, pad_h))
        with torch.inference_mode():
            features = self.network(batch)
        self._sync()
        return features

    def _timed_boxes(
        self, images: Sequence[np.ndarray], features: torch.Tensor | None
    ) -> tuple[list[tuple[np.ndarray, np.ndarray | None]], dict[str, float]]:
        """Pixel boxes and scores of each (same-sized) image and the batch's stage timings."""
        height, width = images[0].shape[:2]
        backbone_seconds = 0.0
        if features is None:
            start = time.perf_counter()
            features = self._run_backbone(images)
            backbone_seconds = time.perf_counter() - start
        start = time.perf_counter()
        factors = self._input_factors(height, width)
        boxes = [(rescale_boxes(b, factors), s) for b, s in self.boxes_from_features(features)]
        proposal_seconds = time.perf_counter() - start
        return boxes, {"backbone": backbone_seconds, "proposals": proposal_seconds}

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def boxes_from_features(
        self, features: torch.Tensor, box_sides: torch.Tensor | None = None
    ) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """Levels, cell boxes, local search and ranking: ``(pixel boxes of the network input, scores or
        None)`` per image.

        ``box_sides`` ``[N, 4, h, w]``: a learned head's log distances from each
        cell's centre to the sides of its object (in units of the map's stride;
        :mod:`detaccel.models.objectness`); the boxes they describe at each box's
        centre cell and at each peak join the local search.
        """
        ops = r2cnn_ops()
        with stage("levels"), torch.inference_mode():
            reduced = reduce_channels(features, self.reduction)
            if box_sides is not None:
                expected = (features.shape[0], 4, *features.shape[2:])
                if tuple(box_sides.shape) != expected:
                    raise ValueError(f"box_sides: expected {expected}, got {tuple(box_sides.shape)}")
            if self.upsample > 1:
                reduced, box_sides = self._upsampled(reduced, box_sides)
            integrated, levels = ops.r2cnn_feature_levels(reduced, self.num_levels)
            cell_boxes = ops.r2cnn_level_boxes(
                levels,
                self.num_levels,
                self.max_boxes_per_level,
                grouping=self.grouping,
                superlevel=self.superlevel,
            )
        reads_values = self.peaks or self.ranking != "none"
        out = []
        for index, cells in enumerate(cell_boxes):
            with stage("local search"):
                cells = cells.cpu().numpy()
                pixels = cell_boxes_to_pixels(cells, self.read_field, self.footprint)
                boxes = [local_search(pixels, self.scale_factors, self.shapes)]
                values = integrated[index].float().cpu().numpy() if reads_values else None
            peaks = None
            if self.peaks:
                with stage("local maxima"):
                    peaks = local_maxima(values, self.peaks, self.peak_threshold)
                    boxes.append(self._peak_boxes(*peaks))
            searched = np.concatenate(boxes)
            learned = np.zeros((0, 4))
            if box_sides is not None:
                with stage("learned sides"):
                    learned = self._learned_boxes(box_sides[index].float().cpu().numpy(), cells, peaks)
            if self.ranking == "contrast":
                with stage("ranking"):
                    out.append(self._rank(searched, values, learned))
            else:
                out.append((np.concatenate([searched, learned]), None))
        return out

    def _upsampled(
        self, reduced: torch.Tensor, box_sides: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The reduced map and the learned sides at ``upsample`` times their resolution, in one
        bilinear interpolation."""
        stacked = reduced if box_sides is None else torch.cat((reduced, box_sides.to(reduced.dtype)), dim=1)
        stacked = nn.functional.interpolate(
            stacked, scale_factor=self.upsample, mode="bilinear", align_corners=False
        )
        channels = reduced.shape[1]
        return stacked[:, :channels].contiguous(), None if box_sides is None else stacked[:, channels:]

    def _learned_boxes(
        self, sides: np.ndarray, cells: np.ndarray, peaks: tuple[np.ndarray, np.ndarray] | None
    ) -> np.ndarray:
        """The boxes the learned sides describe at each cell box's ``cells`` ``[K, 4]`` centre cell and at
        each peak; with ``side_passes`` 2 also those read again at each such box's own centre."""
        cells = np.asarray(cells, dtype=np.int64).reshape(-1, 4)
        at = np.stack([(cells[:, 0] + cells[:, 2]) // 2, (cells[:, 1] + cells[:, 3]) // 2], axis=1)
        if peaks is not None:
            at = np.concatenate([at, np.stack(peaks, axis=1).astype(np.int64)])
        fx, fy = self.read_field
        stride = (float(self.field[0].stride), float(self.field[1].stride))
        passes = []
        for _ in range(self.side_passes):
            centres = np.stack([fx.centre(at[:, 0]), fy.centre(at[:, 1])], axis=1)
            passes.append(boxes_from_sides(sides, at, centres, stride))
            middle = (passes[-1][:, :2] + passes[-1][:, 2:]) / 2.0  # the next pass reads at each box's centre
            at = np.stack(
                [np.clip(np.rint((middle[:, 0] - fx.offset) / fx.stride), 0, sides.shape[2] - 1),
                 np.clip(np.rint((middle[:, 1] - fy.offset) / fy.stride), 0, sides.shape[1] - 1)],
                axis=1,
            ).astype(np.int64)  # fmt: skip
        return np.concatenate(passes)

    def _peak_boxes(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """The shapes, scaled by each of ``peak_scales``, centred on peak cells ``(xs, ys)``."""
        fx, fy = self.read_field
        centre = np.stack([fx.centre(xs), fy.centre(ys)], axis=1)
        half = (self._peak_sizes[None] - 1.0) / 2.0  # [1, S, 2]
        boxes = np.concatenate([centre[:, None] - half, centre[:, None] + half], axis=2)
        return boxes.reshape(-1, 4)

    def _rank(
        self, boxes: np.ndarray, integrated: np.ndarray, learned: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``boxes`` sorted by contrast score and de-duplicated by NMS (the project's operator, on the CPU
        where the boxes are), with their scores. ``learned`` boxes (from learned sides) rank before all
        others, by their own contrast (their scores are raised above the others')."""
        if learned is not None and len(learned):
            boxes = np.concatenate([learned, boxes])
        scores = contrast_scores(integrated, boxes, self.read_field)  # one summed-area table for all
        count = 0 if learned is None else len(learned)
        if 0 < count < len(scores):  # the learned boxes above every other
            scores[:count] += float(scores[count:].max()) - float(scores[:count].min()) + 1.0
        if self.nms_iou is not None and len(boxes):  # NMS returns the kept boxes by decreasing score
            as_tensors = torch.from_numpy(boxes).float(), torch.from_numpy(scores).float()
            order = r2cnn_ops().nms(*as_tensors, self.nms_iou).numpy()
        else:
            order = np.argsort(-scores, kind="stable")
        return boxes[order], scores[order]

    def _as_features(self, features: Any) -> torch.Tensor:
        if not isinstance(features, torch.Tensor):
            features = torch.as_tensor(np.asarray(features))
        if features.dim() == 3:
            features = features.unsqueeze(0)
        if features.dim() != 4 or features.shape[0] != 1:
            raise ValueError(
                f"features: expected [C, H, W] or [1, C, H, W] for one image, got {tuple(features.shape)}"
            )
        return features if features.is_floating_point() else features.float()

    # -- generator interface ---------------------------------------------------

    def _propose(self, image: np.ndarray, features: Any | None, image_id: ImageId | None) -> RawProposals:
        feature_map = None if features is None else self._as_features(features)
        boxes, timings = self._timed_boxes([image], feature_map)
        return RawProposals(*boxes[0], timings)

    def generate_batch(
        self,
        images: Sequence[np.ndarray],
        features: Any | None = None,
        *,
        image_ids: Sequence[ImageId] | None = None,
    ) -> list[Proposals]:
        """As :meth:`GeneratorBase.generate_batch`, with one backbone pass and one operator call.

        Batching applies when all images have the same size and ``features``
        is ``None`` or one ``[N, C, H, W]`` tensor; stage timings are then the
        batch's divided by ``N``. Otherwise images are processed one by one.
        """
        bgr = [to_bgr8(image) for image in images]
        batched_features = features is None or (isinstance(features, torch.Tensor) and features.dim() == 4)
        if len(bgr) < 2 or len({image.shape for image in bgr}) != 1 or not batched_features:
            return super().generate_batch(bgr, features, image_ids=image_ids)
        if features is not None and features.shape[0] != len(bgr):
            raise ValueError(f"{len(bgr)} images but {features.shape[0]} feature maps")
        if image_ids is not None and len(image_ids) != len(bgr):
            raise ValueError(f"{len(bgr)} images but {len(image_ids)} image ids")
        boxes, timings = self._timed_boxes(bgr, features)
        timings = {stage: seconds / len(bgr) for stage, seconds in timings.items()}
        size = bgr[0].shape[:2]
        return [self._finish(RawProposals(b, s, dict(timings)), size, 0.0) for b, s in boxes]
