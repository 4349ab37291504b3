import pytest
import yaml

from detaccel.config import ConfigError, config_from_dict, config_to_dict, load_config
from tests.detector_configs import tiny_config_dict


def test_defaults_round_trip(tmp_path):
    config = config_from_dict(tiny_config_dict(tmp_path))
    again = config_from_dict(config_to_dict(config))
    assert config_to_dict(again) == config_to_dict(config)
    assert config.roi_feature_type == "roi_pool"
    assert config_from_dict(tiny_config_dict(tmp_path, "rcnn")).roi_feature_type == "warp"
    assert config_from_dict(tiny_config_dict(tmp_path, "sppnet")).roi_feature_type == "spp"


@pytest.mark.parametrize(
    ("section", "values", "message"),
    [
        ("train", {"lr": 0.1}, "unknown config key 'train.lr'"),
        ("backbone", {"depth": 3}, "unknown config key 'backbone.depth'"),
        ("train", {"max_iter": "ten"}, "config key 'train.max_iter': expected int, got str 'ten'"),
        ("train", {"max_iter": 2.5}, "config key 'train.max_iter': expected int, got float 2.5"),
        ("head", {"fc_dims": [32, "x"]}, "config key 'head.fc_dims[1]': expected int"),
        ("data", {"flip": "yes"}, "config key 'data.flip': expected bool"),
        ("model", {"family": "yolo"}, "config key 'model.family': 'yolo' is not one of"),
        ("eval", {"metrics": ["map"]}, "config key 'eval.metrics': 'map' is not one of"),
    ],
)
def test_bad_keys_and_types_name_the_key(tmp_path, section, values, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config_from_dict(tiny_config_dict(tmp_path, **{section: values}))


def test_unknown_section_and_non_mapping(tmp_path):
    mapping = tiny_config_dict(tmp_path)
    mapping["solver"] = {}
    with pytest.raises(ConfigError, match="unknown config key 'solver'"):
        config_from_dict(mapping)
    mapping = tiny_config_dict(tmp_path)
    mapping["train"] = [1, 2]
    with pytest.raises(ConfigError, match="config key 'train': expected a mapping"):
        config_from_dict(mapping)


def test_int_accepted_as_float(tmp_path):
    config = config_from_dict(tiny_config_dict(tmp_path, train={"base_lr": 1}))
    assert config.train.base_lr == 1.0 and isinstance(config.train.base_lr, float)


def test_load_yaml_with_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny_config_dict(tmp_path)))
    config = load_config(path, ["train.max_iter=7", "head.fc_dims=[8, 8]"])
    assert config.train.max_iter == 7 and config.head.fc_dims == [8, 8]
    with pytest.raises(ConfigError, match=r"c.yaml: unknown config key 'train.nope'"):
        load_config(path, ["train.nope=1"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_shipped_configs_load():
    from pathlib import Path

    paths = sorted(Path("configs").glob("*.yaml"))
    assert paths
    for path in paths:
        load_config(path)


def test_shipped_benchmark_matrices_load():
    from pathlib import Path

    from detaccel.benchmarks.matrix import load_matrix
    from detaccel.proposals import build_generator

    paths = sorted(Path("configs/bench").glob("*.yaml"))
    assert paths
    for path in paths:
        spec = load_matrix(path)
        for detector in spec.detectors:
            if detector.config is not None:
                load_config(detector.config, detector.overrides)
        for name, params in spec.generators.items():
            # R²-CNN runs on each detector's own features in the benchmark: no backbone of its own.
            extra = {"backbone": None, "receptive_field": (8, 0, 8)} if name == "r2cnn" else {}
            assert build_generator(name, **params, **extra).max_proposals == params.get("max_proposals")
