"""Fast R-CNN RoI max pooling (``detaccel::roi_pool_forward``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from detaccel.ops import extension, validation


def roi_pool(
    input: torch.Tensor,
    rois: torch.Tensor | Sequence[torch.Tensor],
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
) -> torch.Tensor:
    """Max-pool each RoI of ``input`` into a fixed ``output_size`` grid.

    Same semantics as ``torchvision.ops.roi_pool``: corners are scaled by
    ``spatial_scale`` and rounded, the window is ``max(end - start + 1, 1)``
    cells, bin ``p`` spans ``[floor(p * size / n), ceil((p + 1) * size / n))``
    clipped to the map, an empty bin (for example a RoI outside the map) gives 0.

    Args:
        input: feature map ``[N, C, H, W]`` (float32/float64/float16/bfloat16;
            on the CPU half precision is pooled in float32, exactly).
        rois: ``[K, 5]`` rows ``(batch_index, x1, y1, x2, y2)`` in input-image
            pixels, or a list with one ``[L_i, 4]`` box tensor per image.
        output_size: ``n`` or ``(height, width)`` of the pooled grid.
        spatial_scale: feature-map cells per input pixel (1/16 for stride 16).

    Returns:
        ``[K, C, height, width]``; differentiable with respect to ``input``.
    """
    extension.require()
    validation.check_feature_map(input)
    rois = validation.as_rois(rois, input)
    pooled_height, pooled_width = validation.check_output_size(output_size)
    spatial_scale = validation.check_spatial_scale(spatial_scale)
    validation.check_roi_values(rois, input.shape[0])
    with_argmax = validation.needs_grad(input)
    kernel_input, kernel_rois = validation.in_kernel_dtype(input, rois)
    output, _ = torch.ops.detaccel.roi_pool_forward(
        kernel_input, kernel_rois, spatial_scale, pooled_height, pooled_width, with_argmax
    )
    return output.to(input.dtype)


class RoIPool(torch.nn.Module):
    """Module form of :func:`roi_pool`."""

    def __init__(self, output_size: int | tuple[int, int], spatial_scale: float) -> None:
        super().__init__()
        self.output_size = validation.check_output_size(output_size)
        self.spatial_scale = validation.check_spatial_scale(spatial_scale)

    def forward(self, input: torch.Tensor, rois: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        return roi_pool(input, rois, self.output_size, self.spatial_scale)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}, spatial_scale={self.spatial_scale}"


def _register() -> None:
    @torch.library.register_fake("detaccel::roi_pool_forward")
    def _forward_fake(input, rois, spatial_scale, pooled_height, pooled_width, with_argmax=True):
        shape = (rois.shape[0], input.shape[1], pooled_height, pooled_width)
        return input.new_empty(shape), input.new_empty(shape if with_argmax else (0,), dtype=torch.int32)

    @torch.library.register_fake("detaccel::roi_pool_backward")
    def _backward_fake(grad, rois, argmax, pooled_height, pooled_width, batch_size, channels, height, width):
        return grad.new_empty((batch_size, channels, height, width))

    def setup_context(ctx, inputs, output):
        input, rois, _, pooled_height, pooled_width, *_ = inputs
        ctx.mark_non_differentiable(output[1])
        ctx.set_materialize_grads(False)  # no zero-filled gradient for argmax
        ctx.save_for_backward(rois, output[1])
        ctx.input_shape = tuple(input.shape)
        ctx.pooled = (pooled_height, pooled_width)

    def backward(ctx, grad_output, _grad_argmax):
        rois, argmax = ctx.saved_tensors
        if grad_output is None:
            return None, None, None, None, None, None
        validation.check_saved_argmax(argmax, grad_output)
        grad_input = torch.ops.detaccel.roi_pool_backward(
            grad_output, rois, argmax, *ctx.pooled, *ctx.input_shape
        )
        return grad_input, None, None, None, None, None

    torch.library.register_autograd("detaccel::roi_pool_forward", backward, setup_context=setup_context)


if extension.is_loaded():
    _register()
