"""The detector's proposal generator: one slot for image-based generators and R²-CNN on the model's features.

Two kinds plug into :attr:`RegionDetector.proposal_generator`:

- :class:`ImageProposals` wraps a generator of :mod:`detaccel.proposals` that
  reads the image itself (selective search, EdgeBoxes, sliding windows,
  precomputed files, R²-CNN on a separate network). Its boxes do not depend on
  the detector's weights, so training and evaluation may cache them per split.
- :class:`FeatureProposals` is R²-CNN reading the detector's *own* conv map at a
  chosen backbone stage (or several, combined on the finest one's grid): no extra
  network, computed on the current weights (in training too), never cached.
  With ``reduction: objectness`` it carries an
  :class:`~detaccel.models.objectness.ObjectnessHead` trained with the detector,
  whose map R²-CNN integrates instead of the backbone's channels.

Both return boxes in original-image pixels, at most ``max_proposals`` per image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from detaccel.config.schema import ProposalsConfig
from detaccel.models.objectness import BRANCH_CONVS, ObjectnessHead, objectness_loss
from detaccel.proposals import finalize_proposals
from detaccel.proposals.box_shapes import shapes_at_scale
from detaccel.proposals.registry import build_generator, canonical_name

# R²-CNN parameters that choose the map it reads rather than how it reads it.
FEATURE_STAGE_KEY = "layer"
OWN_FEATURES = "model"
# The learned reduction, and the parameters of its head and loss.
OBJECTNESS = "objectness"
OBJECTNESS_KEYS = ("objectness_channels", "objectness_weight", "objectness_boxes", "objectness_conv")


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

    def propose(self, image_rgb: np.ndarray, image_id: Any = None) -> np.ndarray:
        """Boxes ``[K, 4]`` float32 of one RGB image, in its own pixels."""
        bgr = np.ascontiguousarray(image_rgb[:, :, ::-1])
        boxes = self.generator.generate(bgr, image_id=image_id).boxes
        return np.ascontiguousarray(boxes[: self.max_proposals], dtype=np.float32)

    def describe(self) -> str:
        return f"{self.name} (on the image)"


class FeatureProposals(ProposalSource):
    """R²-CNN on the detector's own feature map at backbone stages ``stages`` (``"out"``: the RoI map).

    Several stages are combined into one map on the grid of the finest: each
    coarser map is resized to it (bilinear) and the channels are concatenated in
    the order given (:meth:`combine`). ``objectness``: the learned head whose map
    R²-CNN reads instead of the stages' channels (trained with weight
    ``objectness_weight``), or ``None``.
    """

    reads_features = True

    def __init__(
        self,
        generator: Any,
        stages: str | Sequence[str],
        max_proposals: int | None,
        objectness: ObjectnessHead | None = None,
        objectness_weight: float = 1.0,
    ) -> None:
        super().__init__("r2cnn", max_proposals)
        self.generator = generator
        self.stages = (stages,) if isinstance(stages, str) else tuple(stages)
        if not self.stages:
            raise ValueError("r2cnn: layer: expected a stage name or a non-empty list of them")
        self.objectness = objectness
        self.objectness_weight = float(objectness_weight)

    def combine(self, maps: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """The map R²-CNN reads, from the backbone's ``maps`` by stage name (one ``forward_stages`` pass)."""
        if len(self.stages) == 1:
            return maps[self.stages[0]]
        chosen = [maps[name] for name in self.stages]
        size = max((tuple(m.shape[-2:]) for m in chosen), key=lambda hw: hw[0] * hw[1])
        resized = [
            m if tuple(m.shape[-2:]) == size
            else nn.functional.interpolate(m, size=size, mode="bilinear", align_corners=False)
            for m in chosen
        ]  # fmt: skip
        return torch.cat(resized, dim=1)

    def objectness_loss(
        self, feature_map: torch.Tensor, gt_boxes: Sequence[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weighted loss, logits)`` of the objectness head on ``feature_map`` against ``gt_boxes[i]``
        (image ``i``'s boxes in the map's input pixels); the logits go on to :meth:`propose_from_features`."""
        if self.objectness is None:
            raise ValueError("objectness_loss: this R²-CNN has no objectness head (reduction: objectness)")
        logits = self.objectness(feature_map)
        return self.objectness_weight * objectness_loss(logits, gt_boxes, self.generator.field), logits

    def propose_from_features(
        self,
        feature_map: torch.Tensor,
        input_sizes: Sequence[tuple[int, int]],
        scales: Sequence[float],
        objectness_logits: torch.Tensor | None = None,
    ) -> list[np.ndarray]:
        """Boxes per image in original pixels from ``feature_map`` ``[N, C, h, w]`` of the resized batch.

        ``input_sizes[i]`` is image ``i``'s resized (unpadded) ``(height, width)``
        and ``scales[i]`` its resize factor. With an objectness head, R²-CNN reads
        its map (``objectness_logits`` when already computed on this map).
        """
        read, sides = feature_map.detach(), None
        if self.objectness is not None:
            if objectness_logits is None:
                objectness_logits = self.objectness(read)
            read = torch.sigmoid(objectness_logits[:, :1].detach())
            if objectness_logits.shape[1] > 1:
                sides = objectness_logits[:, 1:].detach()
        raw = self.generator.boxes_from_features(read, sides)
        out = []
        for (boxes, scores), size, scale in zip(raw, input_sizes, scales, strict=True):
            kept, _ = finalize_proposals(
                boxes, scores, tuple(size), min_size=self.generator.min_size, max_proposals=self.max_proposals
            )
            # Back to original pixels, clipped again: the resized image's last pixel maps past the original's.
            height, width = (round(side / scale) for side in size)
            original = kept / scale
            np.clip(original[:, 0::2], 0, width - 1, out=original[:, 0::2])
            np.clip(original[:, 1::2], 0, height - 1, out=original[:, 1::2])
            out.append(np.ascontiguousarray(original, dtype=np.float32))
        return out

    def describe(self) -> str:
        learned = ", learned objectness" if self.objectness is not None else ""
        if self.objectness is not None and self.objectness.sides is not None:
            learned += " and box sides"
        maps = " + ".join(repr(name) for name in self.stages)
        return f"r2cnn (the detector's {maps} map{'s' if len(self.stages) > 1 else ''}{learned})"


def reads_own_features(name: str, params: Mapping[str, Any]) -> bool:
    """Whether generator ``name`` with ``params`` is R²-CNN on the detector's own map.

    R²-CNN without a ``backbone`` parameter (or with ``backbone: model``) reads
    the detector's features; with a named network it is an image-based generator.
    """
    return canonical_name(name) == "r2cnn" and params.get("backbone", OWN_FEATURES) == OWN_FEATURES


def _stage_field(backbone: nn.Module, stage: str) -> Any:
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


def _feature_stages(value: Any, backbone: nn.Module) -> tuple[tuple[str, ...], str]:
    """``(stages, grid stage)`` of R²-CNN's ``layer`` parameter: one stage name or a list of them; the
    grid is the finest (smallest stride) of them."""
    stages = (value,) if isinstance(value, str) else tuple(value) if isinstance(value, list | tuple) else None
    if not stages or not all(isinstance(name, str) for name in stages) or len(set(stages)) != len(stages):
        raise ValueError(f"r2cnn: layer: expected a stage name or a list of distinct names, got {value!r}")
    if len(stages) == 1:
        return stages, stages[0]
    if not hasattr(backbone, "stage_stride"):
        raise ValueError(f"r2cnn: layer: backbone {type(backbone).__name__} offers one map ('out')")
    return stages, min(stages, key=backbone.stage_stride)


def _stage_channels(backbone: nn.Module, stage: str) -> int:
    if hasattr(backbone, "stage_channels"):
        return int(backbone.stage_channels(stage))
    if stage != "out":
        raise ValueError(f"backbone {type(backbone).__name__} has no stage {stage!r} (it offers 'out')")
    return int(backbone.out_channels)


def shapes_input_size(
    name: str, params: Mapping[str, Any], test_scale: int | None, max_size: int | None = None
) -> tuple[int | None, int | None]:
    """``(shorter side, longer side cap)`` of R²-CNN's input: the detector's ``test_scale`` and
    ``max_size`` on its own map, else the generator's ``short_side`` and ``max_side``."""
    if reads_own_features(name, params):
        return test_scale, max_size
    return params.get("short_side"), params.get("max_side")


def generator_params(name: str, params: Mapping[str, Any], test_scale: int | None) -> dict[str, Any]:
    """``params`` as generator ``name`` takes them: R²-CNN shapes in pixels of its input."""
    if canonical_name(name) != "r2cnn":
        return dict(params)
    return shapes_at_scale(params, shapes_input_size(name, params, test_scale)[0])


def build_proposal_source(
    name: str,
    params: Mapping[str, Any],
    backbone: nn.Module,
    max_proposals: int | None = None,
    test_scale: int | None = None,
) -> ProposalSource:
    """The proposal slot for generator ``name`` with ``params`` on a detector with ``backbone``.

    ``test_scale``: the detector's test-time shorter side, to which R²-CNN shapes
    measured at another scale (``shapes_scale``) are rescaled.
    """
    params = generator_params(name, params, test_scale)
    if not reads_own_features(name, params):
        return ImageProposals(canonical_name(name), build_generator(name, **params), max_proposals)
    from detaccel.proposals.r2cnn import R2CNN

    params.pop("backbone", None)
    stages, grid = _feature_stages(params.pop(FEATURE_STAGE_KEY, "out"), backbone)
    head_options = {key: params.pop(key) for key in OBJECTNESS_KEYS if key in params}
    objectness = None
    if params.get("reduction") == OBJECTNESS:
        params["reduction"] = "sum"  # the head's one channel, integrated as it is
        boxes = head_options.get("objectness_boxes", False)
        if not isinstance(boxes, bool):
            raise ValueError(f"r2cnn: objectness_boxes: expected true or false, got {boxes!r}")
        conv = head_options.get("objectness_conv", "full")
        if conv not in BRANCH_CONVS:
            known = ", ".join(BRANCH_CONVS)
            raise ValueError(f"r2cnn: objectness_conv: expected one of {known}, got {conv!r}")
        objectness = ObjectnessHead(
            sum(_stage_channels(backbone, name) for name in stages),
            int(head_options.get("objectness_channels", 64)),
            boxes,
            conv,
        )
    elif head_options:
        raise ValueError(f"r2cnn: {', '.join(head_options)} need reduction: {OBJECTNESS}")
    if "receptive_field" not in params:
        params["receptive_field"] = _stage_field(backbone, grid)
    if params.get("max_proposals") is not None:
        limits = [limit for limit in (max_proposals, params["max_proposals"]) if limit is not None]
        max_proposals = min(limits)
    try:
        generator = R2CNN(backbone=None, **params)
    except TypeError as error:
        raise ValueError(f"r2cnn: {error}") from None
    weight = float(head_options.get("objectness_weight", 1.0))
    return FeatureProposals(generator, stages, max_proposals, objectness, weight)


def proposal_source_from_config(
    config: ProposalsConfig, backbone: nn.Module, test_scale: int | None = None
) -> ProposalSource:
    """The proposal slot ``config.proposals`` describes (test-time cap ``max_test``, at ``test_scale``)."""
    return build_proposal_source(config.name, config.params, backbone, config.max_test, test_scale)
