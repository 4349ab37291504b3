import pytest
import torch
import torchvision

from detaccel import ops
from detaccel.ops.reference import spp_pool_reference
from tests.helpers import random_rois

LEVELS = (1, 2, 3, 6)


def per_level_torchvision(x, rois, levels, scale):
    return torch.cat([torchvision.ops.roi_pool(x, rois, (n, n), scale).flatten(1) for n in levels], dim=1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("levels", [LEVELS, (4,), (1, 2, 4, 8, 16)])
def test_forward_and_backward_equal_per_level_roi_pool(dtype, levels):
    x = torch.randn(2, 12, 20, 26, dtype=dtype)
    rois = random_rois(50, (20 * 16, 26 * 16), batch_size=2, min_size=4, max_size=400, dtype=dtype)
    ours_in = x.clone().requires_grad_()
    theirs_in = x.clone().requires_grad_()
    ours = ops.spp_pool(ours_in, rois, levels, 1 / 16)
    theirs = per_level_torchvision(theirs_in, rois, levels, 1 / 16)
    assert ours.shape == (50, ops.spp_output_dim(12, levels))
    assert torch.equal(ours, theirs)
    grad = torch.randn_like(ours)
    ours.backward(grad)
    theirs.backward(grad)
    torch.testing.assert_close(
        ours_in.grad, theirs_in.grad, rtol=0, atol=1e-12 if dtype == torch.float64 else 1e-5
    )


def test_equals_reference_on_small_case():
    x = torch.randn(1, 3, 7, 9)
    rois = torch.tensor([[0, 0, 0, 8, 6], [0, 1.5, 2.5, 4.4, 5.6], [0, -3, -3, 1, 1], [0, 30, 30, 40, 40]])
    assert torch.equal(ops.spp_pool(x, rois, (1, 2, 3)), spp_pool_reference(x, rois, (1, 2, 3), 1.0))


def test_whole_image_roi_is_global_pyramid():
    x = torch.randn(1, 5, 12, 12)
    whole = torch.tensor([[0, 0, 0, 11, 11.0]])
    out = ops.spp_pool(x, whole, (1, 2))
    assert torch.equal(out[0, :5], x.amax(dim=(2, 3))[0])
    quadrants = torch.nn.functional.adaptive_max_pool2d(x, 2).flatten(1)[0]
    assert torch.equal(out[0, 5:], quadrants)


def test_gradcheck_float64():
    x = torch.randn(1, 2, 7, 7, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 0, 0, 6, 6], [0, 1, 2, 5, 5]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: ops.spp_pool(t, rois, (1, 2, 3)), (x,))


def test_opcheck_and_module_form():
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    rois = torch.tensor([[0, 0, 0, 5, 5], [0, 1, 1, 3, 4]], dtype=torch.float64)
    torch.library.opcheck(torch.ops.detaccel.spp_pool_forward.default, (x, rois, 1.0, [1, 2]))
    module = ops.SpatialPyramidPool((1, 2), 1.0)
    assert torch.equal(module(x, rois), ops.spp_pool(x, rois, (1, 2)))
