"""``detaccel export``: the dense parts as ONNX graphs that ONNX Runtime runs to the model's outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from detaccel.cli import main
from detaccel.engine import DistInfo, Trainer
from detaccel.engine.loading import load_detector
from detaccel.engine.trainer import FINAL_MODEL
from tests.detector_configs import tiny_config, tiny_dataset

ort = pytest.importorskip("onnxruntime")

LEARNED = {
    "name": "r2cnn",
    "params": {"reduction": "objectness", "objectness_channels": 8, "objectness_boxes": True,
               "layer": "stride8", "ranking": "contrast", "num_levels": 6},
    "max_test": 100,
}  # fmt: skip


def test_export_writes_graphs_that_run_to_the_models_outputs(tmp_path, capsys):
    data = tiny_dataset(tmp_path / "data")
    config = tiny_config(
        data,
        "fast_rcnn",
        backbone={"name": "small", "width": 8, "stride": 16},
        proposals=LEARNED,
        head={"fc_dims": [32, 16], "dropout": 0.5, "svd_ranks": {"fc6": 4}},
        train={"max_iter": 2},
    )
    Trainer(config, tmp_path / "out", DistInfo(), progress=False).train()
    checkpoint = str(tmp_path / "out" / FINAL_MODEL)
    out = tmp_path / "export"
    assert main(["export", checkpoint, "-o", str(out)]) == 0
    assert "head.onnx: largest difference" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["graphs"]) == {"backbone.onnx", "objectness.onnx", "head.onnx"}
    assert manifest["backbone_outputs"] == ["out", "stride8"] and manifest["objectness_stage"] == "stride8"
    assert manifest["proposals"]["params"]["reduction"] == "objectness" and manifest["opset"] >= 17
    _, model, _ = load_detector(checkpoint)
    images = torch.randn(2, 3, 48, 80)  # another size than the example it was exported with
    backbone = ort.InferenceSession(str(out / "backbone.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        maps = model.backbone.forward_stages(images, ["stride8"])
        out_map, stride8 = backbone.run(None, {"images": images.numpy()})
        np.testing.assert_allclose(out_map, maps["out"].numpy(), atol=1e-4)
        np.testing.assert_allclose(stride8, maps["stride8"].numpy(), atol=1e-4)
        objectness = ort.InferenceSession(str(out / "objectness.onnx"), providers=["CPUExecutionProvider"])
        (logits,) = objectness.run(None, {"map": stride8})
        np.testing.assert_allclose(logits, model.objectness(maps["stride8"]).numpy(), atol=1e-4)
        pooled = torch.randn(33, model.roi_features.output_dim)
        head = ort.InferenceSession(str(out / "head.onnx"), providers=["CPUExecutionProvider"])
        features, class_logits, deltas = head.run(None, {"pooled": pooled.numpy()})
        expected_features = model.head(pooled)
        expected_logits, expected_deltas = model.predictor(expected_features)
    np.testing.assert_allclose(class_logits, expected_logits.numpy(), atol=1e-4)
    np.testing.assert_allclose(deltas, expected_deltas.numpy(), atol=1e-4)
    assert features.shape == (33, 16)


def test_export_refuses_rcnn_and_a_missing_checkpoint(tmp_path, capsys):
    assert main(["export", str(tmp_path / "none.pth"), "-o", str(tmp_path / "x")]) == 2
    assert "no such file" in capsys.readouterr().err
    data = tiny_dataset(tmp_path / "data")
    config = tiny_config(data, "rcnn", train={"max_iter": 1})
    Trainer(config, tmp_path / "out", DistInfo(), progress=False).train()
    assert main(["export", str(tmp_path / "out" / FINAL_MODEL), "-o", str(tmp_path / "x")]) == 2
    assert "R-CNN runs the backbone on every warped region" in capsys.readouterr().err
