"""Backbone inference in ONNX Runtime: the same maps and detections as eager PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from detaccel.cli import main
from detaccel.config import ConfigError, config_from_dict
from detaccel.config.schema import BackboneConfig
from detaccel.data import read_image
from detaccel.engine import DistInfo, Trainer
from detaccel.engine.trainer import FINAL_MODEL
from detaccel.models import build_detector
from detaccel.models.backbones import build_backbone
from tests.detector_configs import tiny_config, tiny_config_dict, tiny_dataset

pytest.importorskip("onnxruntime")


@pytest.mark.parametrize("stride", [8, 16])
def test_onnxruntime_maps_equal_eager_and_follow_the_weights(stride):
    torch.manual_seed(0)
    backbone = build_backbone(BackboneConfig(name="small", width=8, stride=stride)).eval()
    images = torch.randn(2, 3, 40, 56)
    names = ["stride8"] if stride == 16 else []
    with torch.no_grad():
        eager = backbone.forward_stages(images, names)
        backbone.set_runtime("onnxruntime")
        first = backbone.forward_stages(images, names)
        other = backbone.forward_stages(torch.randn(1, 3, 72, 96), names)  # another size, same graph
        assert set(first) == set(eager)
        for name, value in eager.items():
            torch.testing.assert_close(first[name], value, atol=1e-4, rtol=1e-4)
        assert other["out"].shape[-2:] == (72 // stride, 96 // stride)
        backbone.body[0].weight.mul_(2.0)  # a changed weight is exported again
        changed = backbone.forward_stages(images, names)["out"]
        backbone.set_runtime("torch")
        expected = backbone.forward_stages(images, names)["out"]
        torch.testing.assert_close(changed, expected, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(changed, eager["out"], atol=1e-3)
    # Training and gradients always run eagerly.
    backbone.set_runtime("onnxruntime")
    assert backbone(images).requires_grad


def test_a_detector_detects_the_same_in_onnxruntime(tmp_path):
    data = tiny_dataset(tmp_path / "data")
    config = tiny_config(data, "fast_rcnn", train={"max_iter": 2})
    Trainer(config, tmp_path / "out", DistInfo(), progress=False).train()
    checkpoint = str(tmp_path / "out" / FINAL_MODEL)
    from detaccel.engine.loading import load_detector

    _, eager, _ = load_detector(checkpoint)
    _, onnx, _ = load_detector(checkpoint, overrides=["backbone.runtime=onnxruntime"])
    assert onnx.backbone.runtime == "onnxruntime"
    image = read_image(next(data.rglob("*.jpg")))
    (a,), (b,) = eager.predict(image), onnx.predict(image)
    np.testing.assert_array_equal(a.proposals, b.proposals)
    torch.testing.assert_close(b.scores, a.scores, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(b.boxes, a.boxes, atol=1e-2, rtol=1e-4)
    # The command line takes it too.
    out = tmp_path / "detections"
    assert main(["detect", "--checkpoint", checkpoint, "--runtime", "onnxruntime", "--out", str(out),
                 str(next(data.rglob("*.jpg")))]) == 0  # fmt: skip


def test_an_unknown_runtime_is_refused(tmp_path):
    with pytest.raises(ConfigError, match=r"'backbone.runtime': 'tensorrt' is not one of torch, onnxruntime"):
        config_from_dict(tiny_config_dict(tmp_path, backbone={"runtime": "tensorrt"}))
    model = build_detector(config_from_dict(tiny_config_dict(tmp_path)), 3)
    with pytest.raises(ValueError, match="runtime: expected one of torch, onnxruntime"):
        model.backbone.set_runtime("tvm")
