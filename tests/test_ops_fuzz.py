"""Property-based comparison of the operators with torchvision and the references."""

import torch
import torchvision
from hypothesis import given, settings
from hypothesis import strategies as st

from detaccel import ops
from detaccel.ops.reference import nms_reference, roi_pool_reference

SCALES = st.sampled_from([1.0, 0.5, 0.25, 1 / 16])
coordinate = st.floats(min_value=-40, max_value=200, allow_nan=False, width=32)


@st.composite
def pooling_case(draw, dtypes=(torch.float32, torch.float64)):
    dtype = draw(st.sampled_from(dtypes))
    batch = draw(st.integers(1, 2))
    channels = draw(st.integers(1, 5))
    height = draw(st.integers(1, 12))
    width = draw(st.integers(1, 12))
    seed = draw(st.integers(0, 2**31 - 1))
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, channels, height, width, generator=generator, dtype=dtype)
    if draw(st.booleans()):  # ties make the argmax order matter
        x = x.round()
    rows = draw(
        st.lists(
            st.tuples(st.integers(0, batch - 1), coordinate, coordinate, coordinate, coordinate),
            min_size=0,
            max_size=6,
        )
    )
    rois = torch.tensor(rows, dtype=dtype).reshape(-1, 5)
    return x, rois, draw(SCALES)


@settings(max_examples=1000)
@given(case=pooling_case(), pooled_h=st.integers(1, 4), pooled_w=st.integers(1, 4))
def test_roi_pool_matches_torchvision_and_reference(case, pooled_h, pooled_w):
    x, rois, scale = case
    output, argmax = torch.ops.detaccel.roi_pool_forward(x, rois, scale, pooled_h, pooled_w)
    assert torch.equal(output, torchvision.ops.roi_pool(x, rois, (pooled_h, pooled_w), scale))
    ref_output, ref_argmax = roi_pool_reference(x, rois, (pooled_h, pooled_w), scale)
    assert torch.equal(output, ref_output)
    assert torch.equal(argmax, ref_argmax)
    if rois.shape[0]:
        grad = torch.randn_like(output)
        ours = torch.ops.detaccel.roi_pool_backward(grad, rois, argmax, pooled_h, pooled_w, *x.shape)
        theirs_in = x.clone().requires_grad_()
        torchvision.ops.roi_pool(theirs_in, rois, (pooled_h, pooled_w), scale).backward(grad)
        torch.testing.assert_close(ours, theirs_in.grad, rtol=0, atol=1e-5)


@settings(max_examples=300)
@given(case=pooling_case(), levels=st.lists(st.integers(1, 6), min_size=1, max_size=4))
def test_spp_pool_matches_per_level_torchvision(case, levels):
    x, rois, scale = case
    expected = torch.cat([torchvision.ops.roi_pool(x, rois, (n, n), scale).flatten(1) for n in levels], dim=1)
    assert torch.equal(ops.spp_pool(x, rois, levels, scale), expected)


@st.composite
def nms_case(draw):
    n = draw(st.integers(0, 40))
    seed = draw(st.integers(0, 2**31 - 1))
    generator = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=generator) * 50
    wh = torch.rand(n, 2, generator=generator) * 30
    if draw(st.booleans()):
        wh = wh.round()  # degenerate (zero-area) boxes too
    boxes = torch.cat([xy, xy + wh], dim=1)
    scores = torch.randperm(n, generator=generator).float()
    idxs = torch.randint(0, draw(st.integers(1, 4)), (n,), generator=generator)
    return boxes, scores, idxs


@settings(max_examples=500)
@given(case=nms_case(), threshold=st.sampled_from([0.0, 0.1, 0.3, 0.5, 0.7, 0.9]))
def test_nms_matches_torchvision_and_reference(case, threshold):
    boxes, scores, idxs = case
    keep = ops.nms(boxes, scores, threshold)
    assert torch.equal(keep, torchvision.ops.nms(boxes, scores, threshold))
    assert torch.equal(keep, nms_reference(boxes, scores, threshold))
    batched = ops.batched_nms(boxes, scores, idxs, threshold)
    assert torch.equal(batched, nms_reference(boxes, scores, threshold, idxs))
