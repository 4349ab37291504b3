"""Typical training-box shapes and R²-CNN's local search around each box with them."""

from __future__ import annotations

import numpy as np
import pytest

from detaccel.data.records import ImageRecord
from detaccel.engine import DistInfo, Trainer
from detaccel.engine.loading import load_detector
from detaccel.engine.trainer import FINAL_MODEL
from detaccel.proposals.box_shapes import resolve_shapes, shapes_at_scale, training_box_shapes, typical_shapes
from detaccel.proposals.r2cnn import R2CNN, local_search
from tests.detector_configs import tiny_config, tiny_dataset


def test_two_size_clusters_give_their_centres_by_area():
    rng = np.random.default_rng(0)
    small = np.exp(rng.normal(np.log([20.0, 10.0]), 0.05, size=(50, 2)))
    large = np.exp(rng.normal(np.log([200.0, 300.0]), 0.05, size=(30, 2)))
    shapes = typical_shapes(np.concatenate([large, small]), 2)
    np.testing.assert_allclose(shapes, [(20.0, 10.0), (200.0, 300.0)], rtol=0.03)
    assert typical_shapes(np.concatenate([large, small]), 2) == shapes  # deterministic
    assert len(typical_shapes(np.array([[5.0, 5.0], [5.0, 5.0]]), 3)) == 1  # one distinct size
    with pytest.raises(ValueError, match="positive"):
        typical_shapes(np.array([[0.0, 4.0]]), 2)
    with pytest.raises(ValueError, match="at least 1"):
        typical_shapes(small, 0)


def _record(width: int, height: int, boxes: list[list[float]]) -> ImageRecord:
    n = len(boxes)
    return ImageRecord(
        "a", "a.jpg", width, height, np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
        np.zeros(n, np.int64), np.zeros(n, bool), np.zeros(n, bool),
    )  # fmt: skip


def test_training_shapes_are_measured_in_resized_pixels():
    # A 200x100 image resized to shorter side 50 (factor 0.5): a 40x20 box becomes 20x10.
    records = [_record(200, 100, [[0, 0, 39, 19]]), _record(10, 10, [])]
    assert training_box_shapes(records, 50, 1000, 1) == ((20.0, 10.0),)
    with pytest.raises(ValueError, match="no boxes"):
        training_box_shapes([_record(10, 10, [])], 50, 1000, 1)


def test_resolve_shapes_replaces_auto_only():
    records = [_record(100, 100, [[0, 0, 9, 19]])]
    params = {"shapes": "auto", "num_shapes": 1}
    assert resolve_shapes(params, records, 100, 1000)
    assert params == {"shapes": [[10.0, 20.0]], "shapes_scale": 100}
    native = {"shapes": "auto", "num_shapes": 1}
    assert resolve_shapes(native, [_record(200, 100, [[0, 0, 39, 19]])], None, None)
    assert native == {"shapes": [[40.0, 20.0]]}  # the images' own pixels, no scale recorded
    assert not resolve_shapes({"num_levels": 4}, records, 100, 1000)
    with pytest.raises(ValueError, match="needs shapes: auto"):
        resolve_shapes({"num_shapes": 2}, records, 100, 1000)
    with pytest.raises(ValueError, match="integer"):
        resolve_shapes({"shapes": "auto", "num_shapes": 1.5}, records, 100, 1000)


def test_shapes_follow_the_input_scale():
    params = {"shapes": [[10.0, 20.0], [30.0, 30.0]], "shapes_scale": 200, "num_levels": 4}
    assert shapes_at_scale(params, 100) == {"shapes": [[5.0, 10.0], [15.0, 15.0]], "num_levels": 4}
    assert shapes_at_scale(params, 200)["shapes"] == params["shapes"]
    assert shapes_at_scale(params, None)["shapes"] == params["shapes"]  # unknown input size: as they are
    assert "shapes_scale" in params  # the caller's parameters are left alone
    with pytest.raises(ValueError, match="shapes_scale"):
        shapes_at_scale({"shapes": [[1.0, 1.0]], "shapes_scale": 0}, 100)


def test_local_search_centres_each_shape_on_each_box():
    boxes = local_search([[10, 10, 19, 29]], scale_factors=[(2.0, 1.0)], shapes=[(4.0, 6.0)])
    np.testing.assert_allclose(
        boxes,
        [[10, 10, 19, 29], [5, 10, 24, 29], [13, 17, 16, 22]],  # centre (14.5, 19.5)
    )
    with pytest.raises(ValueError, match="resolved from the training boxes"):
        R2CNN(backbone=None, receptive_field=(8, 0, 8), shapes="auto")
    with pytest.raises(ValueError, match="shapes"):
        R2CNN(backbone=None, receptive_field=(8, 0, 8), shapes=[(4.0, -1.0)])


def test_a_detector_trained_with_auto_shapes_saves_them(tmp_path):
    data = tiny_dataset(tmp_path / "data")
    proposals = {"name": "r2cnn", "params": {"shapes": "auto", "num_shapes": 2, "num_levels": 4}}
    config = tiny_config(data, "fast_rcnn", proposals=proposals, train={"max_iter": 2})
    model = Trainer(config, tmp_path / "out", DistInfo(), progress=False).train()["model"]
    saved, loaded, _ = load_detector(str(tmp_path / "out" / FINAL_MODEL))
    shapes = saved.proposals.params["shapes"]
    assert len(shapes) == 2 and "num_shapes" not in saved.proposals.params
    assert shapes[0][0] * shapes[0][1] < shapes[1][0] * shapes[1][1]
    assert loaded.proposal_generator.generator.shapes == tuple(tuple(s) for s in shapes)
    assert model.proposal_generator.generator.shapes == loaded.proposal_generator.generator.shapes


def test_auto_shapes_are_rescaled_at_another_test_scale(tmp_path):
    data = tiny_dataset(tmp_path / "data")
    proposals = {"name": "r2cnn", "params": {"shapes": "auto", "num_shapes": 1, "num_levels": 4}}
    config = tiny_config(data, "fast_rcnn", proposals=proposals, train={"max_iter": 1})
    Trainer(config, tmp_path / "out", DistInfo(), progress=False).train()
    saved, model, _ = load_detector(str(tmp_path / "out" / FINAL_MODEL))
    assert saved.proposals.params["shapes_scale"] == saved.data.test_scale
    (trained,) = model.proposal_generator.generator.shapes
    _, halved, _ = load_detector(
        str(tmp_path / "out" / FINAL_MODEL), overrides=[f"data.test_scale={saved.data.test_scale // 2}"]
    )
    expected = np.multiply(trained, (saved.data.test_scale // 2) / saved.data.test_scale)
    np.testing.assert_allclose(halved.proposal_generator.generator.shapes[0], expected, atol=0.06)
    # The same model configured for another scale: rebuilt shapes, the same slot kind.
    saved.data.test_scale //= 2
    model.configure_inference(saved)
    np.testing.assert_allclose(model.proposal_generator.generator.shapes[0], expected, atol=0.06)
