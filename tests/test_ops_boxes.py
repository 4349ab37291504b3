import math

import torch
import torchvision

from detaccel import ops
from tests.helpers import random_boxes


def test_box_iou_matches_torchvision():
    a, b = random_boxes(30), random_boxes(40)
    torch.testing.assert_close(ops.box_iou(a, b), torchvision.ops.box_iou(a, b))


def test_box_iou_known_values_and_empty_union():
    a = torch.tensor([[0, 0, 10, 10.0], [3, 3, 3, 3]])
    b = torch.tensor([[5, 0, 15, 10.0], [3, 3, 3, 3]])
    iou = ops.box_iou(a, b)
    assert math.isclose(iou[0, 0].item(), 50 / 150, rel_tol=1e-6)
    assert iou[1, 1].item() == 0.0


def test_encode_decode_round_trip_with_weights():
    proposals, targets = random_boxes(100), random_boxes(100)
    weights = (10.0, 10.0, 5.0, 5.0)
    deltas = ops.encode_boxes(targets, proposals, weights)
    torch.testing.assert_close(ops.decode_boxes(deltas, proposals, weights), targets, rtol=1e-4, atol=1e-3)


def test_decode_class_specific_deltas_and_clamp():
    proposals = torch.tensor([[0, 0, 10, 10.0]])
    deltas = torch.tensor([[0, 0, 0, 0, 0.1, 0, 0, 0, 0, 0, 100.0, 100.0]])
    decoded = ops.decode_boxes(deltas, proposals)
    assert decoded.shape == (1, 12)
    torch.testing.assert_close(decoded[0, :4], proposals[0])
    torch.testing.assert_close(decoded[0, 4:8], torch.tensor([1.0, 0, 11, 10]))
    assert decoded[0, 10] - decoded[0, 8] <= 10 * 1000 / 16 + 1e-3  # clamped log-scale


def test_clip_and_remove_small_match_torchvision():
    boxes = torch.tensor([[-5, -5, 50, 50.0], [10, 10, 200, 90], [20, 20, 20.5, 40]])
    clipped = ops.clip_boxes_to_image(boxes, (60, 100))
    assert torch.equal(clipped, torchvision.ops.clip_boxes_to_image(boxes, (60, 100)))
    assert torch.equal(ops.remove_small_boxes(boxes, 1.0), torchvision.ops.remove_small_boxes(boxes, 1.0))
