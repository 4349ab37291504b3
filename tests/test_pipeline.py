"""The one detection pipeline: predict, the proposal slot, R²-CNN on the model's own features, detect."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
import yaml

from detaccel.cli import main
from detaccel.config import config_to_dict, load_config
from detaccel.data import read_image
from detaccel.data.classes import SYNTHETIC_CLASSES
from detaccel.data.transforms import batch_images
from detaccel.engine import DistInfo, Trainer
from detaccel.engine.loading import load_detector
from detaccel.engine.trainer import FINAL_MODEL
from detaccel.models import build_detector
from detaccel.models.proposal_generator import FeatureProposals, ImageProposals
from tests.detector_configs import tiny_config, tiny_dataset

R2CNN_OWN = {"name": "r2cnn", "params": {"num_levels": 6, "max_boxes_per_level": 20}, "max_test": 200}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A Fast R-CNN trained a few iterations on sliding windows: its checkpoint and config file."""
    root = tmp_path_factory.mktemp("pipeline")
    data = tiny_dataset(root / "data")
    config = tiny_config(data, "fast_rcnn", train={"max_iter": 6})
    Trainer(config, root / "model", DistInfo(), progress=False).train()
    config_path = root / "config.yaml"
    config_path.write_text(yaml.safe_dump(config_to_dict(config)))
    return root, data, root / "model" / FINAL_MODEL, config_path


def test_predict_equals_the_stages_written_out(trained):
    _, data, checkpoint, _ = trained
    _, model, class_names = load_detector(str(checkpoint))
    model.postprocess_options["score_threshold"] = 0.0
    image = read_image(next(data.rglob("*.jpg")))
    proposals = np.array([[2, 3, 40, 30], [10, 10, 80, 60], [0, 0, 95, 71]], np.float32)
    (prediction,) = model.predict(image, [proposals])
    # The same by hand: resize and normalise, conv map, RoI pooling, head, predictor, post-processing.
    (sample,) = model.test_transform(image)
    batch, _ = batch_images([torch.from_numpy(sample.image)], model.size_divisibility)
    with torch.no_grad():
        shared = model.shared_features(batch)
        boxes = torch.from_numpy(proposals)
        rois = torch.cat((torch.zeros(3, 1), boxes * sample.scale), dim=1)
        pooled = model.roi_features.pool(shared, rois, model.backbone)
        expected = model._detections(pooled, [boxes], [image.shape[:2]])[0]
    assert len(prediction.boxes) > 0
    for got, want in zip((prediction.boxes, prediction.scores, prediction.labels), expected, strict=True):
        torch.testing.assert_close(got, want)
    assert class_names == model.class_names and prediction.image_size == image.shape[:2]
    np.testing.assert_array_equal(prediction.proposals, proposals)


def test_predict_uses_the_configured_generator_and_rejects_bad_images(trained):
    _, data, checkpoint, _ = trained
    _, model, _ = load_detector(str(checkpoint))
    assert isinstance(model.proposal_generator, ImageProposals)
    image = read_image(next(data.rglob("*.jpg")))
    first, second = model.predict([image, image[:, ::-1].copy()])
    assert 0 < len(first.proposals) <= model.max_test
    assert (
        first.proposals[:, 2].max() <= image.shape[1] - 1
        and first.proposals[:, 3].max() <= image.shape[0] - 1
    )
    assert len(second.proposals) == len(first.proposals)
    with pytest.raises(ValueError, match="RGB uint8"):
        model.predict(image.astype(np.float32))
    with pytest.raises(ValueError, match="2 images but 1 proposals"):
        model.predict([image, image], proposals=[None])


def test_r2cnn_on_the_models_own_features_trains_and_evaluates(tmp_path):
    data = tiny_dataset(tmp_path / "data")
    config = tiny_config(
        data, "fast_rcnn", proposals=R2CNN_OWN, train={"max_iter": 3, "eval_after_training": True}
    )
    calls = []
    result = Trainer(config, tmp_path / "out", DistInfo(), progress=False).train()
    model = result["model"]
    assert isinstance(model.proposal_generator, FeatureProposals)
    assert model.proposal_generator.stage == "out"
    assert 0.0 <= result["eval"]["metrics"]["voc07"]["mAP"] <= 1.0
    # Nothing cached: the proposals depend on the weights.
    assert not (data / "proposals").exists()
    # One backbone pass per image gives both the RoI map and the proposals.
    model.backbone.register_forward_hook(lambda *args: calls.append(1))
    image = read_image(next(data.rglob("*.jpg")))
    (prediction,) = model.predict(image)
    assert calls == [1]
    assert 0 < len(prediction.proposals) <= 200
    assert prediction.proposals.min() >= 0
    assert prediction.proposals[:, 2].max() <= image.shape[1] - 1


def test_r2cnn_on_a_finer_stage_trains_and_predicts(tmp_path):
    """``layer: stride8`` on a stride-16 backbone: one backbone pass gives the RoI map and the stride-8
    map that a learned head (a member of the detector) reads."""
    data = tiny_dataset(tmp_path / "data")
    params = {**R2CNN_OWN["params"], "layer": "stride8", "reduction": "objectness"}
    config = tiny_config(
        data,
        "fast_rcnn",
        backbone={"name": "small", "width": 8, "stride": 16},
        proposals={**R2CNN_OWN, "params": params},
        train={"max_iter": 3},
    )
    model = Trainer(config, tmp_path / "out", DistInfo(), progress=False).train()["model"].eval()
    source = model.proposal_generator
    assert source.stage == "stride8" and model.objectness.stage == "stride8"
    assert source.generator.field[0].stride == 8
    assert model.objectness.in_channels == model.backbone.stage_channels("stride8")
    assert "'stride8' map" in source.describe()
    batch = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        maps = model.backbone.forward_stages(batch, ["stride8"])
        shared, proposal_map = model._maps(batch)
    torch.testing.assert_close(proposal_map, maps["stride8"])
    torch.testing.assert_close(shared, maps["out"])
    calls = []
    model.backbone.register_forward_hook(lambda *args: calls.append(1))
    stage_calls = []
    forward_stages = model.backbone.forward_stages
    model.backbone.forward_stages = lambda *a, **k: stage_calls.append(1) or forward_stages(*a, **k)
    image = read_image(next(data.rglob("*.jpg")))
    (prediction,) = model.predict(image)
    assert calls == [] and stage_calls == [1]  # one pass for the RoI map and the proposal map
    assert 0 < len(prediction.proposals) <= 200
    assert prediction.proposals.min() >= 0 and prediction.proposals[:, 2].max() <= image.shape[1] - 1
    _, loaded, _ = load_detector(str(tmp_path / "out" / FINAL_MODEL))
    np.testing.assert_array_equal(loaded.predict(image)[0].proposals, prediction.proposals)
    # The head was trained on the stride-8 map: reading another stage with it is refused.
    with pytest.raises(ValueError, match="layer='out'"):
        loaded.set_proposal_generator("r2cnn", {**params, "layer": "out"})


@pytest.mark.parametrize(
    ("layer", "message"),
    [
        (["stride8", "out"], "one stage name"),
        ("stride32", "stride32"),
    ],
)
def test_bad_r2cnn_layers_are_refused(tmp_path, layer, message):
    data = tiny_dataset(tmp_path / "data")
    proposals = {**R2CNN_OWN, "params": {**R2CNN_OWN["params"], "layer": layer}}
    with pytest.raises(ValueError, match=message):
        build_detector(tiny_config(data, "fast_rcnn", proposals=proposals), 3)


def test_r2cnn_on_features_changes_with_the_weights(tmp_path):
    data = tiny_dataset(tmp_path / "data")
    config = tiny_config(data, "fast_rcnn", proposals=R2CNN_OWN)
    image = read_image(next(data.rglob("*.jpg")))
    torch.manual_seed(0)
    first = build_detector(config, 3).eval().predict(image)[0].proposals
    torch.manual_seed(1)
    second = build_detector(config, 3).eval().predict(image)[0].proposals
    torch.manual_seed(0)
    again = build_detector(config, 3).eval().predict(image)[0].proposals
    np.testing.assert_array_equal(first, again)
    assert first.shape != second.shape or not np.array_equal(first, second)


def test_rcnn_cannot_train_on_its_own_features(tmp_path):
    data = tiny_dataset(tmp_path / "data")
    config = tiny_config(data, "rcnn", proposals=R2CNN_OWN)
    with pytest.raises(ValueError, match="R-CNN samples its training regions"):
        Trainer(config, tmp_path / "out", DistInfo(), progress=False).train()


def test_eval_with_another_generator(trained, tmp_path, capsys):
    _, _, checkpoint, _ = trained
    code = main(
        [
            "eval",
            "--checkpoint",
            str(checkpoint),
            "--generator",
            "r2cnn",
            "--out",
            str(tmp_path),
            "--no-progress",
        ]
    )
    assert code == 0
    report = json.loads((tmp_path / "eval.json").read_text())
    assert 0.0 <= report["metrics"]["voc07"]["mAP"] <= 1.0
    assert main(["eval", "--checkpoint", str(checkpoint), "--generator", "nonesuch"]) == 2
    assert "unknown proposal generator 'nonesuch'" in capsys.readouterr().err


def test_set_without_config_changes_the_checkpoints_own_configuration(trained, tmp_path, capsys):
    _, _, checkpoint, config_path = trained
    overrides = ["eval.refine_passes=2", "eval.max_per_image=7"]
    config, model, _ = load_detector(str(checkpoint), overrides=overrides)
    assert (model.refine_passes, config.eval.max_per_image) == (2, 7)
    assert model.postprocess_options["max_per_image"] == 7
    _, plain, _ = load_detector(str(checkpoint))
    assert plain.refine_passes == 0
    with pytest.raises(ValueError, match="not both"):
        load_detector(str(checkpoint), load_config(str(config_path)), ["eval.max_per_image=7"])
    args = ["eval", "--checkpoint", str(checkpoint), "--out", str(tmp_path), "--no-progress"]
    assert main([*args, "--set", "eval.max_per_image=1"]) == 0
    report = json.loads((tmp_path / "eval.json").read_text())
    assert sum(report["metrics"]["voc07"]["num_detections"].values()) <= report["images"]
    assert main([*args, "--set", "eval.refine_passes=-1"]) == 2
    assert "refine_passes" in capsys.readouterr().err


def test_detect_on_a_folder_with_a_corrupt_file(trained, tmp_path, capsys):
    _, data, checkpoint, _ = trained
    inputs = tmp_path / "in"
    inputs.mkdir()
    images = sorted(data.rglob("*.jpg"))[:2]
    for path in images:
        (inputs / path.name).write_bytes(path.read_bytes())
    (inputs / "broken.jpg").write_bytes(images[0].read_bytes()[:200])
    (inputs / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    code = main(
        ["detect", "--checkpoint", str(checkpoint), str(inputs), "--out", str(out), "--score-threshold", "0",
         "--show-proposals", "5", "--no-progress"]
    )  # fmt: skip
    assert code == 1
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "could not be read" in err
    written = sorted(p.name for p in out.glob("*.jpg"))
    assert written == sorted(p.name for p in images)
    lines = [json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()]
    assert len(lines) == 2
    for line in lines:
        assert line["proposals"] > 0 and line["width"] == 96 and line["height"] == 72
        assert {"decode", "preprocess", "backbone", "proposals", "total"} <= set(line["stage_ms"])
        for detection in line["detections"]:
            assert detection["label"] in SYNTHETIC_CLASSES
            x1, y1, x2, y2 = detection["box"]
            assert 0 <= x1 <= x2 <= 95 and 0 <= y1 <= y2 <= 71
    drawn = cv2.imread(str(out / images[0].name))
    assert drawn.shape == (72, 96, 3)
    assert not np.array_equal(cv2.cvtColor(drawn, cv2.COLOR_BGR2RGB), read_image(images[0]))


def test_detect_reads_a_video_frame_by_frame(trained, tmp_path):
    _, data, checkpoint, _ = trained
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (96, 72))
    assert writer.isOpened()
    for path in sorted(data.rglob("*.jpg"))[:3]:
        writer.write(cv2.imread(str(path)))
    writer.release()
    out = tmp_path / "out"
    assert (
        main(["detect", "--checkpoint", str(checkpoint), str(video), "--out", str(out), "--no-progress"]) == 0
    )
    lines = [json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()]
    assert [line["frame"] for line in lines] == [0, 1, 2]
    assert sorted(p.name for p in out.glob("*.jpg")) == [f"clip_{i:06d}.jpg" for i in range(3)]


def test_detect_input_errors(trained, tmp_path, capsys):
    _, _, checkpoint, _ = trained
    assert (
        main(["detect", "--checkpoint", str(checkpoint), str(tmp_path / "none.jpg"), "--out", str(tmp_path)])
        == 2
    )
    assert "no such file or folder" in capsys.readouterr().err
    assert (
        main(["detect", "--checkpoint", str(checkpoint), str(tmp_path / "*.png"), "--out", str(tmp_path)])
        == 2
    )
    assert "pattern matches no file" in capsys.readouterr().err
