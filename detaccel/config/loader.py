"""Read a configuration from YAML (or a mapping), checking every key and type.

An unknown key is an error naming its full dotted path (``train.lr``); a value
of the wrong type names the key, the expected type and what was given.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import yaml

from detaccel.config.schema import (
    BACKBONES,
    CLASSIFIERS,
    EFFICIENTNET_LITE,
    FAMILIES,
    ROI_FEATURES,
    BackboneConfig,
    Config,
)


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the offending key."""


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        (item,) = typing.get_args(tp)
        return f"list of {_type_name(item)}"
    if origin is dict:
        key, value = typing.get_args(tp)
        return "mapping" if value is Any else f"mapping of {_type_name(key)} to {_type_name(value)}"
    if tp is type(None):
        return "null"
    if tp is Any:
        return "any value"
    return getattr(tp, "__name__", str(tp))


def _got(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def _convert(value: Any, tp: Any, key: str) -> Any:
    """``value`` checked against type ``tp`` (ints are accepted as floats, not the reverse)."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _convert(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"config key {key!r}: expected {_type_name(tp)}, got {_got(value)}")
    if tp is type(None):
        if value is None:
            return None
    elif dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    elif origin is list:
        (item,) = typing.get_args(tp)
        if isinstance(value, Sequence) and not isinstance(value, str | bytes):
            return [_convert(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    elif origin is dict:
        key_type, value_type = typing.get_args(tp)
        if isinstance(value, Mapping):
            return {
                _convert(k, key_type, f"{key}.{k}"): _convert(v, value_type, f"{key}.{k}")
                for k, v in value.items()
            }
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif tp is str and isinstance(value, str):
        return value
    raise ConfigError(f"config key {key!r}: expected {_type_name(tp)}, got {_got(value)}")


def _build(cls: type, mapping: Any, prefix: str) -> Any:
    where = prefix or "the configuration"
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"config key {where!r}: expected a mapping, got {_got(mapping)}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = [str(k) for k in mapping if k not in names]
    if unknown:
        dotted = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        raise ConfigError(
            f"unknown config key {dotted!r} (known keys{' of ' + prefix if prefix else ''}: "
            f"{', '.join(sorted(names))})"
        )
    values = {
        name: _convert(value, hints[name], f"{prefix}.{name}" if prefix else name)
        for name, value in mapping.items()
    }
    return cls(**values)


def _check_choice(key: str, value: Any, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"config key {key!r}: {value!r} is not one of {', '.join(choices)}")


def _check_positive(key: str, value: float, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(f"config key {key!r}: must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


def _check_backbone_weights(backbone: BackboneConfig) -> None:
    efficientnet = backbone.name in EFFICIENTNET_LITE
    if backbone.pretrained is not None:
        _check_choice("backbone.pretrained", backbone.pretrained, ("imagenet",))
        if not efficientnet:
            raise ConfigError(
                f"config key 'backbone.pretrained': packaged ImageNet weights exist for "
                f"{', '.join(EFFICIENTNET_LITE)}; for {backbone.name!r} give a file with backbone.weights"
            )
        if backbone.weights:
            raise ConfigError("config keys 'backbone.pretrained', 'backbone.weights': give one of them")
    if backbone.out_stride not in (8, 16):
        raise ConfigError(f"config key 'backbone.out_stride': expected 8 or 16, got {backbone.out_stride!r}")
    _check_positive("backbone.freeze_at", backbone.freeze_at, allow_zero=True)
    if backbone.freeze_at and not efficientnet:
        raise ConfigError(
            f"config key 'backbone.freeze_at': for {', '.join(EFFICIENTNET_LITE)} "
            "(torchvision backbones: freeze_first_layers)"
        )


def _check_coco_paths(config: Config) -> None:
    data = config.data
    for key in ("annotations", "images"):
        value = getattr(data, key)
        if value is None:
            continue
        if data.format != "coco":
            raise ConfigError(f"config key 'data.{key}': applies to COCO datasets (data.format: coco)")
        splits = {data.train_split, data.test_split}
        if isinstance(value, dict):
            missing = sorted(s for s in splits if s not in value)
            if missing:
                raise ConfigError(
                    f"config key 'data.{key}': no path for split {missing[0]!r} "
                    f"(given for: {', '.join(value) or 'none'})"
                )
        elif key == "annotations" and "{split}" not in value and len(splits) > 1:
            raise ConfigError(
                "config key 'data.annotations': one file for both data.train_split and data.test_split; "
                "give a mapping {split: file}, or a path with {split} in it"
            )


def validate(config: Config) -> Config:
    """Check values beyond their types (choices, ranges); returns ``config``."""
    from detaccel.evaluation.evaluate import METRICS

    _check_choice("model.family", config.model.family, FAMILIES)
    _check_choice("model.classifier", config.model.classifier, CLASSIFIERS)
    if config.model.classifier == "svm" and config.model.family != "rcnn":
        raise ConfigError("config key 'model.classifier': svm is only available for the rcnn family")
    if len(config.model.box_weights) != 4:
        raise ConfigError("config key 'model.box_weights': expected 4 numbers")
    _check_choice("backbone.name", config.backbone.name, BACKBONES)
    if config.backbone.stride not in (8, 16):
        raise ConfigError(f"config key 'backbone.stride': expected 8 or 16, got {config.backbone.stride!r}")
    _check_positive("backbone.width", config.backbone.width)
    _check_backbone_weights(config.backbone)
    _check_choice("backbone.runtime", config.backbone.runtime, ("torch", "onnxruntime"))
    if config.roi_features.type is not None:
        _check_choice("roi_features.type", config.roi_features.type, ROI_FEATURES)
    for key in ("output_size", "warp_size", "warp_batch_size"):
        _check_positive(f"roi_features.{key}", getattr(config.roi_features, key))
    _check_positive("roi_features.context_padding", config.roi_features.context_padding, allow_zero=True)
    if 2 * config.roi_features.context_padding >= config.roi_features.warp_size:
        raise ConfigError("config key 'roi_features.context_padding': must be under half of warp_size")
    if not config.roi_features.spp_levels or min(config.roi_features.spp_levels) <= 0:
        raise ConfigError("config key 'roi_features.spp_levels': expected positive grid sizes")
    if len(config.head.fc_dims) != 2 or min(config.head.fc_dims) <= 0:
        raise ConfigError("config key 'head.fc_dims': expected two positive sizes (fc6, fc7)")
    if not 0 <= config.head.dropout < 1:
        raise ConfigError("config key 'head.dropout': must be in [0, 1)")
    for name, rank in config.head.svd_ranks.items():
        _check_choice("head.svd_ranks", name, ("fc6", "fc7"))
        _check_positive(f"head.svd_ranks.{name}", rank)
    _check_choice("data.format", config.data.format, ("voc", "coco"))
    if not config.data.root and not config.data.annotations:
        raise ConfigError("config key 'data.root': a dataset directory is required")
    _check_coco_paths(config)
    if not config.data.train_scales or min(config.data.train_scales) <= 0:
        raise ConfigError("config key 'data.train_scales': expected positive sizes")
    _check_positive("data.test_scale", config.data.test_scale)
    _check_positive("data.test_roi_size", config.data.test_roi_size)
    test_scales = config.data.test_scales
    if test_scales:
        if min(test_scales) <= 0 or len(set(test_scales)) != len(test_scales):
            raise ConfigError("config key 'data.test_scales': expected distinct positive sizes")
        if config.data.test_scale not in test_scales:
            raise ConfigError("config key 'data.test_scales': must include data.test_scale")
        if config.roi_feature_type == "warp":
            raise ConfigError(
                "config key 'data.test_scales': multi-scale testing pools RoIs on shared feature maps "
                "(sppnet, fast_rcnn); R-CNN warps each region"
            )
    _check_positive("data.max_size", config.data.max_size)
    train = config.train
    for key in ("images_per_batch", "rois_per_image", "regions_per_batch", "max_iter", "checkpoint_period"):
        _check_positive(f"train.{key}", getattr(train, key))
    _check_positive("train.log_period", train.log_period)
    _check_positive("train.base_lr", train.base_lr)
    if train.max_seconds is not None:
        _check_positive("train.max_seconds", train.max_seconds)
    if not 0 < train.fg_fraction <= 1:
        raise ConfigError("config key 'train.fg_fraction': must be in (0, 1]")
    if not 0 <= train.bg_iou_low <= train.bg_iou_high <= train.fg_iou <= 1:
        raise ConfigError(
            "config keys 'train.bg_iou_low', 'train.bg_iou_high', 'train.fg_iou': "
            "need 0 <= bg_iou_low <= bg_iou_high <= fg_iou <= 1"
        )
    if sorted(train.steps) != train.steps:
        raise ConfigError("config key 'train.steps': must be increasing")
    for metric in config.eval.metrics:
        _check_choice("eval.metrics", metric, METRICS)
    if not 0 <= config.eval.nms_threshold <= 1:
        raise ConfigError("config key 'eval.nms_threshold': must be in [0, 1]")
    _check_positive("eval.max_per_image", config.eval.max_per_image)
    _check_positive("eval.refine_passes", config.eval.refine_passes, allow_zero=True)
    check_proposal_params(config.proposals.name, config.proposals.params)
    return config


def check_proposal_params(name: str, params: Mapping[str, Any], key: str = "proposals.params") -> None:
    """``params`` of generator ``name`` checked before any data is read: R²-CNN's against
    :class:`~detaccel.config.r2cnn.R2CNNSettings` (keys, types, choices), another generator's keys
    against its constructor's parameters."""
    from detaccel.config.r2cnn import r2cnn_settings
    from detaccel.proposals.registry import canonical_name, generator_parameters

    try:
        known = generator_parameters(name)
    except ValueError as error:
        raise ConfigError(f"config key 'proposals.name': {error}") from None
    if canonical_name(name) == "r2cnn":
        r2cnn_settings(params, key)
        return
    unknown = [str(k) for k in params if k not in known]
    if unknown:
        raise ConfigError(
            f"unknown config key '{key}.{unknown[0]}' (parameters of {canonical_name(name)}: "
            f"{', '.join(sorted(known))})"
        )


def config_from_dict(mapping: Mapping[str, Any]) -> Config:
    """Build and validate a :class:`Config` from nested mappings."""
    return validate(_build(Config, mapping, ""))


def config_to_dict(config: Config) -> dict[str, Any]:
    """The configuration as plain nested dicts and lists (YAML/JSON and checkpoint safe)."""
    return dataclasses.asdict(config)


def resolved_config_dict(config: Config) -> dict[str, Any]:
    """:func:`config_to_dict` with every default spelled out, R²-CNN's settings included."""
    from detaccel.config.r2cnn import r2cnn_settings, settings_dict
    from detaccel.proposals.registry import canonical_name

    mapping = config_to_dict(config)
    if canonical_name(config.proposals.name) == "r2cnn":
        mapping["proposals"]["params"] = settings_dict(r2cnn_settings(config.proposals.params))
    return mapping


def write_resolved_config(config: Config, path: str | PathLike) -> Path:
    """Write the configuration as :func:`resolved_config_dict` (YAML that :func:`load_config` reads)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(resolved_config_dict(config), sort_keys=False), encoding="utf-8")
    return path


def apply_overrides(mapping: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` strings (values parsed as YAML) to a nested mapping."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. train.max_iter=100")
        node = mapping
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
            node = child
        node[parts[-1]] = yaml.safe_load(text)
    return mapping


def load_config(path: str | PathLike, overrides: Sequence[str] = ()) -> Config:
    """Read a YAML configuration file, apply overrides, check it."""
    path = Path(path)
    try:
        mapping = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: configuration file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read configuration ({error})") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from None
    if mapping is None:
        mapping = {}
    if not isinstance(mapping, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {_got(mapping)}")
    mapping = apply_overrides(mapping, overrides)
    try:
        config = config_from_dict(mapping)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    config.data.root = resolve_data_path(config.data.root, path.parent)
    if config.data.split_dir:
        config.data.split_dir = resolve_data_path(config.data.split_dir, path.parent)
    return config


def resolve_data_path(value: str, config_dir: str | PathLike) -> str:
    """A relative dataset path as the current directory has it, or else as ``config_dir`` has it.

    ``value`` is returned unchanged when it is absolute, empty, exists relative to
    the current directory, or exists relative to neither; else it becomes the
    absolute path below ``config_dir``.
    """
    if not value or Path(value).is_absolute() or Path(value).exists():
        return value
    candidate = Path(config_dir) / value
    return os.path.abspath(candidate) if candidate.exists() else value
