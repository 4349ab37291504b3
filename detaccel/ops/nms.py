"""Greedy non-maximum suppression (``detaccel::nms`` and ``detaccel::batched_nms``)."""

from __future__ import annotations

import torch

from detaccel.ops import extension, validation


def _prepare(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float):
    validation.check_boxes("boxes", boxes)
    validation.check_tensor("scores", scores)
    if scores.dim() != 1 or scores.shape[0] != boxes.shape[0]:
        raise ValueError(f"scores: expected shape [{boxes.shape[0]}], got {tuple(scores.shape)}")
    validation.check_same_device("scores", scores, boxes)
    if not scores.is_floating_point():
        raise TypeError(f"scores: expected a floating-point tensor, got {scores.dtype}")
    iou_threshold = validation.check_iou_threshold(iou_threshold)
    validation.check_finite("boxes", boxes)
    validation.check_finite("scores", scores.unsqueeze(1))
    # Half precision runs in float32 on the CPU; scores follow the boxes' dtype.
    (boxes,) = validation.in_kernel_dtype(boxes)
    return boxes, scores.to(boxes.dtype), iou_threshold


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Indices of the boxes kept by greedy NMS, in decreasing score order.

    A box is dropped when its IoU with a higher-scoring kept box is greater
    than ``iou_threshold``. Equal scores keep their input order. Matches
    ``torchvision.ops.nms``.

    Args:
        boxes: ``[N, 4]`` as ``(x1, y1, x2, y2)``.
        scores: ``[N]``.
        iou_threshold: IoU above which the lower-scoring box is discarded.

    Returns:
        int64 indices into ``boxes``.
    """
    extension.require()
    boxes, scores, iou_threshold = _prepare(boxes, scores, iou_threshold)
    return torch.ops.detaccel.nms(boxes, scores, iou_threshold)


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float
) -> torch.Tensor:
    """NMS applied independently per category ``idxs``; kept indices in decreasing score order.

    Boxes of different categories never suppress each other. Matches
    ``torchvision.ops.batched_nms``.
    """
    extension.require()
    boxes, scores, iou_threshold = _prepare(boxes, scores, iou_threshold)
    validation.check_tensor("idxs", idxs)
    if idxs.dim() != 1 or idxs.shape[0] != boxes.shape[0]:
        raise ValueError(f"idxs: expected shape [{boxes.shape[0]}], got {tuple(idxs.shape)}")
    validation.check_same_device("idxs", idxs, boxes)
    if idxs.is_floating_point() or idxs.is_complex() or idxs.dtype == torch.bool:
        raise TypeError(f"idxs: expected an integer tensor, got {idxs.dtype}")
    return torch.ops.detaccel.batched_nms(boxes, scores, idxs, iou_threshold)


def _register() -> None:
    def _fake(boxes, scores, *args):
        size = torch.library.get_ctx().new_dynamic_size()
        return boxes.new_empty((size,), dtype=torch.long)

    torch.library.register_fake("detaccel::nms")(_fake)
    torch.library.register_fake("detaccel::batched_nms")(_fake)


if extension.is_loaded():
    _register()
