import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from detaccel import ops
from detaccel.ops.reference import r2cnn_feature_levels_reference, r2cnn_level_boxes_reference
from detaccel.proposals.r2cnn import R2CNN, local_search
from detaccel.proposals.receptive_field import cell_boxes_to_pixels
from tests.conftest import requires_cuda

MODES = [("flood", False), ("flood", True), ("original", False), ("original", True)]


def level_map(rows):
    """One image's level map ``[1, H, W]`` from a list of rows."""
    return torch.tensor(rows, dtype=torch.int32)[None]


def test_one_hot_spot_gets_the_top_level_and_its_own_box():
    features = torch.zeros(1, 3, 6, 8)
    features[0, 0, 2, 5] = 4.0
    features[0, 1, 2, 5] = 2.0
    integrated, levels = ops.r2cnn_feature_levels(features, num_levels=10)
    assert integrated[0, 2, 5].item() == pytest.approx(2.0)  # two channels, each normalised to 1
    assert levels[0, 2, 5].item() == 9
    assert int((levels != 0).sum()) == 1
    (boxes,) = ops.r2cnn_level_boxes(levels, 10)
    assert boxes.tolist() == [[0, 0, 7, 5], [0, 0, 7, 5], [5, 2, 5, 2], [5, 2, 5, 2]]


def test_two_separate_blobs_are_two_groups_of_one_level():
    levels = torch.zeros(1, 6, 10, dtype=torch.int32)
    levels[0, 1:3, 1:3] = 1
    levels[0, 3:6, 6:9] = 1
    (boxes,) = ops.r2cnn_level_boxes(levels, 2)
    # level 0 (one connected background), then level 1: all of it, larger blob, smaller blob
    assert boxes.tolist() == [[0, 0, 9, 5], [0, 0, 9, 5], [1, 1, 8, 5], [6, 3, 8, 5], [1, 1, 2, 2]]
    (capped,) = ops.r2cnn_level_boxes(levels, 2, max_boxes_per_level=2)
    assert capped.tolist() == [[0, 0, 9, 5], [0, 0, 9, 5], [1, 1, 8, 5], [6, 3, 8, 5]]


def test_diagonal_neighbours_are_connected():
    levels = torch.zeros(1, 4, 4, dtype=torch.int32)
    levels[0, 0, 0] = levels[0, 1, 1] = levels[0, 2, 2] = 1
    (boxes,) = ops.r2cnn_level_boxes(levels, 2)
    assert [0, 0, 2, 2] in boxes.tolist()
    assert len([b for b in boxes.tolist() if b == [0, 0, 2, 2]]) == 2  # level box and its single group


def test_all_zero_features_give_one_level_and_one_box():
    integrated, levels = ops.r2cnn_feature_levels(torch.zeros(2, 4, 5, 5), 10)
    assert torch.equal(integrated, torch.zeros(2, 5, 5))
    assert torch.equal(levels, torch.zeros(2, 5, 5, dtype=torch.int32))
    per_image = ops.r2cnn_level_boxes(levels, 10)
    assert [b.tolist() for b in per_image] == [[[0, 0, 4, 4], [0, 0, 4, 4]]] * 2


def test_negative_channels_are_skipped():
    features = -torch.rand(1, 2, 3, 3)
    features[0, 1, 1, 1] = 5.0
    integrated, _ = ops.r2cnn_feature_levels(features, 4)
    assert integrated[0, 1, 1].item() == pytest.approx(1.0)


def test_non_finite_features_are_rejected():
    features = torch.ones(1, 2, 3, 3)
    features[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="features: the feature map has non-finite values"):
        ops.r2cnn_feature_levels(features)
    integrated, _ = torch.ops.detaccel.r2cnn_feature_levels(features, 10)  # kernel: non-finite counts as 0
    assert torch.isfinite(integrated).all()


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: ops.r2cnn_feature_levels(torch.zeros(2, 3, 4)), ValueError, "features: expected 4 dims"),
        (lambda: ops.r2cnn_feature_levels(torch.zeros(1, 1, 2, 2, dtype=torch.long)), TypeError, "features"),
        (lambda: ops.r2cnn_feature_levels(torch.zeros(1, 1, 2, 2), 0), ValueError, "num_levels"),
        (
            lambda: ops.r2cnn_level_boxes(torch.zeros(2, 2, dtype=torch.int32), 3),
            ValueError,
            "levels: expected 3",
        ),
        (lambda: ops.r2cnn_level_boxes(torch.zeros(1, 2, 2), 3), TypeError, "levels: expected int32"),
        (lambda: ops.r2cnn_level_boxes(torch.full((1, 2, 2), 5, dtype=torch.int32), 3), ValueError, "[0, 3)"),
        (
            lambda: ops.r2cnn_level_boxes(torch.zeros(1, 2, 2, dtype=torch.int32), 3, 0),
            ValueError,
            "max_boxes",
        ),
        (
            lambda: ops.r2cnn_level_boxes(torch.zeros(1, 2, 2, dtype=torch.int32), 3, grouping="bfs"),
            ValueError,
            "grouping: expected one of 'flood', 'original', got 'bfs'",
        ),
        (
            lambda: ops.r2cnn_level_boxes(torch.zeros(1, 2, 2, dtype=torch.int32), 3, grouping=1),
            ValueError,
            "grouping: expected one of 'flood', 'original', got 1",
        ),
        (
            lambda: ops.r2cnn_level_boxes(torch.zeros(1, 2, 2, dtype=torch.int32), 3, superlevel=1),
            ValueError,
            "superlevel: expected True or False, got 1",
        ),
        (
            lambda: ops.r2cnn_level_boxes(torch.zeros(1, 2, 2, dtype=torch.int32), 3, superlevel="yes"),
            ValueError,
            "superlevel: expected True or False, got 'yes'",
        ),
        (lambda: R2CNN(backbone=None, receptive_field=(8, 0, 8), grouping="bfs"), ValueError, "grouping"),
        (
            lambda: R2CNN(backbone=None, receptive_field=(8, 0, 8), superlevel=None),
            ValueError,
            "superlevel: expected True or False, got None",
        ),
    ],
)
def test_bad_arguments(call, error, message):
    with pytest.raises(error) as info:
        call()
    assert message in str(info.value)


def test_direct_operator_call_rejects_out_of_range_levels():
    with pytest.raises(RuntimeError, match="levels: values must lie"):
        torch.ops.detaccel.r2cnn_level_boxes(torch.full((1, 2, 2), -1, dtype=torch.int32), 3, 10)
    zeros = torch.zeros(1, 2, 2, dtype=torch.int32)
    for grouping in (-1, 2):
        with pytest.raises(RuntimeError, match=r"grouping: expected 0 \(flood fill\) or 1 \(original\)"):
            torch.ops.detaccel.r2cnn_level_boxes(zeros, 3, 10, grouping, False)


def test_empty_maps():
    integrated, levels = ops.r2cnn_feature_levels(torch.zeros(1, 3, 0, 0))
    assert integrated.shape == (1, 0, 0)
    assert ops.r2cnn_level_boxes(levels, 10)[0].shape == (0, 4)
    assert ops.r2cnn_level_boxes(torch.zeros(0, 3, 3, dtype=torch.int32), 10) == []


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_reference_on_random_maps(dtype):
    generator = torch.Generator().manual_seed(1)
    features = torch.relu(torch.randn(3, 16, 13, 17, generator=generator, dtype=dtype))
    integrated, levels = ops.r2cnn_feature_levels(features, 6)
    ref_integrated, ref_levels = r2cnn_feature_levels_reference(features, 6)
    torch.testing.assert_close(integrated, ref_integrated)
    assert (levels != ref_levels).sum() <= 1  # a value on a level boundary may round either way
    for ours, ref in zip(
        ops.r2cnn_level_boxes(levels, 6, 7), r2cnn_level_boxes_reference(levels, 6, 7), strict=True
    ):
        assert torch.equal(ours, ref)


def test_original_grouping_absorbs_a_cell_that_only_touches_the_box():
    # Level 1: a diagonal (0,0), (1,1), (2,2) and (0,3), which touches none of them.
    levels = level_map([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 0]])
    # The box grows to [0, 0, 2, 2] along the diagonal; (0, 3) lies on the row below
    # it (y = y2 + 1, x1 - 1 <= 0 <= x2 + 1), so it joins: one group that is not
    # 8-connected. Level 0 (the 12 other cells) is one group covering the map.
    (original,) = ops.r2cnn_level_boxes(levels, 2, grouping="original")
    assert original.tolist() == [[0, 0, 3, 3], [0, 0, 3, 3], [0, 0, 2, 3], [0, 0, 2, 3]]
    # The flood fill splits level 1 into the diagonal (3 cells) and the lone cell.
    (flood,) = ops.r2cnn_level_boxes(levels, 2)
    assert flood.tolist() == [[0, 0, 3, 3], [0, 0, 3, 3], [0, 0, 2, 3], [0, 0, 2, 2], [0, 3, 0, 3]]


def test_original_grouping_depends_on_raster_order():
    # Level 1 in raster order: (0,0), (4,0), (1,1), (2,1), (3,1); all 8-connected.
    levels = level_map([[1, 0, 0, 0, 1], [0, 1, 1, 1, 0]])
    # From (0,0): (4,0) is passed while the box is still [0,0,0,0]; (1,1), (2,1),
    # (3,1) then grow it to [0, 0, 3, 1]. (4,0) touches that box but was already
    # passed, so it starts a second group. Level 0 grows from (1,0) over all 5 cells.
    (boxes,) = ops.r2cnn_level_boxes(levels, 2, grouping="original")
    assert boxes.tolist() == [[0, 0, 4, 1], [0, 0, 4, 1], [0, 0, 4, 1], [0, 0, 3, 1], [4, 0, 4, 0]]
    # Transposed, the lone cell (0, 4) comes last in raster order, after the box has
    # grown to [0, 0, 1, 3] next to it: one group.
    (transposed,) = ops.r2cnn_level_boxes(levels.transpose(1, 2).contiguous(), 2, grouping="original")
    assert transposed.tolist()[2:] == [[0, 0, 1, 4], [0, 0, 1, 4]]
    # The flood fill does not depend on the order: one group either way.
    (flood,) = ops.r2cnn_level_boxes(levels, 2)
    assert flood.tolist()[2:] == [[0, 0, 4, 1], [0, 0, 4, 1]]


def test_original_groups_come_in_the_order_they_were_started():
    # Level 1: a lone cell (0,0) first in raster order, then a 2 x 2 block.
    levels = level_map([[1, 0, 0, 0, 0, 0], [0, 0, 0, 1, 1, 0], [0, 0, 0, 1, 1, 0]])
    (original,) = ops.r2cnn_level_boxes(levels, 2, grouping="original")
    assert original.tolist()[2:] == [[0, 0, 4, 2], [0, 0, 0, 0], [3, 1, 4, 2]]
    (capped,) = ops.r2cnn_level_boxes(levels, 2, 2, grouping="original")
    assert capped.tolist()[2:] == [[0, 0, 4, 2], [0, 0, 0, 0]]
    (flood,) = ops.r2cnn_level_boxes(levels, 2, 2)  # flood fill: largest first
    assert flood.tolist()[2:] == [[0, 0, 4, 2], [3, 1, 4, 2]]


def test_superlevel_sets_by_hand():
    levels = level_map([[0, 0, 0, 0, 0], [0, 1, 1, 0, 0], [0, 1, 2, 0, 2]])
    (boxes,) = ops.r2cnn_level_boxes(levels, 3, superlevel=True)
    per_level = [
        [[0, 0, 4, 2], [0, 0, 4, 2]],  # level >= 0: the whole map
        [[1, 1, 4, 2], [1, 1, 2, 2], [4, 2, 4, 2]],  # level >= 1: the block with its 2, and the lone 2
        [[2, 2, 4, 2], [2, 2, 2, 2], [4, 2, 4, 2]],  # level >= 2: two single cells (raster order on ties)
    ]
    assert boxes.tolist() == [box for level in per_level for box in level]
    (equal,) = ops.r2cnn_level_boxes(levels, 3)
    assert equal.tolist()[2:4] == [[1, 1, 2, 2], [1, 1, 2, 2]]  # level 1 alone: three cells
    # A level with no cell of its own gives nothing (it would repeat the next level's boxes).
    (sparse,) = ops.r2cnn_level_boxes(level_map([[0, 0, 0], [0, 3, 0], [0, 0, 0]]), 4, superlevel=True)
    assert sparse.tolist() == [[0, 0, 2, 2], [0, 0, 2, 2], [1, 1, 1, 1], [1, 1, 1, 1]]


@pytest.mark.parametrize("grouping", ["flood", "original"])
def test_superlevel_boxes_nest(grouping):
    generator = torch.Generator().manual_seed(3)
    features = torch.relu(torch.randn(2, 8, 15, 21, generator=generator))
    _, levels = ops.r2cnn_feature_levels(features, 8)
    # Cap 1: only the box of each level's set; cap 2: that box and its first group.
    set_boxes = ops.r2cnn_level_boxes(levels, 8, 1, grouping=grouping, superlevel=True)
    first_groups = ops.r2cnn_level_boxes(levels, 8, 2, grouping=grouping, superlevel=True)
    for image, boxes, pairs in zip(levels, set_boxes, first_groups, strict=True):
        present = torch.unique(image).tolist()
        assert len(present) >= 4 and len(boxes) == len(present) and len(pairs) == 2 * len(present)
        for level, box in zip(present, boxes.tolist(), strict=True):
            ys, xs = torch.nonzero(image >= level, as_tuple=True)
            assert box == [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())]
        outer, inner = boxes[:-1], boxes[1:]
        assert (outer[:, :2] <= inner[:, :2]).all() and (outer[:, 2:] >= inner[:, 2:]).all()
        assert not torch.equal(boxes[0], boxes[-1])  # the sets shrink
        assert torch.equal(pairs[0::2], boxes)
        group = pairs[1::2]
        assert (group[:, :2] >= boxes[:, :2]).all() and (group[:, 2:] <= boxes[:, 2:]).all()


@st.composite
def level_maps(draw):
    num_levels = draw(st.integers(1, 5))
    n, h, w = draw(st.integers(1, 2)), draw(st.integers(0, 9)), draw(st.integers(0, 9))
    values = draw(st.lists(st.integers(0, num_levels - 1), min_size=n * h * w, max_size=n * h * w))
    return torch.tensor(values, dtype=torch.int32).reshape(n, h, w), num_levels


@pytest.mark.parametrize(("grouping", "superlevel"), MODES)
@settings(max_examples=150)
@given(case=level_maps(), max_boxes=st.integers(1, 8))
def test_every_mode_matches_reference_on_random_maps(grouping, superlevel, case, max_boxes):
    levels, num_levels = case
    ours = ops.r2cnn_level_boxes(levels, num_levels, max_boxes, grouping=grouping, superlevel=superlevel)
    ref = r2cnn_level_boxes_reference(levels, num_levels, max_boxes, grouping, superlevel)
    assert len(ours) == len(ref) == levels.shape[0]
    for a, b in zip(ours, ref, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize(("grouping", "superlevel"), MODES)
def test_every_mode_matches_reference_on_feature_levels(grouping, superlevel):
    generator = torch.Generator().manual_seed(2)
    features = torch.relu(torch.randn(2, 16, 24, 31, generator=generator))
    _, levels = ops.r2cnn_feature_levels(features, 10)
    ours = ops.r2cnn_level_boxes(levels, 10, 12, grouping=grouping, superlevel=superlevel)
    ref = r2cnn_level_boxes_reference(levels, 10, 12, grouping, superlevel)
    for a, b in zip(ours, ref, strict=True):
        assert torch.equal(a, b)
        assert ((a[:, 0] <= a[:, 2]) & (a[:, 1] <= a[:, 3])).all()
        assert (a[:, 2] < 31).all() and (a[:, 3] < 24).all() and (a >= 0).all()


def test_default_call_is_unchanged():
    levels = level_map([[0, 0, 1, 1, 0, 2], [0, 2, 2, 1, 0, 2], [1, 0, 2, 0, 0, 0], [1, 1, 0, 0, 2, 2]])
    per_level = [
        [[0, 0, 5, 3], [0, 0, 5, 3]],  # level 0: its 11 cells are one group
        [[0, 0, 3, 3], [2, 0, 3, 1], [0, 2, 1, 3]],  # level 1: two groups of 3 cells, raster order
        [[1, 0, 5, 3], [1, 1, 2, 2], [5, 0, 5, 1], [4, 3, 5, 3]],  # level 2: groups of 3, 2, 2 cells
    ]
    assert ops.r2cnn_level_boxes(levels, 3)[0].tolist() == [box for level in per_level for box in level]
    generator = torch.Generator().manual_seed(4)
    random = torch.randint(0, 5, (3, 11, 14), generator=generator, dtype=torch.int32)
    for default, explicit, ref in zip(
        ops.r2cnn_level_boxes(random, 5, 6),
        ops.r2cnn_level_boxes(random, 5, 6, grouping="flood", superlevel=False),
        r2cnn_level_boxes_reference(random, 5, 6),
        strict=True,
    ):
        assert torch.equal(default, explicit) and torch.equal(default, ref)
    assert torch.equal(
        torch.ops.detaccel.r2cnn_level_boxes(random, 5, 6)[0],
        torch.ops.detaccel.r2cnn_level_boxes(random, 5, 6, 0, False)[0],
    )


def test_generator_passes_grouping_and_superlevel():
    field = (16, 7.5, 196)
    default = R2CNN(backbone=None, receptive_field=field)
    assert (default.grouping, default.superlevel) == ("flood", False)
    generator = R2CNN(backbone=None, receptive_field=field, grouping="original", superlevel=True)
    assert generator.parameters()["grouping"] == "original" and generator.parameters()["superlevel"] is True
    features = torch.relu(torch.randn(1, 8, 12, 16, generator=torch.Generator().manual_seed(5)))
    _, levels = ops.r2cnn_feature_levels(features, 10)
    (cells,) = ops.r2cnn_level_boxes(levels, 10, 100, grouping="original", superlevel=True)
    ((boxes, scores),) = generator.boxes_from_features(features)
    assert scores is None
    np.testing.assert_array_equal(boxes, local_search(cell_boxes_to_pixels(cells, generator.field)))
    ((default_boxes, _),) = default.boxes_from_features(features)
    assert default_boxes.shape != boxes.shape or not np.array_equal(default_boxes, boxes)


@requires_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_cuda_matches_cpu(dtype):
    features = torch.relu(torch.randn(4, 64, 38, 63)).to(dtype)
    integrated, levels = ops.r2cnn_feature_levels(features.cuda(), 10)
    ref_integrated, ref_levels = ops.r2cnn_feature_levels(features.float(), 10)
    torch.testing.assert_close(integrated.cpu(), ref_integrated, rtol=1e-5, atol=1e-4)
    assert (levels.cpu() != ref_levels).float().mean() < 1e-3
    assert [b.tolist() for b in ops.r2cnn_level_boxes(levels, 10)] == [
        b.tolist() for b in ops.r2cnn_level_boxes(levels.cpu(), 10)
    ]


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    height=st.integers(1, 12),
    width=st.integers(1, 12),
    count=st.integers(0, 40),
    ring=st.sampled_from([0.0, 0.5, 2.0]),
    plateaus=st.booleans(),
)
def test_contrast_scores_equal_the_numpy_reference(seed, height, width, count, ring, plateaus):
    from detaccel.ops.reference import r2cnn_contrast_scores_reference

    rng = np.random.default_rng(seed)
    integrated = rng.random((height, width), dtype=np.float32)
    if plateaus:  # equal values, as a quantised map has
        integrated = np.round(integrated * 3) / 3
    field = (float(rng.choice([1.0, 4.0, 8.0])), float(rng.uniform(-4, 4)), 8.0, 3.5)
    # Boxes inside, across and wholly outside the map, some inverted or a fraction of a cell wide.
    corners = rng.uniform(-30, 8 * max(height, width) + 30, size=(count, 2))
    sizes = rng.uniform(-4, 60, size=(count, 2))
    boxes = np.concatenate([corners, corners + sizes], axis=1)
    expected = r2cnn_contrast_scores_reference(integrated, boxes, field, ring)
    scores = ops.r2cnn_contrast_scores(torch.from_numpy(integrated), torch.from_numpy(boxes), field, ring)
    assert scores.dtype == torch.float32 and scores.shape == (count,)
    np.testing.assert_array_equal(scores.numpy(), expected)


def test_contrast_scores_by_hand():
    integrated = torch.zeros(5, 5)
    integrated[1:4, 1:4] = 1.0  # a 3x3 blob on a unit grid (cell c centred at pixel c)
    boxes = torch.tensor([[1.0, 1.0, 3.0, 3.0], [-9.0, -9.0, -8.0, -8.0], [0.0, 0.0, 4.0, 4.0]])
    scores = ops.r2cnn_contrast_scores(integrated, boxes, (1.0, 0.0, 1.0, 0.0), 0.5)
    # The blob: mean 1 inside, its ring (grown 1.5 cells, clipped to the 5x5 map) holds only zeros.
    # Outside the map: clipped to the corner cell (0), ring 0. The whole map: no ring left.
    assert scores.tolist() == [1.0, 0.0, pytest.approx(9 / 25)]


@pytest.mark.parametrize(
    ("integrated", "boxes", "field", "ring", "message"),
    [
        (torch.zeros(4, 4), torch.tensor([[0.0, 0.0, float("nan"), 2.0]]), (1, 0, 1, 0), 0.5, "non-finite"),
        (
            torch.full((4, 4), float("inf")),
            torch.tensor([[0.0, 0.0, 1.0, 1.0]]),
            (1, 0, 1, 0),
            0.5,
            "non-finite",
        ),
        (torch.zeros(4, 4), torch.zeros(3, 5), (1, 0, 1, 0), 0.5, r"\[K, 4\]"),
        (torch.zeros(1, 4, 4), torch.zeros(1, 4), (1, 0, 1, 0), 0.5, r"\[H, W\]"),
        (torch.zeros(4, 4, dtype=torch.int32), torch.zeros(1, 4), (1, 0, 1, 0), 0.5, r"\[H, W\]"),
        (torch.zeros(0, 4), torch.zeros(1, 4), (1, 0, 1, 0), 0.5, "empty"),
        (torch.zeros(4, 4), torch.zeros(1, 4), (0, 0, 1, 0), 0.5, "strides"),
        (torch.zeros(4, 4), torch.zeros(1, 4), (1, float("nan"), 1, 0), 0.5, "offsets"),
        (torch.zeros(4, 4), torch.zeros(1, 4), (1, 0, 1, 0), -1.0, "ring"),
    ],
)
def test_contrast_scores_reject_bad_input(integrated, boxes, field, ring, message):
    with pytest.raises(ValueError, match=message):
        ops.r2cnn_contrast_scores(integrated, boxes, field, ring)


def test_direct_contrast_operator_call_checks_before_reading():
    with pytest.raises(RuntimeError, match="finite"):
        torch.ops.detaccel.r2cnn_contrast_scores(
            torch.zeros(4, 4), torch.tensor([[0.0, 0.0, float("nan"), 1.0]]), 1.0, 0.0, 1.0, 0.0, 0.5
        )
    with pytest.raises(RuntimeError, match="stride"):
        torch.ops.detaccel.r2cnn_contrast_scores(
            torch.zeros(4, 4), torch.zeros(1, 4), 0.0, 0.0, 1.0, 0.0, 0.5
        )
    with pytest.raises(RuntimeError, match="empty"):
        torch.ops.detaccel.r2cnn_contrast_scores(
            torch.zeros(0, 4), torch.zeros(1, 4), 1.0, 0.0, 1.0, 0.0, 0.5
        )


@pytest.mark.parametrize("superlevel", [False, True])
def test_level_boxes_fake_kernel_declares_a_data_dependent_size(superlevel):
    """The operator's fake (meta) kernel passes PyTorch's opcheck, and the level operators compile
    whole with ``torch.compile`` (their output sizes declared data-dependent) to the eager boxes."""
    import torch._dynamo

    levels = torch.randint(0, 6, (2, 9, 11), dtype=torch.int32, generator=torch.Generator().manual_seed(0))
    args = (levels, 6, 10, 0, superlevel)
    torch.library.opcheck(torch.ops.detaccel.r2cnn_level_boxes.default, args)

    def boxes(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        _, found = torch.ops.detaccel.r2cnn_feature_levels(features, 6)
        return torch.ops.detaccel.r2cnn_level_boxes(found, 6, 10, 0, superlevel)

    features = torch.rand(2, 3, 9, 11, generator=torch.Generator().manual_seed(1))
    saved = torch._dynamo.config.capture_dynamic_output_shape_ops
    torch._dynamo.config.capture_dynamic_output_shape_ops = True
    try:
        torch._dynamo.reset()
        compiled = torch.compile(boxes, backend="aot_eager", fullgraph=True)(features)
    finally:
        torch._dynamo.config.capture_dynamic_output_shape_ops = saved
    expected = boxes(features)
    assert len(expected[0]) > 0
    assert all(torch.equal(a, b) for a, b in zip(compiled, expected, strict=True))
