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
from tests.detector_configs import LEARNED_R2CNN, tiny_config, tiny_dataset

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """``(checkpoint, export directory, data root)`` of a tiny Fast R-CNN with R²-CNN's learned head."""
    root = tmp_path_factory.mktemp("exported")
    data = tiny_dataset(root / "data")
    config = tiny_config(
        data,
        "fast_rcnn",
        backbone={"name": "small", "width": 8, "stride": 16},
        proposals=LEARNED_R2CNN,
        head={"fc_dims": [32, 16], "dropout": 0.5, "svd_ranks": {"fc6": 4}},
        train={"max_iter": 10},
        # Every (box, class) kept: a barely trained head ties its scores, and NMS among near-ties would
        # pick by rounding; the graphs' numerics are what these tests compare.
        eval={"score_threshold": 0.0, "nms_threshold": 1.0, "max_per_image": 1000},
    )
    Trainer(config, root / "out", DistInfo(), progress=False).train()
    checkpoint = root / "out" / FINAL_MODEL
    assert main(["export", str(checkpoint), "-o", str(root / "export")]) == 0
    return checkpoint, root / "export", data


def test_export_writes_graphs_that_run_to_the_models_outputs(exported):
    checkpoint, out, _ = exported
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["graphs"]) == {"backbone.onnx", "objectness.onnx", "roi_features.onnx", "head.onnx"}
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
        features, class_logits, deltas, scores = head.run(None, {"pooled": pooled.numpy()})
        expected_features = model.head(pooled)
        expected_logits, expected_deltas = model.predictor(expected_features)
        expected_scores = model.predictor.detection_scores(expected_features, expected_logits)
    np.testing.assert_allclose(class_logits, expected_logits.numpy(), atol=1e-4)
    np.testing.assert_allclose(deltas, expected_deltas.numpy(), atol=1e-4)
    np.testing.assert_allclose(scores, expected_scores.numpy(), atol=1e-5)
    assert features.shape == (33, 16)


@pytest.mark.parametrize("kind", ["roi_pool", "spp", "roi_align"])
def test_the_roi_features_graph_pools_in_onnx_operators_as_the_projects_operators(tmp_path, kind):
    """RoI pooling is in the export as ONNX's own MaxRoiPool (Fast R-CNN, each SPP level) or RoiAlign,
    to the project's operators' features (any number of RoIs, any map size)."""
    import onnx

    from detaccel.engine.export import export_detector
    from detaccel.models import build_detector

    config = tiny_config(tiny_dataset(tmp_path / "data"), "sppnet" if kind == "spp" else "fast_rcnn")
    config.roi_features.type = kind
    model = build_detector(config, 3, ["a", "b", "c"]).eval()
    export_detector(model, config, tmp_path / "export")
    graph = onnx.load(str(tmp_path / "export" / "roi_features.onnx"))
    operators = {node.op_type for node in graph.graph.node}
    assert ("RoiAlign" if kind == "roi_align" else "MaxRoiPool") in operators
    session = ort.InferenceSession(
        str(tmp_path / "export" / "roi_features.onnx"), providers=["CPUExecutionProvider"]
    )
    feature_map = torch.randn(2, model.backbone.out_channels, 11, 13)
    rois = torch.tensor([[0, 0.0, 0.0, 103.0, 87.0], [1, 5.5, 7.25, 40.0, 30.0], [0, 60.0, 10.0, 61.0, 12.0]])
    (pooled,) = session.run(None, {"map": feature_map.numpy(), "rois": rois.numpy()})
    with torch.no_grad():
        expected = model.roi_features.pool(feature_map, rois, model.backbone)
    np.testing.assert_allclose(pooled, expected.numpy(), atol=1e-5)


def test_an_int8_head_is_refused_with_what_to_export_instead(tmp_path):
    from detaccel.compression.candidates import LayerChoice, compressed_copy
    from detaccel.engine.export import ExportError, export_detector
    from detaccel.models import build_detector

    config = tiny_config(tiny_dataset(tmp_path / "data"))
    model = build_detector(config, 3, ["a", "b", "c"]).eval()
    quantised, _, _ = compressed_copy(model, {"fc6": LayerChoice(int8=True)})
    with pytest.raises(ExportError, match=r"hold int8 weights.*--int8-backbone"):
        export_detector(quantised, config, tmp_path / "export")


def _detection_order(detection):
    return detection["label"], -round(detection["score"], 3), detection["box"]  # ties in any order


def _detections(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_detect_from_the_export_directory_alone_writes_the_eager_detections(exported, tmp_path, capsys):
    """The export directory is a model: ``detect --checkpoint DIR`` on a folder gives the checkpoint's
    detections (boxes within 0.05 px, scores within 1e-4), every weight read from the graphs."""
    checkpoint, out, data = exported
    images = next(data.glob("VOCdevkit/*/JPEGImages"))
    runs = {}
    for name, model_path in (("eager", checkpoint), ("exported", out)):
        target = tmp_path / name
        args = ["detect", str(images), "--checkpoint", str(model_path), "--out", str(target)]
        assert main([*args, "--score-threshold", "0", "--no-progress"]) == 0
        runs[name] = _detections(target / "detections.jsonl")
    assert len(runs["eager"]) == len(list(images.glob("*.jpg"))) > 0
    assert sum(len(r["detections"]) for r in runs["eager"]) > 0
    for eager, exported_record in zip(runs["eager"], runs["exported"], strict=True):
        assert eager["image"] == exported_record["image"]
        assert eager["proposals"] == exported_record["proposals"]
        assert len(eager["detections"]) == len(exported_record["detections"])
        ordered = [sorted(r["detections"], key=_detection_order) for r in (eager, exported_record)]
        for a, b in zip(*ordered, strict=True):
            assert a["label"] == b["label"]
            np.testing.assert_allclose(a["box"], b["box"], atol=0.05)
            assert abs(a["score"] - b["score"]) <= 1e-4
    _, model, _ = load_detector(str(out))
    assert model.backbone.exported and model.backbone.runtime == "onnxruntime"
    with pytest.raises(RuntimeError, match="exported ONNX graph"):
        model.backbone(torch.zeros(1, 3, 32, 32, requires_grad=True) * 1)  # gradients: no graph for them
    assert main(["detect", str(images), "--checkpoint", str(out), "--out", str(tmp_path / "t"),
                 "--runtime", "torch"]) == 2  # fmt: skip
    assert "exported ONNX graph" in capsys.readouterr().err


def test_eval_on_the_export_directory_scores_as_the_checkpoint(exported, tmp_path):
    checkpoint, out, _ = exported
    metrics = {}
    for name, model_path in (("eager", checkpoint), ("exported", out)):
        assert (
            main(["eval", "--checkpoint", str(model_path), "--out", str(tmp_path / name), "--no-progress"])
            == 0
        )
        metrics[name] = json.loads((tmp_path / name / "eval.json").read_text())["metrics"]
    for metric, result in metrics["eager"].items():
        key = "AP" if metric == "coco" else "mAP"
        assert abs(result[key] - metrics["exported"][metric][key]) <= 0.002, metric


@pytest.mark.parametrize(
    ("damage", "named", "message"),
    [
        ("manifest_json", "manifest.json", "not a readable JSON manifest"),
        ("manifest_keys", "manifest.json", "incomplete manifest (no config)"),
        ("head_bytes", "head.onnx", "SHA-256 differs"),
        ("objectness_missing", "objectness.onnx", "missing"),
        ("backbone_other", "backbone.onnx", "SHA-256 differs"),
    ],
)
def test_a_corrupt_or_mismatched_export_is_refused_naming_the_file(
    exported, tmp_path, capsys, damage, named, message
):
    import shutil

    _, out, data = exported
    broken = tmp_path / "broken"
    shutil.copytree(out, broken)
    manifest = broken / "manifest.json"
    if damage == "manifest_json":
        manifest.write_text(manifest.read_text()[:-40])
    elif damage == "manifest_keys":
        content = json.loads(manifest.read_text())
        del content["config"]
        manifest.write_text(json.dumps(content))
    elif damage == "head_bytes":
        blob = bytearray((broken / "head.onnx").read_bytes())
        blob[len(blob) // 2] ^= 0xFF
        (broken / "head.onnx").write_bytes(bytes(blob))
    elif damage == "objectness_missing":
        (broken / "objectness.onnx").unlink()
    else:  # another detector's backbone graph in its place
        shutil.copy(out / "objectness.onnx", broken / "backbone.onnx")
    images = next(data.glob("VOCdevkit/*/JPEGImages"))
    args = ["detect", str(images), "--checkpoint", str(broken), "--out", str(tmp_path / "d")]
    assert main(args) == 2
    error = capsys.readouterr().err
    assert str(broken / named) in error and message in error
    assert not (tmp_path / "d").exists()  # refused before anything was written


def test_export_refuses_rcnn_and_a_missing_checkpoint(tmp_path, capsys):
    assert main(["export", str(tmp_path / "none.pth"), "-o", str(tmp_path / "x")]) == 2
    assert "no such file" in capsys.readouterr().err
    data = tiny_dataset(tmp_path / "data")
    config = tiny_config(data, "rcnn", train={"max_iter": 1})
    Trainer(config, tmp_path / "out", DistInfo(), progress=False).train()
    assert main(["export", str(tmp_path / "out" / FINAL_MODEL), "-o", str(tmp_path / "x")]) == 2
    assert "R-CNN runs the backbone on every warped region" in capsys.readouterr().err


@pytest.fixture(scope="module")
def detecting(tmp_path_factory):
    """A tiny Fast R-CNN trained until it finds objects (40 synthetic images): its checkpoint."""
    root = tmp_path_factory.mktemp("detecting")
    data = tiny_dataset(root / "data", num_images=40)
    config = tiny_config(
        data,
        "fast_rcnn",
        backbone={"name": "small", "width": 16, "stride": 8},
        train={"max_iter": 1500, "base_lr": 0.02, "steps": [1100], "checkpoint_period": 10000},
    )
    Trainer(config, root / "out", DistInfo(), progress=False).train()
    return root / "out" / FINAL_MODEL


def _voc07(tmp_path, model_path, name):
    evaluated = tmp_path / f"eval_{name}"
    assert main(["eval", "--checkpoint", str(model_path), "--out", str(evaluated), "--no-progress"]) == 0
    return json.loads((evaluated / "eval.json").read_text())["metrics"]["voc07"]["mAP"]


def test_int8_backbone_holds_the_float_exports_map(detecting, tmp_path, capsys):
    """``--int8-backbone``: the backbone graph in int8 (calibrated on training images) keeps the float
    export's mAP within 0.01 on a tiny detector trained until it finds objects."""
    maps = {}
    for name, extra in (("float32", []), ("int8", ["--int8-backbone", "8"])):
        assert main(["export", str(detecting), "-o", str(tmp_path / name), *extra]) == 0
        manifest = json.loads((tmp_path / name / "manifest.json").read_text())
        assert manifest["backbone_precision"]["precision"] == name
        maps[name] = _voc07(tmp_path, tmp_path / name, name)
    assert "int8, calibrated on 8 training images" in capsys.readouterr().out
    assert manifest["backbone_precision"]["worst_cosine"] >= 0.9
    assert maps["float32"] > 0.02  # it detects something, so the comparison means something
    assert abs(maps["int8"] - maps["float32"]) <= 0.01, maps


def test_search_exports_the_fastest_form_within_the_budget(detecting, tmp_path, capsys):
    """``--search``: every precision x scale x cap scored on the validation split; the export is the
    fastest within the budget of the float export as configured, with its settings in the manifest."""
    out = tmp_path / "deployed"
    args = ["export", str(detecting), "-o", str(out), "--search", "2", "--val-split", "val",
            "--int8-backbone", "8", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    assert "chosen:" in capsys.readouterr().out
    result = json.loads((out / "search.json").read_text())
    candidates = result["candidates"]
    assert {c["precision"] for c in candidates} == {"float32", "int8"}
    assert {c["test_scale"] for c in candidates} == {72, 64} and {c["max_test"] for c in candidates} >= {100}
    reference, chosen = result["reference"], result["chosen"]
    assert (reference["precision"], reference["test_scale"]) == ("float32", 72)
    assert chosen["voc07_mAP"] >= reference["voc07_mAP"] - 0.02
    within = [c for c in candidates if c["voc07_mAP"] >= reference["voc07_mAP"] - 0.02]
    assert chosen["seconds_per_image"] == min(c["seconds_per_image"] for c in within)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["backbone_precision"]["precision"] == chosen["precision"]
    assert manifest["config"]["data"]["test_scale"] == chosen["test_scale"]
    assert manifest["config"]["proposals"]["max_test"] == chosen["max_test"]
    assert not (out / "search").exists()
    assert (
        main(["export", str(detecting), "-o", str(tmp_path / "x"), "--search", "1", "--val-split", "test"])
        == 2
    )
    assert "is the test split" in capsys.readouterr().err
