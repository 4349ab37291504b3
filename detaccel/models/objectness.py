"""A learned objectness map for R²-CNN: a small conv head on the map R²-CNN reads, trained with the detector.

With ``proposals.params.reduction: objectness`` R²-CNN integrates this head's
one-channel map instead of the backbone's channels: levels, groups and the
contrast ranking then read where the head sees objects. The head reads the
map detached (it never changes the detector's features) and learns, with a
binary cross-entropy, FCOS-style *centreness* targets: a cell whose centre lies
in a ground-truth box has target ``sqrt(min(l, r) / max(l, r) * min(t, b) / max(t, b))``
(``l, r, t, b``: distances to the box's sides; 1 at the centre, 0 at the border;
the largest over boxes), 0 elsewhere. Nested levels of such a map separate
neighbouring objects that a plain inside/outside mask would merge.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional

from detaccel.proposals.receptive_field import ReceptiveField


class ObjectnessHead(nn.Module):
    """``conv3x3(C -> hidden) -> ReLU -> conv1x1(hidden -> 1)``: objectness logits of every map cell."""

    def __init__(self, in_channels: int, hidden: int = 64) -> None:
        super().__init__()
        if in_channels < 1 or hidden < 1:
            raise ValueError(f"objectness head: channels must be positive, got {in_channels} and {hidden}")
        self.conv = nn.Conv2d(in_channels, hidden, 3, padding=1)
        self.logits = nn.Conv2d(hidden, 1, 1)
        for layer in (self.conv, self.logits):
            nn.init.normal_(layer.weight, std=0.01)
            nn.init.zeros_(layer.bias)

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, 1, h, w]`` of ``feature_map`` ``[N, C, h, w]`` (read detached)."""
        if feature_map.dim() != 4 or feature_map.shape[1] != self.conv.in_channels:
            raise ValueError(
                f"objectness head: expected a map [N, {self.conv.in_channels}, h, w], "
                f"got {tuple(feature_map.shape)}"
            )
        return self.logits(functional.relu(self.conv(feature_map.detach())))


def centreness_targets(
    gt_boxes: Sequence[torch.Tensor],
    map_size: tuple[int, int],
    field: tuple[ReceptiveField, ReceptiveField],
) -> torch.Tensor:
    """Targets ``[N, 1, h, w]`` in ``[0, 1]`` for image ``i``'s inclusive pixel boxes ``gt_boxes[i]``.

    Cell ``(y, x)`` is centred at pixel ``(offset_y + y * stride_y, offset_x + x * stride_x)``.
    """
    height, width = map_size
    fx, fy = field
    device = gt_boxes[0].device if len(gt_boxes) else torch.device("cpu")
    xs = fx.offset + fx.stride * torch.arange(width, dtype=torch.float32, device=device)
    ys = fy.offset + fy.stride * torch.arange(height, dtype=torch.float32, device=device)
    out = torch.zeros((len(gt_boxes), 1, height, width), device=device)
    for i, boxes in enumerate(gt_boxes):
        boxes = boxes.reshape(-1, 4).float().to(device)
        if not len(boxes):
            continue
        left = xs[None, None, :] - boxes[:, 0, None, None]
        right = boxes[:, 2, None, None] - xs[None, None, :]
        top = ys[None, :, None] - boxes[:, 1, None, None]
        bottom = boxes[:, 3, None, None] - ys[None, :, None]
        inside = (left >= 0) & (right >= 0) & (top >= 0) & (bottom >= 0)
        horizontal = torch.minimum(left, right) / torch.maximum(left, right).clamp(min=1e-6)
        vertical = torch.minimum(top, bottom) / torch.maximum(top, bottom).clamp(min=1e-6)
        score = (horizontal.clamp(min=0) * vertical.clamp(min=0)).sqrt()  # [G, h, w] by broadcasting
        out[i, 0] = torch.where(inside, score, torch.zeros_like(score)).amax(dim=0)
    return out


def objectness_loss(
    logits: torch.Tensor,
    gt_boxes: Sequence[torch.Tensor],
    field: tuple[ReceptiveField, ReceptiveField],
) -> torch.Tensor:
    """Mean binary cross-entropy of ``logits`` ``[N, 1, h, w]`` against :func:`centreness_targets`."""
    if logits.shape[0] != len(gt_boxes):
        raise ValueError(f"objectness loss: {logits.shape[0]} maps but boxes of {len(gt_boxes)} images")
    targets = centreness_targets(gt_boxes, tuple(logits.shape[-2:]), field).to(logits.device, logits.dtype)
    return functional.binary_cross_entropy_with_logits(logits, targets)
