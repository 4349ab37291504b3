import pytest
import torch
import torchvision

from detaccel import ops
from detaccel.ops.reference import nms_reference
from tests.helpers import random_boxes


def distinct_scores(n):
    return torch.randperm(n).float() / n


@pytest.mark.parametrize("threshold", [0.0, 0.3, 0.5, 0.7, 1.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_nms_equals_torchvision_and_reference(threshold, dtype):
    boxes = random_boxes(300).to(dtype)
    scores = distinct_scores(300).to(dtype)
    keep = ops.nms(boxes, scores, threshold)
    assert keep.dtype == torch.int64
    assert torch.equal(keep, torchvision.ops.nms(boxes, scores, threshold))
    assert torch.equal(keep, nms_reference(boxes, scores, threshold))


@pytest.mark.parametrize("threshold", [0.3, 0.6])
def test_batched_nms_equals_torchvision(threshold):
    boxes = random_boxes(400)
    scores = distinct_scores(400)
    idxs = torch.randint(0, 5, (400,))
    keep = ops.batched_nms(boxes, scores, idxs, threshold)
    assert torch.equal(keep, torchvision.ops.batched_nms(boxes, scores, idxs, threshold))
    assert torch.equal(keep, nms_reference(boxes, scores, threshold, idxs))


def test_boxes_of_other_classes_do_not_suppress():
    boxes = torch.tensor([[0, 0, 10, 10.0], [0, 0, 10, 10], [1, 1, 10, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert ops.nms(boxes, scores, 0.5).tolist() == [0]
    assert ops.batched_nms(boxes, scores, torch.tensor([0, 1, 0]), 0.5).tolist() == [0, 1]


def test_equal_scores_keep_input_order():
    boxes = torch.tensor([[0, 0, 1, 1.0], [5, 5, 6, 6], [10, 10, 11, 11]])
    assert ops.nms(boxes, torch.ones(3), 0.5).tolist() == [0, 1, 2]


def test_empty_and_half_precision_inputs():
    assert ops.nms(torch.zeros(0, 4), torch.zeros(0), 0.5).shape == (0,)
    assert ops.batched_nms(
        torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5
    ).shape == (0,)
    boxes = random_boxes(50)
    scores = distinct_scores(50)
    expected = ops.nms(boxes.half().float(), scores.half().float(), 0.5)
    assert torch.equal(ops.nms(boxes.half(), scores.half(), 0.5), expected)


def test_degenerate_boxes_are_kept_without_nan_trouble():
    boxes = torch.tensor([[5, 5, 5, 5.0], [5, 5, 5, 5], [0, 0, 10, 10]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert torch.equal(ops.nms(boxes, scores, 0.5), torchvision.ops.nms(boxes, scores, 0.5))


def test_iou_equal_to_threshold_in_float32_follows_torchvision():
    # IoU 24 / 240 is exactly float32(0.1), which is above the double 0.1: suppressed.
    boxes = torch.tensor([[0, 0, 12, 8.0], [8, 2, 20, 16]])
    scores = torch.tensor([0.9, 0.8])
    expected = torchvision.ops.nms(boxes, scores, 0.1)
    assert expected.tolist() == [0]
    assert torch.equal(ops.nms(boxes, scores, 0.1), expected)
    assert torch.equal(nms_reference(boxes, scores, 0.1), expected)
