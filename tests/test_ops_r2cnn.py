import pytest
import torch

from detaccel import ops
from detaccel.ops.reference import r2cnn_feature_levels_reference, r2cnn_level_boxes_reference
from tests.conftest import requires_cuda


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
    ],
)
def test_bad_arguments(call, error, message):
    with pytest.raises(error) as info:
        call()
    assert message in str(info.value)


def test_direct_operator_call_rejects_out_of_range_levels():
    with pytest.raises(RuntimeError, match="levels: values must lie"):
        torch.ops.detaccel.r2cnn_level_boxes(torch.full((1, 2, 2), -1, dtype=torch.int32), 3, 10)


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
