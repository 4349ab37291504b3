"""Detector configuration: the dataclass schema and its checked YAML loader."""

from detaccel.config.loader import (
    ConfigError,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    validate,
)
from detaccel.config.schema import (
    BACKBONES,
    FAMILIES,
    ROI_FEATURES,
    BackboneConfig,
    Config,
    DataConfig,
    EvalConfig,
    HeadConfig,
    ModelConfig,
    ProposalsConfig,
    RoIFeaturesConfig,
    TrainConfig,
)

__all__ = [
    "BACKBONES",
    "FAMILIES",
    "ROI_FEATURES",
    "BackboneConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "EvalConfig",
    "HeadConfig",
    "ModelConfig",
    "ProposalsConfig",
    "RoIFeaturesConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "validate",
]
