"""Argument checks run by the operator wrappers before any kernel launch.

Every failure raises ``TypeError`` or ``ValueError`` whose message starts with
the argument's name. Checks that read tensor values (finite coordinates,
integral in-range batch indices) cost one device synchronisation and are
skipped while ``torch.compile`` traces; the kernels themselves never read out
of bounds either way (an invalid batch index pools to zeros).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
# Dtypes the CPU kernels compute in; half precision runs there in float32 (exact for max pooling).
CPU_KERNEL_DTYPES = (torch.float32, torch.float64)
MAX_LEVELS = 8
MAX_POOLED_SIZE = 1024


def _tracing() -> bool:
    return torch.compiler.is_compiling()


def check_tensor(name: str, value: object) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    return value


def check_float_dtype(name: str, tensor: torch.Tensor) -> None:
    if tensor.dtype not in FLOAT_DTYPES:
        names = ", ".join(str(d).replace("torch.", "") for d in FLOAT_DTYPES)
        raise TypeError(
            f"{name}: dtype {tensor.dtype} is not supported on {tensor.device.type} (use {names})"
        )


def in_kernel_dtype(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``tensors`` as the kernels take them: float16/bfloat16 on the CPU become float32 (differentiably)."""
    return tuple(
        t.float() if t.device.type != "cuda" and t.dtype not in CPU_KERNEL_DTYPES else t for t in tensors
    )


def check_same_device(name: str, tensor: torch.Tensor, reference: torch.Tensor) -> None:
    if tensor.device != reference.device:
        raise ValueError(f"{name}: expected device {reference.device}, got {tensor.device}")


def check_feature_map(input: torch.Tensor) -> None:
    """``input`` must be a floating [N, C, H, W] tensor."""
    check_tensor("input", input)
    if input.dim() != 4:
        raise ValueError(f"input: expected 4 dims [N, C, H, W], got shape {tuple(input.shape)}")
    check_float_dtype("input", input)
    if input.numel() >= 2**31:
        raise ValueError("input: more than 2^31 elements is not supported")


def as_rois(boxes: torch.Tensor | Sequence[torch.Tensor], input: torch.Tensor) -> torch.Tensor:
    """Return RoIs as [K, 5] (batch_index, x1, y1, x2, y2) in ``input``'s dtype and device.

    Accepts a [K, 5] tensor or a list with one [L_i, 4] box tensor per image.
    """
    if isinstance(boxes, (list, tuple)):
        for i, b in enumerate(boxes):
            check_tensor(f"rois[{i}]", b)
            if b.dim() != 2 or b.shape[1] != 4:
                raise ValueError(f"rois[{i}]: expected shape [L, 4] (x1, y1, x2, y2), got {tuple(b.shape)}")
            check_same_device(f"rois[{i}]", b, input)
        if not boxes:
            return input.new_zeros((0, 5))
        index = torch.cat(
            [
                torch.full((b.shape[0], 1), i, dtype=input.dtype, device=input.device)
                for i, b in enumerate(boxes)
            ]
        )
        return torch.cat([index, torch.cat([b.to(input.dtype) for b in boxes])], dim=1)
    rois = check_tensor("rois", boxes)
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise ValueError(
            f"rois: expected shape [K, 5] (batch_index, x1, y1, x2, y2), got {tuple(rois.shape)}"
        )
    check_same_device("rois", rois, input)
    if rois.dtype != input.dtype:
        raise TypeError(f"rois: expected dtype {input.dtype} (the input's), got {rois.dtype}")
    return rois


def check_roi_values(rois: torch.Tensor, batch_size: int) -> None:
    """Coordinates must be finite; batch indices integral and in [0, batch_size)."""
    if rois.numel() == 0 or _tracing():
        return
    index = rois[:, 0]
    flags = torch.stack(
        [
            ~torch.isfinite(rois).all(dim=1),
            index != index.floor(),
            (index < 0) | (index >= batch_size),
        ]
    )
    bad = flags.any(dim=1).tolist()
    if not any(bad):
        return
    messages = (
        "non-finite coordinates",
        "a batch index that is not an integer",
        f"a batch index outside [0, {batch_size})",
    )
    for which, message in enumerate(messages):
        if bad[which]:
            row = int(flags[which].nonzero()[0, 0])
            raise ValueError(f"rois: row {row} has {message}: {rois[row].tolist()}")


def check_spatial_scale(spatial_scale: float) -> float:
    if isinstance(spatial_scale, bool) or not isinstance(spatial_scale, (int, float)):
        raise TypeError(f"spatial_scale: expected a number, got {type(spatial_scale).__name__}")
    if not math.isfinite(spatial_scale) or spatial_scale <= 0:
        raise ValueError(f"spatial_scale: expected a finite positive number, got {spatial_scale}")
    return float(spatial_scale)


def _check_size(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name}: expected integers, got {value!r}")
    if value <= 0:
        raise ValueError(f"{name}: sizes must be positive, got {value}")
    if value > MAX_POOLED_SIZE:
        raise ValueError(f"{name}: sizes above {MAX_POOLED_SIZE} are not supported, got {value}")
    return value


def check_output_size(output_size: int | Sequence[int]) -> tuple[int, int]:
    """Normalise ``output_size`` (an int or (height, width)) to a pair of positive ints."""
    if isinstance(output_size, int) and not isinstance(output_size, bool):
        size = _check_size("output_size", output_size)
        return size, size
    if not isinstance(output_size, (tuple, list)) or len(output_size) != 2:
        raise ValueError(f"output_size: expected an int or (height, width), got {output_size!r}")
    return _check_size("output_size", output_size[0]), _check_size("output_size", output_size[1])


def check_levels(levels: Sequence[int]) -> list[int]:
    """Pyramid levels: 1 to 8 positive ints (the grid size of each level)."""
    if isinstance(levels, int) or not isinstance(levels, (tuple, list)):
        raise TypeError(f"levels: expected a sequence of ints, got {levels!r}")
    if not 1 <= len(levels) <= MAX_LEVELS:
        raise ValueError(f"levels: expected 1 to {MAX_LEVELS} levels, got {len(levels)}")
    return [_check_size("levels", n) for n in levels]


def check_boxes(name: str, boxes: torch.Tensor) -> None:
    """``boxes`` must be a floating [N, 4] tensor."""
    check_tensor(name, boxes)
    if boxes.dim() != 2 or boxes.shape[1] != 4:
        raise ValueError(f"{name}: expected shape [N, 4] (x1, y1, x2, y2), got {tuple(boxes.shape)}")
    if not boxes.is_floating_point():
        raise TypeError(f"{name}: expected a floating-point tensor, got {boxes.dtype}")


def check_finite(name: str, tensor: torch.Tensor) -> None:
    if tensor.numel() == 0 or _tracing():
        return
    finite = torch.isfinite(tensor)
    if not bool(finite.all()):
        row = int((~finite).reshape(tensor.shape[0], -1).any(dim=1).nonzero()[0, 0])
        raise ValueError(f"{name}: row {row} is not finite: {tensor[row].tolist()}")


def needs_grad(input: torch.Tensor) -> bool:
    """Whether a pooling forward must keep its argmax for a backward pass."""
    return torch.is_grad_enabled() and input.requires_grad


def check_saved_argmax(argmax: torch.Tensor, grad_output: torch.Tensor) -> None:
    if argmax.numel() != grad_output.numel():
        raise RuntimeError(
            "backward through a pooling forward that ran with with_argmax=False; "
            "call it with with_argmax=True (the Python wrappers do when the input requires grad)"
        )


def check_iou_threshold(iou_threshold: float) -> float:
    if isinstance(iou_threshold, bool) or not isinstance(iou_threshold, (int, float)):
        raise TypeError(f"iou_threshold: expected a number, got {type(iou_threshold).__name__}")
    if not math.isfinite(iou_threshold):
        raise ValueError(f"iou_threshold: expected a finite number, got {iou_threshold}")
    return float(iou_threshold)
