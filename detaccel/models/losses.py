"""Fast R-CNN's multi-task loss: softmax cross-entropy plus smooth-L1 on the true class's box deltas."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def detection_loss(
    class_logits: torch.Tensor,
    box_deltas: torch.Tensor,
    labels: torch.Tensor,
    targets: torch.Tensor,
    box_loss_weight: float = 1.0,
) -> dict[str, torch.Tensor]:
    """``{"loss_cls", "loss_box", "loss", "accuracy"}`` over a batch of sampled RoIs.

    The box loss sums smooth-L1 (beta 1) over the foreground RoIs' deltas of
    their own class and divides by the number of RoIs, as in Fast R-CNN.
    """
    count = max(len(labels), 1)
    loss_cls = F.cross_entropy(class_logits, labels, reduction="sum") / count
    foreground = torch.nonzero(labels > 0).flatten()
    if len(foreground):
        deltas = box_deltas.view(len(labels), -1, 4)[foreground, labels[foreground]]
        loss_box = F.smooth_l1_loss(deltas, targets[foreground], beta=1.0, reduction="sum") / count
    else:
        loss_box = box_deltas.sum() * 0.0
    with torch.no_grad():
        accuracy = (class_logits.argmax(1) == labels).float().mean() if len(labels) else labels.new_zeros(())
    return {
        "loss": loss_cls + box_loss_weight * loss_box,
        "loss_cls": loss_cls,
        "loss_box": loss_box,
        "accuracy": accuracy,
    }
