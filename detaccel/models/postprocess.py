"""From per-RoI scores and deltas to detections: decode, clip, per-class NMS, threshold, top-k."""

from __future__ import annotations

import torch

from detaccel.ops import batched_nms, clip_boxes_to_image, decode_boxes


def clip_pixel_boxes(boxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Inclusive pixel boxes ``[..., 4]`` clipped to an image of ``(height, width)``: to ``[0, width - 1]``
    and ``[0, height - 1]`` (its first and last pixels)."""
    height, width = image_size
    return clip_boxes_to_image(boxes, (height - 1, width - 1))


def decode_pixel_boxes(deltas: torch.Tensor, boxes: torch.Tensor, weights: tuple[float, ...]) -> torch.Tensor:
    """Apply class-specific deltas ``[K, 4 * C]`` to inclusive pixel boxes ``[K, 4]``.

    Returns inclusive boxes ``[K, C, 4]``.
    """
    edges = torch.cat((boxes[:, :2], boxes[:, 2:] + 1), dim=1)
    decoded = decode_boxes(deltas, edges, tuple(weights)).view(len(boxes), -1, 4)
    return torch.cat((decoded[..., :2], decoded[..., 2:] - 1), dim=-1)


def postprocess_detections(
    scores: torch.Tensor,
    box_deltas: torch.Tensor,
    proposals: torch.Tensor,
    image_size: tuple[int, int],
    *,
    box_weights: tuple[float, ...],
    score_threshold: float,
    nms_threshold: float,
    max_per_image: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Detections of one image: ``(boxes [D, 4], scores [D], labels [D])``, labels 0-based.

    Args:
        scores: ``[K, N]`` object-class scores (no background column).
        box_deltas: ``[K, 4 * (N + 1)]`` class-specific deltas (background first).
        proposals: ``[K, 4]`` inclusive boxes in the same pixels as the output.
        image_size: ``(height, width)`` that boxes are clipped to.
    """
    num_classes = scores.shape[1]
    if len(proposals) == 0:
        return proposals.new_zeros((0, 4)), proposals.new_zeros(0), torch.zeros(0, dtype=torch.long)
    boxes = decode_pixel_boxes(box_deltas, proposals, box_weights)[:, 1:]
    boxes = clip_pixel_boxes(boxes, image_size)
    labels = torch.arange(num_classes, device=scores.device).expand(len(proposals), num_classes)
    keep = scores > score_threshold
    boxes, flat_scores, labels = boxes[keep], scores[keep], labels[keep]
    if len(flat_scores) == 0:
        return boxes.reshape(0, 4), flat_scores, labels
    # NMS on edge coordinates (inclusive boxes one pixel wider), per class.
    edges = torch.cat((boxes[:, :2], boxes[:, 2:] + 1), dim=1)
    kept = batched_nms(edges, flat_scores, labels, nms_threshold)
    kept = kept[:max_per_image]
    return boxes[kept], flat_scores[kept], labels[kept]
