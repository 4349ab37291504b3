"""CUDA kernels against the CPU kernels and torchvision (skipped without a GPU)."""

import pytest
import torch
import torchvision

from detaccel import ops
from tests.conftest import requires_cuda
from tests.helpers import random_boxes, random_rois

pytestmark = [pytest.mark.cuda, requires_cuda]
LEVELS = (1, 2, 3, 6)


def feature_map_and_rois(dtype, num_rois=500):
    x = torch.randn(2, 64, 38, 50)
    rois = random_rois(num_rois, (38 * 16, 50 * 16), batch_size=2, min_size=4, max_size=500)
    return x, rois


def test_roi_pool_float32_equals_cpu_and_torchvision_with_gradients():
    x, rois = feature_map_and_rois(torch.float32)
    cpu_out, cpu_arg = torch.ops.detaccel.roi_pool_forward(x, rois, 1 / 16, 7, 7)
    gx, grois = x.cuda(), rois.cuda()
    out, arg = torch.ops.detaccel.roi_pool_forward(gx, grois, 1 / 16, 7, 7)
    assert torch.equal(out.cpu(), cpu_out)
    assert torch.equal(arg.cpu(), cpu_arg)
    assert torch.equal(out, torchvision.ops.roi_pool(gx, grois, 7, 1 / 16))
    grad = torch.randn_like(cpu_out)
    cpu_grad = torch.ops.detaccel.roi_pool_backward(grad, rois, cpu_arg, 7, 7, *x.shape)
    gpu_grad = torch.ops.detaccel.roi_pool_backward(grad.cuda(), grois, arg, 7, 7, *x.shape)
    torch.testing.assert_close(gpu_grad.cpu(), cpu_grad, rtol=1e-5, atol=1e-5)


def test_spp_pool_equals_cpu_in_float32_and_float64():
    for dtype in (torch.float32, torch.float64):
        x, rois = feature_map_and_rois(dtype)
        x, rois = x.to(dtype), rois.to(dtype)
        cpu = ops.spp_pool(x, rois, LEVELS, 1 / 16)
        gpu = ops.spp_pool(x.cuda(), rois.cuda(), LEVELS, 1 / 16)
        assert torch.equal(gpu.cpu(), cpu)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_pools_the_same_cells_as_float32(dtype):
    x, rois = feature_map_and_rois(dtype)
    # Integer-valued RoIs and a scale of 1 make the geometry exact in every type.
    rois = (rois / 16).round()
    x_low = x.to(dtype)
    out, arg = torch.ops.detaccel.roi_pool_forward(x_low.cuda(), rois.to(dtype).cuda(), 1.0, 7, 7)
    ref, ref_arg = torch.ops.detaccel.roi_pool_forward(x_low.float(), rois, 1.0, 7, 7)
    assert out.dtype == dtype
    assert torch.equal(out.float().cpu(), ref)
    assert torch.equal(arg.cpu(), ref_arg)
    spp = ops.spp_pool(x_low.cuda(), rois.to(dtype).cuda(), LEVELS, 1.0)
    assert torch.equal(spp.float().cpu(), ops.spp_pool(x_low.float(), rois, LEVELS, 1.0))
    xg = x_low.cuda().requires_grad_()
    ops.roi_pool(xg, rois.to(dtype).cuda(), 7, 1.0).float().sum().backward()
    assert xg.grad.dtype == dtype and torch.isfinite(xg.grad.float()).all()


def test_gradcheck_float64_on_gpu():
    x = torch.randn(1, 2, 7, 7, dtype=torch.float64, device="cuda", requires_grad=True)
    rois = torch.tensor([[0, 0, 0, 6, 6], [0, 1, 2, 5, 5]], dtype=torch.float64, device="cuda")
    assert torch.autograd.gradcheck(lambda t: ops.spp_pool(t, rois, (1, 2, 3)), (x,))


def test_bad_batch_index_and_outside_rois_on_gpu():
    x = torch.randn(1, 4, 8, 8, device="cuda")
    rois = torch.tensor([[5, 0, 0, 3, 3], [0, 100, 100, 200, 200.0]], device="cuda")
    out, arg = torch.ops.detaccel.roi_pool_forward(x, rois, 1.0, 2, 2)
    assert torch.equal(out, torch.zeros_like(out)) and torch.all(arg == -1)
    with pytest.raises(ValueError, match="batch index outside"):
        ops.roi_pool(x, rois, 2)
    with pytest.raises(ValueError, match="rois: expected device cuda"):
        ops.roi_pool(x, rois.cpu(), 2)
    assert ops.roi_pool(x, torch.zeros(0, 5, device="cuda"), 2).shape == (0, 4, 2, 2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_nms_and_batched_nms_equal_cpu(dtype):
    boxes = random_boxes(3000)
    scores = torch.randperm(3000).float() / 3000
    idxs = torch.randint(0, 10, (3000,))
    boxes_low, scores_low = boxes.to(dtype), scores.to(dtype)
    expected = ops.nms(boxes_low.float(), scores_low.float(), 0.5)
    assert torch.equal(ops.nms(boxes_low.cuda(), scores_low.cuda(), 0.5).cpu(), expected)
    if dtype == torch.float32:
        assert torch.equal(
            ops.nms(boxes.cuda(), scores.cuda(), 0.5).cpu(), torchvision.ops.nms(boxes, scores, 0.5)
        )
        keep = ops.batched_nms(boxes.cuda(), scores.cuda(), idxs.cuda(), 0.5).cpu()
        assert torch.equal(keep, ops.batched_nms(boxes, scores, idxs, 0.5))
    assert ops.nms(torch.zeros(0, 4, device="cuda"), torch.zeros(0, device="cuda"), 0.5).shape == (0,)


def test_compiled_op_on_gpu():
    x = torch.randn(1, 8, 10, 10, device="cuda", requires_grad=True)
    rois = torch.tensor([[0, 0, 0, 9, 9.0]], device="cuda")
    compiled = torch.compile(
        lambda t: ops.roi_pool(t, rois, 3, 1.0).sum(), backend="aot_eager", fullgraph=True
    )
    assert torch.equal(compiled(x), ops.roi_pool(x, rois, 3, 1.0).sum())
