"""Proposal recall and average recall on hand-built cases."""

import math

import numpy as np
import pytest

from detaccel.data import ImageRecord, attach_proposals
from detaccel.evaluation import pairwise_iou, proposal_recall


def record(image_id, boxes, difficult=None, crowd=None):
    n = len(boxes)
    return ImageRecord(
        image_id,
        f"{image_id}.jpg",
        200,
        200,
        np.asarray(boxes, np.float32).reshape(-1, 4),
        [0] * n,
        difficult or [False] * n,
        crowd or [False] * n,
    )


GT = [[0, 0, 9, 9], [100, 100, 119, 119]]
# IoU with GT[0]: 0.5 (10x5 of 10x10); with GT[1]: 0.8 (20x16 of 20x20); then an exact copy of GT[0].
P_HALF = [0, 0, 9, 4]
P_EIGHT = [100, 100, 119, 115]
P_EXACT = [0, 0, 9, 9]


def test_the_hand_built_overlaps():
    np.testing.assert_allclose(pairwise_iou([P_HALF, P_EIGHT, P_EXACT], GT), [[0.5, 0], [0, 0.8], [1, 0]])
    assert pairwise_iou([[0, 0, 9, 9]], [[10, 0, 19, 9]])[0, 0] == 0.0  # touching: no overlap
    np.testing.assert_allclose(pairwise_iou([[0, 0, 10, 10]], [[0, 0, 10, 5]], pixel_offset=0), [[0.5]])


def test_recall_and_average_recall():
    result = proposal_recall(
        [record("a", GT)], [[P_HALF, P_EIGHT, P_EXACT]], ar_limits=(1, 2, 3), curve_limits=(1, 2, 3)
    )
    assert result["num_gt"] == 2 and result["num_images"] == 1
    assert result["mean_proposals"] == 3
    assert result["recall@0.50"] == 1.0 and result["recall@0.70"] == 1.0
    # All proposals: GT[0] best 1.0 (10 of 10 thresholds), GT[1] best 0.8 (0.50 ... 0.80: 7 of 10).
    assert result["AR"] == pytest.approx((10 + 7) / 20)
    # Top 1: GT[0] at IoU 0.5 only. Top 2: also GT[1].
    assert result["AR@1"] == pytest.approx(1 / 20)
    assert result["AR@2"] == pytest.approx((1 + 7) / 20)
    assert result["AR@3"] == result["AR"]
    assert result["recall_curve"] == {
        "num_proposals": [1, 2, 3],
        "0.50": [0.5, 1.0, 1.0],
        "0.70": [0.0, 0.5, 1.0],
    }


def test_max_proposals_and_scores():
    proposals = [
        (np.array([P_HALF, P_EIGHT, P_EXACT]), np.array([0.1, 0.2, 0.9]))
    ]  # ranked: exact, eight, half
    result = proposal_recall([record("a", GT)], proposals, max_proposals=1, iou_thresholds=(0.5, 0.9))
    assert result["max_proposals"] == 1
    assert result["recall@0.50"] == 0.5 and result["recall@0.90"] == 0.5
    assert result["AR"] == pytest.approx(10 / 20)
    assert result["AR@10"] == pytest.approx(17 / 20)  # fewer proposals than the limit: all of them
    assert result["mean_proposals"] == 3  # counted before the cap


def test_difficult_and_crowd_objects():
    records = [record("a", GT, difficult=[False, True]), record("b", [[0, 0, 49, 49]], crowd=[True])]
    proposals = {"a": np.array([P_EXACT]), "b": np.array([[0, 0, 49, 49]])}
    default = proposal_recall(records, proposals)
    assert default["num_gt"] == 1 and default["recall@0.50"] == 1.0
    everything = proposal_recall(records, proposals, include_difficult=True)
    assert everything["num_gt"] == 2 and everything["recall@0.50"] == 0.5  # crowd never counts
    assert everything["mean_proposals"] == 1.0


def test_images_without_proposals_or_objects():
    records = [record("a", GT), record("b", [])]
    result = proposal_recall(records, {"b": np.array([[0, 0, 5, 5], [1, 1, 7, 7]])})
    assert result["num_gt"] == 2 and result["recall@0.50"] == 0.0 and result["AR@100"] == 0.0
    assert result["mean_proposals"] == 1.0
    nothing = proposal_recall([record("b", [])], [np.zeros((0, 4))])
    assert math.isnan(nothing["recall@0.50"]) and math.isnan(nothing["AR"])


def test_proposals_carried_by_records():
    records = attach_proposals([record("a", GT)], {"a": (np.array([P_HALF, P_EXACT]), np.array([0.9, 0.1]))})
    assert records[0].proposals.shape == (2, 4)
    result = proposal_recall(records, ar_limits=(1,), curve_limits=(1,))
    assert result["AR@1"] == pytest.approx(1 / 20)  # the scores put P_HALF first
    with pytest.raises(ValueError, match="carry no proposals"):
        proposal_recall([record("a", GT)])
    with pytest.raises(ValueError, match="not in the dataset"):
        proposal_recall([record("a", GT)], {"zz": np.zeros((0, 4))})
