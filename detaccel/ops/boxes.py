"""Vectorised box utilities. Boxes are ``[N, 4]`` tensors ``(x1, y1, x2, y2)`` in pixels."""

from __future__ import annotations

import math

import torch

# Largest log-scale change a decoded box may take (as in Fast R-CNN's successors).
DEFAULT_SCALE_CLAMP = math.log(1000.0 / 16)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Area of each box, ``(x2 - x1) * (y2 - y1)``; ``[N]``."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(boxes1: torch.Tensor, boxes2: torch.Tensor) -> torch.Tensor:
    """Pairwise intersection over union, ``[N, M]``; 0 where the union is empty."""
    area1, area2 = box_area(boxes1), box_area(boxes2)
    top_left = torch.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    bottom_right = torch.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = (bottom_right - top_left).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    union = area1[:, None] + area2[None, :] - inter
    return torch.where(
        union > 0, inter / union.clamp(min=torch.finfo(union.dtype).tiny), torch.zeros_like(inter)
    )


def encode_boxes(
    targets: torch.Tensor,
    proposals: torch.Tensor,
    weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
) -> torch.Tensor:
    """Regression targets ``(dx, dy, dw, dh)`` that move ``proposals`` onto ``targets``.

    ``dx = wx * (tx - px) / pw``, ``dw = ww * log(tw / pw)`` with centres and
    sizes of the two boxes; ``weights`` are ``(wx, wy, ww, wh)``. ``[N, 4]``.
    """
    wx, wy, ww, wh = weights
    pw = proposals[:, 2] - proposals[:, 0]
    ph = proposals[:, 3] - proposals[:, 1]
    px = proposals[:, 0] + 0.5 * pw
    py = proposals[:, 1] + 0.5 * ph
    tw = targets[:, 2] - targets[:, 0]
    th = targets[:, 3] - targets[:, 1]
    tx = targets[:, 0] + 0.5 * tw
    ty = targets[:, 1] + 0.5 * th
    return torch.stack(
        (wx * (tx - px) / pw, wy * (ty - py) / ph, ww * torch.log(tw / pw), wh * torch.log(th / ph)), dim=1
    )


def decode_boxes(
    deltas: torch.Tensor,
    proposals: torch.Tensor,
    weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0),
    scale_clamp: float = DEFAULT_SCALE_CLAMP,
) -> torch.Tensor:
    """Apply ``deltas`` to ``proposals``: the inverse of :func:`encode_boxes`.

    ``deltas`` is ``[N, 4 * K]`` (class-specific deltas for K classes); the
    result has the same shape. ``dw`` and ``dh`` are clamped at ``scale_clamp``.
    """
    wx, wy, ww, wh = weights
    deltas = deltas.to(proposals.dtype)
    pw = (proposals[:, 2] - proposals[:, 0])[:, None]
    ph = (proposals[:, 3] - proposals[:, 1])[:, None]
    px = proposals[:, 0, None] + 0.5 * pw
    py = proposals[:, 1, None] + 0.5 * ph
    dx = deltas[:, 0::4] / wx
    dy = deltas[:, 1::4] / wy
    dw = (deltas[:, 2::4] / ww).clamp(max=scale_clamp)
    dh = (deltas[:, 3::4] / wh).clamp(max=scale_clamp)
    cx = dx * pw + px
    cy = dy * ph + py
    half_w = 0.5 * torch.exp(dw) * pw
    half_h = 0.5 * torch.exp(dh) * ph
    return torch.stack((cx - half_w, cy - half_h, cx + half_w, cy + half_h), dim=2).reshape(deltas.shape)


def clip_boxes_to_image(boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Clip boxes (``[..., 4]``) to an image of ``size = (height, width)``."""
    height, width = size
    x = boxes[..., 0::2].clamp(min=0, max=width)
    y = boxes[..., 1::2].clamp(min=0, max=height)
    return torch.stack((x, y), dim=-1).reshape(boxes.shape)


def remove_small_boxes(boxes: torch.Tensor, min_size: float) -> torch.Tensor:
    """Indices of boxes whose width and height are both at least ``min_size``."""
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    return torch.nonzero((widths >= min_size) & (heights >= min_size)).flatten()
