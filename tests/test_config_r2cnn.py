"""R²-CNN's typed settings: checked when the configuration loads, written resolved by training,
and checkpoints of the earlier layout still loading."""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest
import torch
import yaml

from detaccel.cli import main
from detaccel.config import ConfigError, config_to_dict, load_config
from detaccel.config.r2cnn import DETECTOR_FIELDS, R2CNNSettings, generator_kwargs, r2cnn_settings
from detaccel.data import read_image
from detaccel.engine import DistInfo, Trainer
from detaccel.engine.checkpoint import load_checkpoint, save_checkpoint
from detaccel.engine.loading import load_detector
from detaccel.engine.trainer import FINAL_MODEL, RESOLVED_CONFIG
from detaccel.proposals.r2cnn import R2CNN
from tests.detector_configs import tiny_config, tiny_config_dict, tiny_dataset

LEARNED = {
    "name": "r2cnn",
    "params": {"reduction": "objectness", "objectness_channels": 8, "objectness_boxes": True,
               "ranking": "contrast", "num_levels": 6, "shapes": "auto", "num_shapes": 2},
    "max_test": 100,
}  # fmt: skip


def _write(tmp_path, mapping) -> str:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(mapping))
    return str(path)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("proposals.params.bogus_key=1", r"unknown config key 'proposals.params.bogus_key' \(known keys of"),
        ("proposals.params.num_levels=ten", r"'proposals.params.num_levels': expected int, got str 'ten'"),
        (
            "proposals.params.grouping=blobs",
            r"'proposals.params.grouping': 'blobs' is not one of flood, original",
        ),
        ("proposals.params.levels=quantile", r"'proposals.params.levels': 'quantile' was removed"),
        ("proposals.params.layer=[stride8, out]", r"'proposals.params.layer': one stage name"),
        ("proposals.params.objectness_channels=4", r"objectness_channels': needs reduction: objectness"),
    ],
)
def test_a_bad_r2cnn_setting_is_refused_when_the_config_loads(tmp_path, capsys, override, message):
    mapping = tiny_config_dict(tmp_path / "never-read", proposals={"name": "r2cnn", "params": {}})
    path = _write(tmp_path, mapping)
    with pytest.raises(ConfigError, match=message):
        load_config(path, [override])
    if "bogus_key" in override:  # the valid keys are listed
        with pytest.raises(
            ConfigError, match="max_boxes_per_level, max_proposals, max_side, min_size, nms_iou, num_levels"
        ):
            load_config(path, [override])
    # The command says it in one line, before any data is read.
    assert main(["train", "--config", path, "--set", override, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "never-read").exists() and not (tmp_path / "out").exists()


def test_another_generators_unknown_parameter_is_refused_at_load(tmp_path):
    mapping = tiny_config_dict(tmp_path, proposals={"params": {"scales": [16], "bogus": 1}})
    with pytest.raises(
        ConfigError, match=r"'proposals.params.bogus' \(parameters of sliding_window: .*scales"
    ):
        load_config(_write(tmp_path, mapping))


def test_surviving_values_of_removed_options_still_load():
    settings = r2cnn_settings({"levels": "uniform", "objectness_conv": "full", "num_levels": 7})
    assert settings.num_levels == 7
    with pytest.raises(ConfigError, match="objectness_conv': 'separable' was removed"):
        r2cnn_settings({"objectness_conv": "separable"})


def test_the_settings_defaults_are_the_generators():
    defaults = {p.name: p.default for p in inspect.signature(R2CNN.__init__).parameters.values()}
    settings = R2CNNSettings(backbone="alexnet")
    for key, value in generator_kwargs(settings).items():
        if key in ("backbone", "scale_factors"):
            continue
        assert key in defaults, key
        expected = defaults[key]
        assert value == (list(expected) if isinstance(expected, tuple) else expected), key
    assert [tuple(p) for p in generator_kwargs(settings)["scale_factors"]] == list(defaults["scale_factors"])
    fields = {f.name for f in dataclasses.fields(R2CNNSettings)}
    assert set(defaults) - {"self"} - fields == set()  # every option of the generator is a setting
    assert set(DETECTOR_FIELDS) <= fields


def test_training_writes_the_resolved_config_and_leaves_the_users_alone(tmp_path):
    data = tiny_dataset(tmp_path / "data")
    config = tiny_config(data, "fast_rcnn", proposals=LEARNED, train={"max_iter": 2})
    given = config_to_dict(config)
    result = Trainer(config, tmp_path / "out", DistInfo(), progress=False).train()
    assert config_to_dict(config) == given  # not mutated
    resolved = yaml.safe_load((tmp_path / "out" / RESOLVED_CONFIG).read_text())
    params = resolved["proposals"]["params"]
    assert set(params) == {f.name for f in dataclasses.fields(R2CNNSettings)}  # every default spelled out
    assert isinstance(params["shapes"], list) and len(params["shapes"]) <= 2 and params["shapes_scale"] == 72
    again = load_config(tmp_path / "out" / RESOLVED_CONFIG)  # and it loads as a configuration
    assert r2cnn_settings(again.proposals.params).shapes == params["shapes"]
    assert result["model"].box_shapes.sizes == params["shapes"]


def test_a_checkpoint_of_the_earlier_layout_loads_with_the_same_detections(tmp_path):
    data = tiny_dataset(tmp_path / "data")
    config = tiny_config(data, "fast_rcnn", proposals=LEARNED, train={"max_iter": 2})
    Trainer(config, tmp_path / "out", DistInfo(), progress=False).train()
    checkpoint = load_checkpoint(tmp_path / "out" / FINAL_MODEL)
    old = dict(checkpoint)
    renamed = {}
    for key, value in checkpoint["model"].items():  # as the earlier version wrote them
        if key.endswith("_extra_state"):
            continue
        key = (
            key.replace("objectness.", "proposal_generator.objectness.", 1)
            if key.startswith("objectness.")
            else key
        )
        renamed[key.removeprefix("roi_heads.")] = value
    old["model"] = renamed
    old["config"]["proposals"]["params"] = {**old["config"]["proposals"]["params"], "objectness_conv": "full"}
    old_path = save_checkpoint(tmp_path / "old.pth", old)
    image = read_image(next(data.rglob("*.jpg")))
    _, new_model, _ = load_detector(str(tmp_path / "out" / FINAL_MODEL))
    _, old_model, _ = load_detector(str(old_path))
    assert old_model.objectness is not None and old_model.box_shapes.sizes == new_model.box_shapes.sizes
    for key, value in new_model.state_dict().items():
        other = old_model.state_dict()[key]
        assert torch.equal(other, value) if isinstance(value, torch.Tensor) else other == value, key
    np.testing.assert_array_equal(
        old_model.predict(image)[0].proposals, new_model.predict(image)[0].proposals
    )
    old["config"]["proposals"]["params"]["objectness_conv"] = "separable"
    with pytest.raises(ValueError, match="'separable' was removed"):
        load_detector(str(save_checkpoint(tmp_path / "separable.pth", old)))
