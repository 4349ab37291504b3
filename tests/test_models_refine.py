"""Test-time box refinement: proposals moved by the learned regression and pooled again."""

import numpy as np
import pytest
import torch

from detaccel.config import config_from_dict
from detaccel.models import build_detector
from tests.detector_configs import tiny_config_dict


def _detector(tmp_path, refine_passes=0):
    config = config_from_dict(tiny_config_dict(tmp_path, eval={"refine_passes": refine_passes}))
    model = build_detector(config, num_classes=2).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        predictor = model.predictor
        predictor.cls_score.weight.zero_()
        predictor.cls_score.bias.copy_(torch.tensor([0.0, 0.0, 5.0]))  # class 2 (index 1) always wins
        predictor.bbox_pred.weight.zero_()
        bias = torch.zeros(12)
        bias[4:8] = torch.tensor([0.5, 0.0, 0.0, 0.0])  # class 1: half a width to the right (ignored)
        bias[8:12] = torch.tensor([0.0, 0.25, 0.0, 0.0])  # class 2: a quarter height down
        predictor.bbox_pred.bias.copy_(bias * torch.tensor(model.box_weights).repeat(3))
    return model


def test_refine_moves_each_box_by_its_top_class_and_clips(tmp_path):
    model = _detector(tmp_path)
    boxes = [torch.tensor([[10.0, 8.0, 29.0, 27.0], [0.0, 40.0, 19.0, 71.0]])]
    maps = [model.shared_features(torch.zeros(1, 3, 72, 96))]
    pooled = model.pool_on_maps(maps, [[1.0]], boxes, [(72, 96)])
    (moved,) = model.refine_proposals(pooled, boxes, [(72, 96)])
    # A 20x20 box moved down by 5 pixels; a 20x32 box by 8, clipped at the bottom row (71).
    torch.testing.assert_close(moved, torch.tensor([[10.0, 13.0, 29.0, 32.0], [0.0, 48.0, 19.0, 71.0]]))


def test_predict_scores_the_refined_boxes(tmp_path):
    image = np.random.default_rng(0).integers(0, 255, (72, 96, 3), dtype=np.uint8)
    proposals = np.array([[10.0, 8.0, 29.0, 27.0], [40.0, 10.0, 79.0, 39.0]], dtype=np.float32)
    plain = _detector(tmp_path)
    (first,) = plain.predict(image, [proposals])
    np.testing.assert_array_equal(first.proposals, proposals)
    refined = _detector(tmp_path, refine_passes=2)
    (second,) = refined.predict(image, [proposals])
    # Two passes: down by a quarter height twice (20 px boxes: 5 + 5, 30 px boxes: 7.5 + 7.5).
    np.testing.assert_allclose(
        second.proposals, [[10.0, 18.0, 29.0, 37.0], [40.0, 25.0, 79.0, 54.0]], atol=1e-4
    )
    # The detections are the second pass's regression applied to the refined boxes.
    top = second.boxes[second.scores.argmax()]
    assert float(top[1]) > float(first.boxes[first.scores.argmax()][1])


def test_negative_refine_passes_is_an_error(tmp_path):
    with pytest.raises(ValueError, match=r"'eval\.refine_passes'"):
        _detector(tmp_path, refine_passes=-1)
