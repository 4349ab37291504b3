import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from detaccel.proposals import finalize_proposals


def test_clips_to_the_last_pixel_and_drops_boxes_outside():
    boxes = [
        [-10, -5, 50, 200],  # clipped to the image
        [100, 10, 120, 20],  # right of the image
        [10, -30, 20, -1],  # above it
        [99, 49, 130, 80],  # only its first pixel is inside
    ]
    out, scores = finalize_proposals(boxes, None, (50, 100))
    np.testing.assert_array_equal(out, [[0, 0, 50, 49], [99, 49, 99, 49]])
    assert scores is None
    assert out.dtype == np.float32


def test_removes_degenerate_and_small_boxes():
    boxes = [
        [10, 10, 10, 10],  # one pixel: 1 x 1
        [10, 10, 9, 20],  # no width
        [10, 10, 8, 20],  # inverted
        [0, 0, 2.5, 9],  # 3.5 x 10
        [0, 0, 9, 1.9],  # 10 x 2.9
    ]
    out, _ = finalize_proposals(boxes, None, (50, 50))
    np.testing.assert_array_equal(out, np.array(boxes, np.float32)[[0, 3, 4]])
    out, _ = finalize_proposals(boxes, None, (50, 50), min_size=3)
    np.testing.assert_array_equal(out, np.array(boxes, np.float32)[[3]])
    out, _ = finalize_proposals(boxes, None, (50, 50), min_size=0)
    assert len(out) == 3


def test_deduplicates_at_a_tenth_of_a_pixel_keeping_the_first():
    boxes = [
        [1.0, 2.0, 30.0, 40.0],
        [1.02, 2.0, 29.98, 40.04],  # same after rounding to 0.1 px
        [1.2, 2.0, 30.0, 40.0],  # 0.2 px apart: kept
        [-5.0, 2.0, 30.0, 40.0],
        [0.0, 2.0, 30.0, 40.0],  # equal to the previous one once it is clipped
        [1.0, 2.0, 30.0, 40.0],
    ]
    out, _ = finalize_proposals(boxes, None, (100, 100))
    np.testing.assert_allclose(out, [boxes[0], boxes[2], boxes[4]])
    out, _ = finalize_proposals(boxes, None, (100, 100), dedupe_step=None)
    assert len(out) == 6


def test_keeps_generator_order_without_scores_and_caps():
    boxes = np.array([[i, 0, i + 10, 10] for i in (5, 3, 8, 1)], float)
    out, _ = finalize_proposals(boxes, None, (20, 30), max_proposals=3)
    np.testing.assert_array_equal(out[:, 0], [5, 3, 8])


def test_sorts_by_score_before_deduplicating_and_capping():
    boxes = np.array([[0, 0, 9, 9], [0, 0, 9, 9], [5, 5, 15, 15], [2, 2, 8, 8], [1, 1, 4, 4]], float)
    scores = np.array([0.1, 0.9, 0.5, 0.5, np.nan])
    out, kept = finalize_proposals(boxes, scores, (20, 20), max_proposals=3)
    np.testing.assert_array_equal(out, boxes[[1, 2, 3]])
    np.testing.assert_allclose(kept, [0.9, 0.5, 0.5])
    assert kept.dtype == np.float32


def test_drops_non_finite_boxes_and_accepts_tensors_and_empty_input():
    boxes = torch.tensor([[0.0, 0.0, 5.0, 5.0], [float("nan"), 0.0, 5.0, 5.0], [0.0, 0.0, float("inf"), 5.0]])
    out, _ = finalize_proposals(boxes, None, (10, 10))
    np.testing.assert_array_equal(out, [[0, 0, 5, 5]])
    out, scores = finalize_proposals(np.zeros((0, 4)), np.zeros(0), (10, 10))
    assert out.shape == (0, 4) and scores.shape == (0,)
    out, _ = finalize_proposals([], None, (10, 10))
    assert out.shape == (0, 4)


@pytest.mark.parametrize(
    ("boxes", "scores", "message"),
    [(np.zeros((3, 5)), None, r"\[N, 4\]"), (np.zeros((3, 4)), np.zeros(2), "3 boxes but 2 scores")],
)
def test_rejects_malformed_input(boxes, scores, message):
    with pytest.raises(ValueError, match=message):
        finalize_proposals(boxes, scores, (10, 10))


@given(
    boxes=arrays(np.float64, st.tuples(st.integers(0, 40), st.just(4)), elements=st.floats(-50, 150)),
    height=st.integers(1, 100),
    width=st.integers(1, 100),
    min_size=st.floats(0, 5),
    cap=st.one_of(st.none(), st.integers(0, 30)),
)
def test_output_invariants(boxes, height, width, min_size, cap):
    out, _ = finalize_proposals(boxes, None, (height, width), min_size=min_size, max_proposals=cap)
    assert out.shape[1] == 4 and (cap is None or len(out) <= cap)
    assert (out[:, 0] >= 0).all() and (out[:, 2] <= width - 1).all()
    assert (out[:, 1] >= 0).all() and (out[:, 3] <= height - 1).all()
    assert (out[:, 2] - out[:, 0] + 1 >= min_size - 1e-4).all()
    assert (out[:, 3] - out[:, 1] + 1 >= min_size - 1e-4).all()
    keys = {tuple(np.round(b / 0.1).astype(int)) for b in out.astype(np.float64)}
    assert len(keys) == len(out)
