import pytest
import torch
import torchvision

from detaccel import ops
from detaccel.ops.reference import roi_pool_reference
from tests.helpers import random_rois

DTYPES = [torch.float32, torch.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("output_size", [(7, 7), (3, 5), (1, 1)])
def test_forward_and_backward_equal_torchvision(dtype, output_size):
    x = torch.randn(2, 16, 24, 30, dtype=dtype)
    rois = random_rois(60, (24 * 16, 30 * 16), batch_size=2, min_size=4, max_size=400, dtype=dtype)
    ours_in = x.clone().requires_grad_()
    theirs_in = x.clone().requires_grad_()
    ours = ops.roi_pool(ours_in, rois, output_size, 1 / 16)
    theirs = torchvision.ops.roi_pool(theirs_in, rois, output_size, 1 / 16)
    assert torch.equal(ours, theirs)
    grad = torch.randn_like(ours)
    ours.backward(grad)
    theirs.backward(grad)
    torch.testing.assert_close(
        ours_in.grad, theirs_in.grad, rtol=0, atol=1e-12 if dtype == torch.float64 else 1e-5
    )


@pytest.mark.parametrize("dtype", DTYPES)
def test_values_and_argmax_equal_reference(dtype):
    x = torch.randn(2, 3, 9, 11, dtype=dtype)
    rois = torch.tensor(
        [
            [0, 0, 0, 10, 8],
            [1, 2.4, 3.6, 7.5, 6.5],
            [0, -5, -5, 3, 3],  # partly outside
            [1, 20, 20, 30, 30],  # wholly outside: zeros
            [0, 6, 6, 2, 2],  # x2 < x1: forced to one cell
            [1, 0, 0, 0, 0],
        ],
        dtype=dtype,
    )
    output, argmax = torch.ops.detaccel.roi_pool_forward(x, rois, 1.0, 3, 4)
    ref_output, ref_argmax = roi_pool_reference(x, rois, (3, 4), 1.0)
    assert torch.equal(output, ref_output)
    assert torch.equal(argmax, ref_argmax)
    assert torch.all(output[3] == 0) and torch.all(argmax[3] == -1)


def test_ties_take_first_maximum_in_row_major_order():
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 2] = 5.0
    x[0, 0, 2, 1] = 5.0
    _, argmax = torch.ops.detaccel.roi_pool_forward(x, torch.tensor([[0, 0, 0, 3, 3.0]]), 1.0, 1, 1)
    assert argmax.item() == 1 * 4 + 2


def test_nan_and_negative_infinity_follow_torchvision():
    x = torch.full((1, 2, 3, 3), float("nan"))
    x[0, 1] = -float("inf")
    rois = torch.tensor([[0, 0, 0, 2, 2.0]])
    ours = ops.roi_pool(x, rois, 2, 1.0)
    theirs = torchvision.ops.roi_pool(x, rois, 2, 1.0)
    assert torch.equal(ours, theirs)
    assert torch.all(ours == -torch.finfo(torch.float32).max)


def test_gradcheck_float64():
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 0, 0, 7, 7], [1, 1, 2, 5, 6], [0, 3, 1, 4, 7]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: ops.roi_pool(t, rois, (3, 2), 1.0), (x,))


def test_list_of_boxes_equals_roi_tensor():
    x = torch.randn(2, 4, 10, 10)
    boxes = [torch.tensor([[0, 0, 9, 9.0], [2, 2, 5, 5]]), torch.tensor([[1, 1, 8, 3.0]])]
    rois = torch.tensor([[0, 0, 0, 9, 9.0], [0, 2, 2, 5, 5], [1, 1, 1, 8, 3]])
    assert torch.equal(ops.roi_pool(x, boxes, 2), ops.roi_pool(x, rois, 2))


def test_channels_last_and_non_contiguous_inputs():
    x = torch.randn(1, 8, 12, 12)
    rois = random_rois(20, (12, 12), min_size=1, max_size=12)
    expected = torchvision.ops.roi_pool(x, rois, 3, 1.0)
    assert torch.equal(ops.roi_pool(x.to(memory_format=torch.channels_last), rois, 3), expected)
    wide = torch.randn(1, 8, 12, 24)[..., ::2]
    assert torch.equal(ops.roi_pool(wide, rois, 3), torchvision.ops.roi_pool(wide.contiguous(), rois, 3, 1.0))


def test_module_form():
    pool = ops.RoIPool((2, 2), 0.5)
    x = torch.randn(1, 2, 6, 6)
    rois = torch.tensor([[0, 0, 0, 10, 10.0]])
    assert torch.equal(pool(x, rois), torchvision.ops.roi_pool(x, rois, (2, 2), 0.5))
    assert "spatial_scale=0.5" in repr(pool)


def test_opcheck_schema_fake_and_autograd_registrations():
    x = torch.randn(1, 3, 6, 6, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 0, 0, 5, 5], [0, 1, 1, 3, 4]], dtype=torch.float64)
    torch.library.opcheck(torch.ops.detaccel.roi_pool_forward.default, (x, rois, 1.0, 2, 2))


def test_traces_under_torch_compile():
    x = torch.randn(1, 4, 10, 10, requires_grad=True)
    rois = torch.tensor([[0, 0, 0, 9, 9.0], [0, 2, 3, 6, 8]])

    def pooled_sum(t, r):
        return ops.roi_pool(t, r, 3, 1.0).sum()

    compiled = torch.compile(pooled_sum, backend="aot_eager", fullgraph=True)
    eager = pooled_sum(x, rois)
    (eager_grad,) = torch.autograd.grad(eager, x)
    result = compiled(x, rois)
    (compiled_grad,) = torch.autograd.grad(result, x)
    assert torch.equal(result, eager)
    assert torch.equal(compiled_grad, eager_grad)


def test_inference_skips_argmax_with_identical_output():
    x = torch.randn(1, 6, 10, 10)
    rois = random_rois(30, (10, 10), min_size=1, max_size=10)
    full, argmax = torch.ops.detaccel.roi_pool_forward(x, rois, 1.0, 3, 3)
    lean, empty = torch.ops.detaccel.roi_pool_forward(x, rois, 1.0, 3, 3, False)
    assert torch.equal(full, lean)
    assert argmax.shape == full.shape and empty.numel() == 0
    spp_full, _ = torch.ops.detaccel.spp_pool_forward(x, rois, 1.0, [1, 2], True)
    spp_lean, spp_empty = torch.ops.detaccel.spp_pool_forward(x, rois, 1.0, [1, 2], False)
    assert torch.equal(spp_full, spp_lean) and spp_empty.numel() == 0


def test_backward_without_saved_argmax_is_a_clear_error():
    x = torch.randn(1, 2, 5, 5, requires_grad=True)
    rois = torch.tensor([[0, 0, 0, 4, 4.0]])
    out, _ = torch.ops.detaccel.roi_pool_forward(x, rois, 1.0, 2, 2, False)
    with pytest.raises(RuntimeError, match="with_argmax=False"):
        out.sum().backward()


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_on_the_cpu_pools_like_float32(dtype):
    """Half precision on the CPU is pooled in float32: the same cells as float32 on the rounded values,
    output and gradient in the input's dtype (torchvision's roi_pool takes float16 on the CPU too)."""
    x = torch.randn(2, 8, 20, 24).to(dtype)
    rois = random_rois(40, (20 * 16, 24 * 16), batch_size=2, min_size=4, max_size=300).to(dtype)
    ours_in = x.clone().requires_grad_()
    ours = ops.roi_pool(ours_in, rois, (3, 4), 1 / 16)
    assert ours.dtype == dtype
    full_in = x.float().requires_grad_()
    full = ops.roi_pool(full_in, rois.float(), (3, 4), 1 / 16)
    assert torch.equal(ours.float(), full)
    grad = torch.randn_like(full)
    ours.backward(grad.to(dtype))
    full.backward(grad.to(dtype).float())
    assert ours_in.grad.dtype == dtype
    torch.testing.assert_close(ours_in.grad.float(), full_in.grad.to(dtype).float())
    if dtype == torch.float16:
        assert torch.equal(ours, torchvision.ops.roi_pool(x, rois, (3, 4), 1 / 16))
    spp = ops.spp_pool(x, rois, (1, 2), 1 / 16)
    assert spp.dtype == dtype
    assert torch.equal(spp.float(), ops.spp_pool(x.float(), rois.float(), (1, 2), 1 / 16))
