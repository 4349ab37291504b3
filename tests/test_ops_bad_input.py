"""Bad arguments give a documented result or an exception naming the argument."""

import pytest
import torch
import torchvision

from detaccel import ops

X = torch.randn(2, 3, 8, 8)
ROIS = torch.tensor([[0, 0, 0, 7, 7.0], [1, 2, 2, 5, 5]])


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: ops.roi_pool(X[0], ROIS, 2), ValueError, "input: expected 4 dims"),
        (lambda: ops.roi_pool(X.long(), ROIS, 2), TypeError, "input: dtype torch.int64"),
        (
            lambda: ops.roi_pool(X.to(torch.complex64), ROIS, 2),
            TypeError,
            "input: dtype torch.complex64 is not supported on cpu",
        ),
        (lambda: ops.roi_pool(X, ROIS[:, :4], 2), ValueError, "rois: expected shape [K, 5]"),
        (lambda: ops.roi_pool(X, ROIS.double(), 2), TypeError, "rois: expected dtype torch.float32"),
        (lambda: ops.roi_pool(X, ROIS.tolist(), 2), TypeError, "rois[0]: expected a torch.Tensor"),
        (lambda: ops.roi_pool(X, [torch.zeros(2, 5)], 2), ValueError, "rois[0]: expected shape [L, 4]"),
        (lambda: ops.roi_pool(X, "rois", 2), TypeError, "rois: expected a torch.Tensor"),
        (lambda: ops.roi_pool(X, ROIS, 0), ValueError, "output_size: sizes must be positive"),
        (lambda: ops.roi_pool(X, ROIS, (2, -1)), ValueError, "output_size: sizes must be positive"),
        (
            lambda: ops.roi_pool(X, ROIS, (2, 2, 2)),
            ValueError,
            "output_size: expected an int or (height, width)",
        ),
        (lambda: ops.roi_pool(X, ROIS, 2.5), ValueError, "output_size"),
        (lambda: ops.roi_pool(X, ROIS, 5000), ValueError, "output_size: sizes above 1024"),
        (lambda: ops.roi_pool(X, ROIS, 2, 0.0), ValueError, "spatial_scale: expected a finite positive"),
        (lambda: ops.roi_pool(X, ROIS, 2, float("nan")), ValueError, "spatial_scale"),
        (
            lambda: ops.roi_pool(X, torch.tensor([[2, 0, 0, 1, 1.0]]), 2),
            ValueError,
            "batch index outside [0, 2)",
        ),
        (lambda: ops.roi_pool(X, torch.tensor([[-1, 0, 0, 1, 1.0]]), 2), ValueError, "batch index outside"),
        (lambda: ops.roi_pool(X, torch.tensor([[0.5, 0, 0, 1, 1.0]]), 2), ValueError, "not an integer"),
        (
            lambda: ops.roi_pool(X, torch.tensor([[0, 0, float("nan"), 1, 1]]), 2),
            ValueError,
            "row 0 has non-finite",
        ),
        (lambda: ops.roi_pool(X, torch.tensor([[0, 0, 0, float("inf"), 1]]), 2), ValueError, "non-finite"),
        (lambda: ops.spp_pool(X, ROIS, ()), ValueError, "levels: expected 1 to 8 levels"),
        (lambda: ops.spp_pool(X, ROIS, tuple(range(1, 10))), ValueError, "levels: expected 1 to 8 levels"),
        (lambda: ops.spp_pool(X, ROIS, (1, 0)), ValueError, "levels: sizes must be positive"),
        (lambda: ops.spp_pool(X, ROIS, 3), TypeError, "levels: expected a sequence"),
        (lambda: ops.nms(torch.zeros(3, 5), torch.zeros(3), 0.5), ValueError, "boxes: expected shape [N, 4]"),
        (lambda: ops.nms(torch.zeros(3, 4), torch.zeros(2), 0.5), ValueError, "scores: expected shape [3]"),
        (
            lambda: ops.nms(torch.zeros(3, 4, dtype=torch.long), torch.zeros(3), 0.5),
            TypeError,
            "boxes: expected a float",
        ),
        (lambda: ops.nms(torch.zeros(3, 4), torch.zeros(3), float("inf")), ValueError, "iou_threshold"),
        (
            lambda: ops.nms(torch.tensor([[0, 0, float("nan"), 1]]), torch.zeros(1), 0.5),
            ValueError,
            "boxes: row 0",
        ),
        (lambda: ops.nms(torch.zeros(1, 4), torch.tensor([float("nan")]), 0.5), ValueError, "scores: row 0"),
        (
            lambda: ops.batched_nms(torch.zeros(2, 4), torch.zeros(2), torch.zeros(2), 0.5),
            TypeError,
            "idxs: expected an integer tensor",
        ),
        (
            lambda: ops.batched_nms(torch.zeros(2, 4), torch.zeros(2), torch.zeros(3, dtype=torch.long), 0.5),
            ValueError,
            "idxs: expected shape [2]",
        ),
    ],
)
def test_bad_arguments_raise_named_errors(call, error, message):
    with pytest.raises(error, match=None) as info:
        call()
    assert message in str(info.value)


def test_empty_roi_set_gives_empty_output_and_gradient():
    x = X.clone().requires_grad_()
    out = ops.roi_pool(x, torch.zeros(0, 5), (7, 7))
    assert out.shape == (0, 3, 7, 7)
    out.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(X))
    assert ops.spp_pool(X, torch.zeros(0, 5)).shape == (0, 3 * 50)
    assert ops.roi_pool(X, [], 2).shape == (0, 3, 2, 2)


def test_empty_feature_map_and_zero_channels():
    assert torch.equal(ops.roi_pool(torch.randn(1, 0, 5, 5), ROIS[:1], 2), torch.zeros(1, 0, 2, 2))
    empty_map = torch.randn(1, 2, 0, 0)
    assert torch.equal(ops.roi_pool(empty_map, ROIS[:1], 2), torch.zeros(1, 2, 2, 2))


def test_rois_outside_the_map_pool_to_zeros():
    rois = torch.tensor([[0, 100, 100, 200, 200.0], [1, -50, -50, -10, -10]])
    out = ops.roi_pool(X, rois, 3)
    assert torch.equal(out, torch.zeros_like(out))
    assert torch.equal(out, torchvision.ops.roi_pool(X, rois, 3, 1.0))


def test_enormous_rois_cover_the_map():
    rois = torch.tensor([[0, -1e30, -1e30, 1e30, 1e30], [1, -1e9, -1e9, 1e9, 1e9]])
    out = ops.roi_pool(X, rois, 1)
    torch.testing.assert_close(out[:, :, 0, 0], X.amax(dim=(2, 3)))
    assert ops.spp_pool(X, rois, (1, 2)).shape == (2, 15)


def test_direct_operator_call_with_bad_batch_index_does_not_crash():
    # The registered operator skips the Python checks; the kernel pools such RoIs to zeros.
    rois = torch.tensor([[7, 0, 0, 3, 3.0], [float("nan"), 0, 0, 3, 3], [0, 0, 0, 3, 3]])
    out, argmax = torch.ops.detaccel.roi_pool_forward(X, rois, 1.0, 2, 2)
    assert torch.equal(out[:2], torch.zeros_like(out[:2]))
    assert torch.all(argmax[:2] == -1)
    grad = torch.ops.detaccel.roi_pool_backward(torch.ones_like(out), rois, argmax, 2, 2, 2, 3, 8, 8)
    assert grad[1].sum() == 0 and grad[0].sum() > 0


def test_direct_backward_call_with_corrupt_argmax_stays_in_bounds():
    out, argmax = torch.ops.detaccel.roi_pool_forward(X, ROIS, 1.0, 2, 2)
    corrupt = argmax.clone()
    corrupt[0, 0, 0, 0] = 10_000
    corrupt[0, 0, 0, 1] = -7
    grad = torch.ops.detaccel.roi_pool_backward(torch.ones_like(out), ROIS, corrupt, 2, 2, 2, 3, 8, 8)
    assert grad.shape == X.shape


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((torch.randn(8, 8), ROIS, 1.0, 2, 2), "input: expected a 4-D tensor"),
        ((X, ROIS[:, :4], 1.0, 2, 2), "rois: expected shape [K, 5]"),
        ((X, ROIS.double(), 1.0, 2, 2), "rois: expected dtype"),
        ((X, ROIS, 1.0, 0, 2), "output_size: every pooled size must be positive"),
    ],
)
def test_direct_operator_call_checks_arguments(args, message):
    with pytest.raises(RuntimeError) as info:
        torch.ops.detaccel.roi_pool_forward(*args)
    assert message in str(info.value)


def test_direct_backward_call_checks_sizes():
    out, argmax = torch.ops.detaccel.roi_pool_forward(X, ROIS, 1.0, 2, 2)
    with pytest.raises(RuntimeError, match="grad: expected"):
        torch.ops.detaccel.roi_pool_backward(out[:, :2], ROIS, argmax, 2, 2, 2, 3, 8, 8)
    with pytest.raises(RuntimeError, match="argmax: expected int32"):
        torch.ops.detaccel.roi_pool_backward(out, ROIS, argmax.long(), 2, 2, 2, 3, 8, 8)
    with pytest.raises(RuntimeError, match="levels: at most 8"):
        torch.ops.detaccel.spp_pool_forward(X, ROIS, 1.0, list(range(1, 10)))


def test_mixed_devices_are_rejected():
    meta_rois = ROIS.to("meta")
    with pytest.raises(ValueError, match="rois: expected device cpu"):
        ops.roi_pool(X, meta_rois, 2)
    with pytest.raises(ValueError, match="idxs: expected device cpu"):
        ops.batched_nms(
            torch.zeros(1, 4), torch.zeros(1), torch.zeros(1, dtype=torch.long, device="meta"), 0.5
        )
