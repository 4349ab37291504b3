"""R²-CNN's settings: one typed dataclass for ``proposals.params`` when ``proposals.name`` is ``r2cnn``.

Every option of the generator (:class:`detaccel.proposals.r2cnn.R2CNN`) and of
the parts the detector trains with it (the objectness head, the typical box
shapes) is a field here, with its default and what it means. The configuration
loader checks ``proposals.params`` against these fields when the file is read
(:func:`r2cnn_settings`): an unknown key or a value of the wrong type names the
key and lists the valid ones before any data is read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Choices of the enumerated options (the generator checks the same tuples).
GROUPINGS = ("flood", "original")
REDUCTIONS = ("sum", "abs")
OBJECTNESS = "objectness"
RANKINGS = ("none", "contrast")
# Options of earlier versions, removed after the project's ablations: key -> the value that
# survives (a saved configuration holding it loads unchanged), or None (the key is gone).
REMOVED_OPTIONS: dict[str, Any] = {"levels": "uniform", "objectness_conv": "full"}


@dataclass
class R2CNNSettings:
    """R²-CNN's options (``proposals.params``); the defaults are the original R²-CNN's where it had one."""

    # -- which map ---------------------------------------------------------------
    # None: the detector's own map (no extra network; trained parts read from the model).
    # A name (efficientnet_lite0, alexnet, vgg16, ...): a separate network on the image.
    backbone: str | None = None
    # The backbone stage read: a stage name of the detector's backbone ("out": the RoI map;
    # EfficientNet-Lite: "stride8", "stride16"), or a layer index/name of a separate network.
    layer: str | int | None = None
    weights: str | None = None  # a separate network's weights (torchvision name or state dict file)
    # (stride, offset, extent) of the map in pixels; None: computed from the backbone's layers.
    receptive_field: list[float] | None = None

    # -- integrate and quantise ----------------------------------------------------
    # How channels enter the integrated map: "sum" (as they are), "abs" (absolute values, for
    # signed maps), or "objectness" (the detector's learned objectness head, trained with it).
    # None: "abs" on a separate EfficientNet-Lite, "sum" otherwise.
    reduction: str | None = None
    num_levels: int = 10  # levels of the integrated map (uniform parts of its maximum)
    superlevel: bool = False  # level l's set is the cells of level >= l (nested regions)
    upsample: int = 1  # read the reduced map at this many times its resolution (bilinear)

    # -- boxes of each level -----------------------------------------------------
    max_boxes_per_level: int = 100
    grouping: str = "flood"  # "flood": 8-connected components; "original": the first layer's box growing
    footprint: str | float = (
        "stride"  # pixels per cell when mapping cells to pixels: stride, extent or a number
    )

    # -- local search ------------------------------------------------------------
    # (width, height) factors of the variants around each box's centre.
    scale_factors: list[list[float]] = field(
        default_factory=lambda: [[0.8, 0.8], [0.8, 1.5], [1.5, 0.8], [1.5, 1.5]]
    )
    # (width, height) boxes in pixels of the network input centred on each box too; "auto": the
    # training boxes' num_shapes typical shapes, found when training starts and kept in the model.
    shapes: str | list[list[float]] = field(default_factory=list)
    num_shapes: int | None = None  # with shapes: auto (None: 4)
    shapes_scale: int | None = None  # the shorter side the shapes were measured at (set by training)
    peaks: int = 0  # also centre the shapes on the map's strongest local maxima (0: off)
    peak_threshold: float = 0.1  # peaks: cells at least this fraction of the maximum
    peak_scales: list[float] = field(default_factory=lambda: [1.0])  # peaks: factors of each shape
    side_passes: int = 1  # learned box sides: read at each box's centre once, or twice

    # -- ranking -----------------------------------------------------------------
    ranking: str = "none"  # "none": the operators' order; "contrast": inside minus a ring around, NMS
    nms_iou: float | None = 0.8  # NMS after ranking (None: none)
    max_proposals: int | None = None  # per image, before the detector's proposals.max_test cap
    min_size: float = 1.0  # smaller boxes (pixels) are dropped

    # -- a separate network's input ------------------------------------------------
    short_side: int | None = None  # resize the image's shorter side to this (None: native size)
    max_side: int | None = None  # and its longer side to at most this
    pixel_mean: list[float] | None = None  # RGB normalisation of [0, 1] pixels (None: the network's own)
    pixel_std: list[float] | None = None
    device: str = "cpu"

    # -- the learned objectness head (reduction: objectness) ------------------------
    objectness_channels: int = 64  # hidden channels of each branch
    objectness_weight: float = 1.0  # weight of its loss in the detector's
    objectness_boxes: bool = False  # a second branch that learns each cell's box sides

    @property
    def own_map(self) -> bool:
        """Whether R²-CNN reads the detector's own map (no ``backbone`` of its own)."""
        return self.backbone is None or self.backbone == "model"

    @property
    def learned(self) -> bool:
        """Whether it reads the detector's learned objectness head."""
        return self.reduction == OBJECTNESS


# Fields of the objectness head (they need reduction: objectness).
HEAD_FIELDS = ("objectness_channels", "objectness_weight", "objectness_boxes")
# Fields that configure the detector's trained parts or training, not the generator itself.
DETECTOR_FIELDS = (
    "objectness_channels",
    "objectness_weight",
    "objectness_boxes",
    "num_shapes",
    "shapes_scale",
)


def valid_keys() -> list[str]:
    return sorted(f.name for f in dataclasses.fields(R2CNNSettings))


def r2cnn_settings(params: Mapping[str, Any] | R2CNNSettings, key: str = "proposals.params") -> R2CNNSettings:
    """``params`` checked and typed; :class:`~detaccel.config.loader.ConfigError` naming ``key.<name>``.

    Keys of :data:`REMOVED_OPTIONS` at their surviving value are dropped (saved
    configurations of earlier versions load); at another value they are an error
    that says the option was removed.
    """
    from detaccel.config.loader import ConfigError, _build

    if isinstance(params, R2CNNSettings):
        return params
    params = dict(params or {})
    for name, kept in REMOVED_OPTIONS.items():
        if name in params:
            value = params.pop(name)
            if value != kept:
                raise ConfigError(
                    f"config key '{key}.{name}': {value!r} was removed (only {kept!r} remains; drop the key)"
                )
    if isinstance(params.get("layer"), list):
        raise ConfigError(f"config key '{key}.layer': one stage name (maps of several stages were removed)")
    settings = _build(R2CNNSettings, params, key)
    _check(settings, key, ConfigError)
    head = [name for name in HEAD_FIELDS if name in params]
    if head and not settings.learned and params[head[0]] != getattr(R2CNNSettings(), head[0]):
        raise ConfigError(f"config key '{key}.{head[0]}': needs reduction: {OBJECTNESS}")
    return settings


def _check(settings: R2CNNSettings, key: str, error: type[Exception]) -> None:
    def choice(name: str, value: Any, choices: tuple) -> None:
        if value not in choices:
            raise error(f"config key '{key}.{name}': {value!r} is not one of {', '.join(map(str, choices))}")

    if settings.reduction is not None:
        choice("reduction", settings.reduction, (*REDUCTIONS, OBJECTNESS) if settings.own_map else REDUCTIONS)
    choice("grouping", settings.grouping, GROUPINGS)
    choice("ranking", settings.ranking, RANKINGS)
    if isinstance(settings.shapes, str):
        choice("shapes", settings.shapes, ("auto",))
    elif settings.num_shapes is not None:
        raise error(f"config key '{key}.num_shapes': needs shapes: auto")
    for name in ("num_levels", "max_boxes_per_level", "upsample", "side_passes", "objectness_channels"):
        if getattr(settings, name) < 1:
            raise error(f"config key '{key}.{name}': must be >= 1, got {getattr(settings, name)!r}")
    if settings.num_shapes is not None and settings.num_shapes < 1:
        raise error(f"config key '{key}.num_shapes': must be >= 1, got {settings.num_shapes!r}")
    if settings.peaks < 0:
        raise error(f"config key '{key}.peaks': must be >= 0, got {settings.peaks!r}")
    if settings.nms_iou is not None and not 0 < settings.nms_iou <= 1:
        raise error(f"config key '{key}.nms_iou': must be in (0, 1], got {settings.nms_iou!r}")


def settings_dict(settings: R2CNNSettings) -> dict[str, Any]:
    """Every option with its value (what ``detaccel train`` writes in the resolved configuration)."""
    return dataclasses.asdict(settings)


def generator_kwargs(settings: R2CNNSettings) -> dict[str, Any]:
    """The keyword arguments of :class:`~detaccel.proposals.r2cnn.R2CNN` (the detector's parts left out)."""
    out = {k: v for k, v in settings_dict(settings).items() if k not in DETECTOR_FIELDS}
    if settings.own_map:
        out.pop("backbone")
    for name in ("scale_factors", "shapes"):
        if isinstance(out[name], list):
            out[name] = [tuple(pair) for pair in out[name]]
    if out["receptive_field"] is None:
        out.pop("receptive_field")
    return out
