"""The detector's proposal generator: one slot for image-based generators and R²-CNN on the model's features.

Two kinds plug into :attr:`RegionDetector.proposal_generator`:

- :class:`ImageProposals` wraps a generator of :mod:`detaccel.proposals` that
  reads the image itself (selective search, EdgeBoxes, sliding windows,
  precomputed files, R²-CNN on a separate network). Its boxes do not depend on
  the detector's weights, so training and evaluation may cache them per split.
- :class:`FeatureProposals` is R²-CNN reading the detector's *own* conv map at a
  chosen backbone stage: no extra network, computed on the current weights (in
  training too), never cached. With ``reduction: objectness`` it reads the
  detector's :class:`~detaccel.models.objectness.ObjectnessHead` (a member of the
  detector, trained with it) and, in training, returns that head's losses.

The slot holds no trained weights: whatever is put in it, what the detector
learned stays in the detector. Both kinds return boxes in original-image pixels,
at most ``max_proposals`` per image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from detaccel.config.r2cnn import R2CNNSettings, generator_kwargs, r2cnn_settings
from detaccel.models.objectness import ObjectnessHead, objectness_losses
from detaccel.profiling import stage
from detaccel.proposals import finalize_proposals
from detaccel.proposals.box_shapes import shapes_at_scale
from detaccel.proposals.registry import build_generator, canonical_name


class ProposalSource(nn.Module):
    """Base of the proposal slot. ``reads_features``: proposals come from a backbone stage's map."""

    reads_features = False

    def __init__(self, name: str, max_proposals: int | None) -> None:
        super().__init__()
        self.name = name
        self.max_proposals = max_proposals

    @property
    def cacheable(self) -> bool:
        """Whether the boxes are a function of the image alone (so they can be computed once per split)."""
        return not self.reads_features

    def describe(self) -> str:
        return self.name


class ImageProposals(ProposalSource):
    """An image-based generator of :mod:`detaccel.proposals` in the detector's proposal slot."""

    def __init__(self, name: str, generator: Any, max_proposals: int | None) -> None:
        super().__init__(name, max_proposals)
        self.generator = generator

    @torch.compiler.disable
    def propose(self, image_rgb: np.ndarray, image_id: Any = None) -> np.ndarray:
        """Boxes ``[K, 4]`` float32 of one RGB image, in its own pixels."""
        bgr = np.ascontiguousarray(image_rgb[:, :, ::-1])
        boxes = self.generator.generate(bgr, image_id=image_id).boxes
        return np.ascontiguousarray(boxes[: self.max_proposals], dtype=np.float32)

    def describe(self) -> str:
        return f"{self.name} (on the image)"


class FeatureProposals(ProposalSource):
    """R²-CNN on the detector's own feature map at backbone stage ``stage`` (``"out"``: the RoI map).

    ``learned``: R²-CNN reads the detector's objectness head (passed to
    :meth:`forward`) instead of the stage's channels; its losses are weighted by
    ``objectness_weight``.
    """

    reads_features = True

    def __init__(
        self,
        generator: Any,
        stage: str,
        max_proposals: int | None,
        learned: bool = False,
        objectness_weight: float = 1.0,
    ) -> None:
        super().__init__("r2cnn", max_proposals)
        self.generator = generator
        self.stage = stage
        self.learned = learned
        self.objectness_weight = float(objectness_weight)

    def forward(
        self,
        feature_map: torch.Tensor,
        input_sizes: Sequence[tuple[int, int]],
        scales: Sequence[float],
        objectness: ObjectnessHead | None = None,
        gt_boxes: Sequence[torch.Tensor] | None = None,
    ) -> tuple[list[np.ndarray], dict[str, torch.Tensor]]:
        """``(boxes per image in original pixels, losses)`` from ``feature_map`` ``[N, C, h, w]``.

        ``input_sizes[i]`` is image ``i``'s resized (unpadded) ``(height, width)``
        and ``scales[i]`` its resize factor. A learned slot runs ``objectness`` on
        the map; with ``gt_boxes`` (training: image ``i``'s boxes in the map's input
        pixels) it also returns that head's weighted losses.
        """
        logits, losses = None, {}
        if self.learned:
            if objectness is None:
                raise ValueError("r2cnn: reduction: objectness needs the detector's objectness head")
            with stage("objectness head"):
                logits = objectness(feature_map)
            if gt_boxes is not None:
                losses = {
                    name: self.objectness_weight * value
                    for name, value in objectness_losses(logits, gt_boxes, self.generator.field).items()
                }
        return self.propose_from_features(feature_map, input_sizes, scales, logits), losses

    @torch.compiler.disable
    def propose_from_features(
        self,
        feature_map: torch.Tensor,
        input_sizes: Sequence[tuple[int, int]],
        scales: Sequence[float],
        objectness_logits: torch.Tensor | None = None,
    ) -> list[np.ndarray]:
        """Boxes per image in original pixels from ``feature_map`` (or, when given, the objectness
        head's ``objectness_logits`` on it: R²-CNN reads their map, and their box sides if any).

        R²-CNN's grouping and ranking (compiled operators and numpy) run eagerly under
        ``torch.compile``: the number of boxes depends on the data."""
        read, sides = feature_map.detach(), None
        if objectness_logits is not None:
            read = torch.sigmoid(objectness_logits[:, :1].detach())
            if objectness_logits.shape[1] > 1:
                sides = objectness_logits[:, 1:].detach()
        raw = self.generator.boxes_from_features(read, sides)
        out = []
        for (boxes, scores), size, scale in zip(raw, input_sizes, scales, strict=True):
            with stage("finalize"):
                kept, _ = finalize_proposals(
                    boxes,
                    scores,
                    tuple(size),
                    min_size=self.generator.min_size,
                    max_proposals=self.max_proposals,
                )
                # Back to original pixels, clipped again (the resized image's last pixel maps past the end).
                height, width = (round(side / scale) for side in size)
                original = kept / scale
                np.clip(original[:, 0::2], 0, width - 1, out=original[:, 0::2])
                np.clip(original[:, 1::2], 0, height - 1, out=original[:, 1::2])
            out.append(np.ascontiguousarray(original, dtype=np.float32))
        return out

    def describe(self) -> str:
        learned = ", learned objectness" if self.learned else ""
        return f"r2cnn (the detector's {self.stage!r} map{learned})"


def reads_own_features(name: str, params: Any) -> bool:
    """Whether generator ``name`` with ``params`` is R²-CNN on the detector's own map."""
    return canonical_name(name) == "r2cnn" and r2cnn_settings(params).own_map


def stage_field(backbone: nn.Module, stage: str) -> Any:
    """The ``(x, y)`` receptive fields of ``backbone``'s map at ``stage``."""
    from detaccel.proposals.receptive_field import UnsupportedLayerError, receptive_fields

    try:
        if hasattr(backbone, "receptive_fields"):
            return backbone.receptive_fields(stage)
        if stage != "out":
            raise ValueError(f"backbone {type(backbone).__name__} has no stage {stage!r} (it offers 'out')")
        return receptive_fields(getattr(backbone, "body", backbone))
    except UnsupportedLayerError as error:
        raise ValueError(
            f"r2cnn: the receptive field of the backbone's {stage!r} map cannot be computed ({error}); "
            "give proposals.params.receptive_field as [stride, offset, extent]"
        ) from None


def stage_channels(backbone: nn.Module, stage: str) -> int:
    """Channels of ``backbone``'s map at ``stage``."""
    if hasattr(backbone, "stage_channels"):
        return int(backbone.stage_channels(stage))
    if stage != "out":
        raise ValueError(f"backbone {type(backbone).__name__} has no stage {stage!r} (it offers 'out')")
    return int(backbone.out_channels)


def feature_stage(settings: R2CNNSettings) -> str:
    """The backbone stage R²-CNN reads on the detector's own map (``layer``, default ``"out"``)."""
    return "out" if settings.layer is None else str(settings.layer)


def shapes_input_size(
    settings: R2CNNSettings, test_scale: int | None, max_size: int | None = None
) -> tuple[int | None, int | None]:
    """``(shorter side, longer side cap)`` of R²-CNN's input: the detector's ``test_scale`` and
    ``max_size`` on its own map, else the generator's ``short_side`` and ``max_side``."""
    if settings.own_map:
        return test_scale, max_size
    return settings.short_side, settings.max_side


def build_objectness_head(name: str, params: Any, backbone: nn.Module) -> ObjectnessHead | None:
    """The objectness head a configuration's proposal settings describe (``None`` unless R²-CNN on the
    detector's own map with ``reduction: objectness``)."""
    if canonical_name(name) != "r2cnn":
        return None
    settings = r2cnn_settings(params)
    if not (settings.own_map and settings.learned):
        return None
    stage = feature_stage(settings)
    head = ObjectnessHead(
        stage_channels(backbone, stage), settings.objectness_channels, settings.objectness_boxes
    )
    head.stage = stage
    return head


def check_fits_head(settings: R2CNNSettings, head: ObjectnessHead | None) -> None:
    """A clear error unless R²-CNN with ``settings`` can read the detector's trained ``head``."""
    if not settings.learned:
        return
    if head is None:
        raise ValueError(
            "r2cnn: reduction: objectness reads the detector's trained objectness head, and this detector "
            "has none (it was not trained with one); use reduction: sum or abs"
        )
    wanted = {
        "layer": feature_stage(settings),
        "objectness_channels": settings.objectness_channels,
        "objectness_boxes": settings.objectness_boxes,
    }
    trained = {
        "layer": head.stage,
        "objectness_channels": head.hidden,
        "objectness_boxes": head.sides is not None,
    }
    differing = [key for key in wanted if wanted[key] != trained[key]]
    if differing:
        given = ", ".join(f"{key}={wanted[key]!r}" for key in differing)
        kept = ", ".join(f"{key}={trained[key]!r}" for key in differing)
        raise ValueError(
            f"r2cnn: these settings ({given}) do not fit the detector's trained objectness head ({kept}); "
            "drop them or give the trained values"
        )


def build_proposal_source(
    name: str,
    params: Any,
    backbone: nn.Module,
    max_proposals: int | None = None,
    test_scale: int | None = None,
    objectness: ObjectnessHead | None = None,
    shapes: Any = None,
) -> ProposalSource:
    """The proposal slot for generator ``name`` with ``params`` on a detector with ``backbone``.

    ``test_scale``: the detector's test-time shorter side, to which R²-CNN shapes
    measured at another scale (``shapes_scale``) are rescaled. ``objectness``:
    the detector's trained objectness head (R²-CNN with ``reduction: objectness``
    must fit it, :func:`check_fits_head`). ``shapes``: the detector's typical box
    shapes (:class:`~detaccel.models.box_shapes.BoxShapes`), which ``shapes: auto`` reads.
    """
    if canonical_name(name) != "r2cnn":
        return ImageProposals(
            canonical_name(name), build_generator(name, **dict(params or {})), max_proposals
        )
    settings = r2cnn_settings(params)
    kwargs = generator_kwargs(settings)
    if settings.shapes == "auto":
        if shapes is None or shapes.sizes is None:
            raise ValueError(
                "r2cnn: shapes: auto is resolved from the training boxes by `detaccel train`; this detector "
                "has no typical shapes yet (give (width, height) pairs)"
            )
        kwargs["shapes"], measured = shapes.sizes, shapes.scale
    else:
        measured = settings.shapes_scale
    input_scale = shapes_input_size(settings, test_scale)[0]
    kwargs["shapes"] = [
        tuple(pair)
        for pair in shapes_at_scale({"shapes": kwargs["shapes"], "shapes_scale": measured}, input_scale)[
            "shapes"
        ]
    ]
    if not settings.own_map:
        return ImageProposals("r2cnn", build_generator("r2cnn", **kwargs), max_proposals)
    from detaccel.proposals.r2cnn import R2CNN

    check_fits_head(settings, objectness)
    stage = feature_stage(settings)
    kwargs.pop("layer")
    if settings.learned:
        kwargs["reduction"] = "sum"  # the head's one channel, integrated as it is
    if settings.receptive_field is None:
        kwargs["receptive_field"] = stage_field(backbone, stage)
    if settings.max_proposals is not None:
        limits = [limit for limit in (max_proposals, settings.max_proposals) if limit is not None]
        max_proposals = min(limits)
    generator = R2CNN(backbone=None, **kwargs)
    return FeatureProposals(generator, stage, max_proposals, settings.learned, settings.objectness_weight)
