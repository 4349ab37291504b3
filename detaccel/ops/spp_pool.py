"""Spatial pyramid pooling of RoIs (SPPnet), all levels in one fused kernel."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from detaccel.ops import extension, validation

DEFAULT_LEVELS = (1, 2, 3, 6)


def spp_pool(
    input: torch.Tensor,
    rois: torch.Tensor | Sequence[torch.Tensor],
    levels: Sequence[int] = DEFAULT_LEVELS,
    spatial_scale: float = 1.0,
) -> torch.Tensor:
    """Pool every RoI into an ``n x n`` grid for each level ``n`` and concatenate.

    The result equals
    ``torch.cat([roi_pool(input, rois, (n, n), spatial_scale).flatten(1) for n in levels], 1)``
    but comes from one kernel launch. A whole image is one RoI covering it.

    Args:
        input: feature map ``[N, C, H, W]``.
        rois: ``[K, 5]`` rows ``(batch_index, x1, y1, x2, y2)`` or a list of ``[L_i, 4]`` boxes.
        levels: grid size of each pyramid level (1 to 8 levels).
        spatial_scale: feature-map cells per input pixel.

    Returns:
        ``[K, C * sum(n * n for n in levels)]``; differentiable with respect to ``input``.
    """
    extension.require()
    validation.check_feature_map(input)
    rois = validation.as_rois(rois, input)
    levels = validation.check_levels(levels)
    spatial_scale = validation.check_spatial_scale(spatial_scale)
    validation.check_roi_values(rois, input.shape[0])
    with_argmax = validation.needs_grad(input)
    kernel_input, kernel_rois = validation.in_kernel_dtype(input, rois)
    output, _ = torch.ops.detaccel.spp_pool_forward(
        kernel_input, kernel_rois, spatial_scale, levels, with_argmax
    )
    return output.to(input.dtype)


def spp_output_dim(channels: int, levels: Sequence[int] = DEFAULT_LEVELS) -> int:
    """Length of one RoI's pooled vector: ``channels * sum(n * n)``."""
    return channels * sum(n * n for n in levels)


class SpatialPyramidPool(torch.nn.Module):
    """Module form of :func:`spp_pool`."""

    def __init__(self, levels: Sequence[int] = DEFAULT_LEVELS, spatial_scale: float = 1.0) -> None:
        super().__init__()
        self.levels = validation.check_levels(list(levels))
        self.spatial_scale = validation.check_spatial_scale(spatial_scale)

    def forward(self, input: torch.Tensor, rois: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        return spp_pool(input, rois, self.levels, self.spatial_scale)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, spatial_scale={self.spatial_scale}"


def _register() -> None:
    @torch.library.register_fake("detaccel::spp_pool_forward")
    def _forward_fake(input, rois, spatial_scale, levels, with_argmax=True):
        shape = (rois.shape[0], input.shape[1] * sum(n * n for n in levels))
        return input.new_empty(shape), input.new_empty(shape if with_argmax else (0,), dtype=torch.int32)

    @torch.library.register_fake("detaccel::spp_pool_backward")
    def _backward_fake(grad, rois, argmax, levels, batch_size, channels, height, width):
        return grad.new_empty((batch_size, channels, height, width))

    def setup_context(ctx, inputs, output):
        input, rois, _, levels, *_ = inputs
        ctx.mark_non_differentiable(output[1])
        ctx.set_materialize_grads(False)  # no zero-filled gradient for argmax
        ctx.save_for_backward(rois, output[1])
        ctx.input_shape = tuple(input.shape)
        ctx.levels = list(levels)

    def backward(ctx, grad_output, _grad_argmax):
        rois, argmax = ctx.saved_tensors
        if grad_output is None:
            return None, None, None, None, None
        validation.check_saved_argmax(argmax, grad_output)
        grad_input = torch.ops.detaccel.spp_pool_backward(
            grad_output, rois, argmax, ctx.levels, *ctx.input_shape
        )
        return grad_input, None, None, None, None

    torch.library.register_autograd("detaccel::spp_pool_forward", backward, setup_context=setup_context)


if extension.is_loaded():
    _register()
