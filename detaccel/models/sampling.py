"""RoI target assignment and sampling for training.

Labels use ``0`` for background and ``c + 1`` for dataset class ``c``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from detaccel.ops import box_iou, encode_boxes


@dataclass
class SampledRoIs:
    """Training RoIs of one image: boxes ``[S, 4]``, labels ``[S]`` (0 = background), targets ``[S, 4]``."""

    boxes: torch.Tensor
    labels: torch.Tensor
    targets: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


def _edges(boxes: torch.Tensor) -> torch.Tensor:
    # Inclusive pixel boxes to edge coordinates, so that IoU and deltas use widths x2 - x1 + 1.
    return torch.cat((boxes[:, :2], boxes[:, 2:] + 1), dim=1)


def pixel_iou(boxes: torch.Tensor, gt_boxes: torch.Tensor) -> torch.Tensor:
    """IoU of inclusive pixel boxes (``[N, M]``)."""
    return box_iou(_edges(boxes), _edges(gt_boxes))


def encode_pixel_boxes(
    targets: torch.Tensor, boxes: torch.Tensor, weights: tuple[float, ...]
) -> torch.Tensor:
    """Regression targets between inclusive pixel boxes."""
    return encode_boxes(_edges(targets), _edges(boxes), tuple(weights))


def assign_targets(
    boxes: torch.Tensor, gt_boxes: torch.Tensor, gt_labels: torch.Tensor, weights: tuple[float, ...]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For each box: its best IoU with a ground-truth box, that box's label + 1, and the regression target."""
    if len(gt_boxes) == 0:
        zeros = boxes.new_zeros(len(boxes))
        return zeros, torch.zeros(len(boxes), dtype=torch.long), boxes.new_zeros((len(boxes), 4))
    iou = pixel_iou(boxes, gt_boxes)
    best_iou, best = iou.max(dim=1)
    labels = gt_labels[best].long() + 1
    targets = encode_pixel_boxes(gt_boxes[best], boxes, weights)
    return best_iou, labels, targets


def sampling_options(config: Any) -> dict[str, Any]:
    """The keyword arguments of :func:`sample_rois` that a configuration's ``train`` section sets."""
    train = config.train
    return {
        "num_samples": train.rois_per_image,
        "fg_fraction": train.fg_fraction,
        "fg_iou": train.fg_iou,
        "bg_iou_low": train.bg_iou_low,
        "bg_iou_high": train.bg_iou_high,
        "weights": tuple(config.model.box_weights),
    }


def sample_rois(
    proposals: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_labels: torch.Tensor,
    *,
    num_samples: int,
    fg_fraction: float,
    fg_iou: float,
    bg_iou_low: float,
    bg_iou_high: float,
    weights: tuple[float, ...],
    generator: torch.Generator,
) -> SampledRoIs:
    """Fast R-CNN's image-centric sampling: ground truth joins the proposals, then
    up to ``fg_fraction * num_samples`` foreground RoIs (IoU >= ``fg_iou``) and
    background RoIs (IoU in ``[bg_iou_low, bg_iou_high)``) fill the rest.

    When too few background RoIs fall in that range, those under ``bg_iou_low``
    complete the batch, so that every image contributes ``num_samples`` RoIs
    when it has that many candidates.
    """
    boxes = torch.cat((gt_boxes.to(proposals.dtype), proposals)) if len(gt_boxes) else proposals
    iou, labels, targets = assign_targets(boxes, gt_boxes, gt_labels, weights)
    fg = torch.nonzero(iou >= fg_iou).flatten()
    bg = torch.nonzero((iou < bg_iou_high) & (iou >= bg_iou_low)).flatten()
    low = torch.nonzero(iou < bg_iou_low).flatten()

    def pick(indices: torch.Tensor, count: int) -> torch.Tensor:
        count = min(count, len(indices))
        return indices[torch.randperm(len(indices), generator=generator)[:count]]

    fg = pick(fg, round(fg_fraction * num_samples))
    bg = pick(bg, num_samples - len(fg))
    if len(fg) + len(bg) < num_samples:
        bg = torch.cat((bg, pick(low, num_samples - len(fg) - len(bg))))
    keep = torch.cat((fg, bg))
    labels = labels[keep].clone()
    labels[len(fg) :] = 0
    return SampledRoIs(boxes[keep], labels, targets[keep])
