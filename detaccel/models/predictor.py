"""Class scores (N + 1, background first) and class-specific box deltas, and R-CNN's optional SVMs."""

from __future__ import annotations

import torch
from torch import nn


class Predictor(nn.Module):
    """``cls_score``: ``[K, N + 1]`` logits; ``bbox_pred``: ``[K, 4 * (N + 1)]`` deltas.

    With ``svm`` set, :attr:`svm` holds one linear SVM per object class (``[K, N]``
    scores) used for detection scores instead of the softmax.
    """

    def __init__(self, in_dim: int, num_classes: int, svm: bool = False) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.cls_score = nn.Linear(in_dim, num_classes + 1)
        self.bbox_pred = nn.Linear(in_dim, 4 * (num_classes + 1))
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)
        self.svm = nn.Linear(in_dim, num_classes) if svm else None
        if self.svm is not None:
            nn.init.zeros_(self.svm.weight)
            nn.init.zeros_(self.svm.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.cls_score(x), self.bbox_pred(x)

    def detection_scores(self, x: torch.Tensor, class_logits: torch.Tensor) -> torch.Tensor:
        """``[K, N]`` scores of the object classes: squashed SVM margins, or softmax probabilities."""
        if self.svm is not None:
            return torch.sigmoid(self.svm(x))  # monotonic in the margin; comparable thresholds
        return torch.softmax(class_logits, dim=1)[:, 1:]
