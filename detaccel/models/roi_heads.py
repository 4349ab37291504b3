"""The RoI heads: RoI features, the fully connected head and the predictor, and their training losses.

In training :meth:`RoIHeads.forward` samples the RoIs it learns from (Fast
R-CNN's image-centric batches among each image's proposals and ground truth, or
R-CNN's region-centric windows drawn beforehand), pools them, runs the head and
the predictor, and returns its losses: ``loss_cls`` (softmax cross-entropy) and
``loss_box`` (smooth L1 of the foreground's own class), with ``accuracy`` and
``fg_fraction`` of the sampled RoIs as figures to log.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from detaccel.models.losses import detection_loss
from detaccel.models.sampling import assign_targets, sample_rois
from detaccel.profiling import stage

Targets = Sequence[dict[str, Any]]


def non_crowd(target: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(boxes, labels)`` of a target's objects that are not crowd regions."""
    boxes, labels, crowd = target["boxes"], target["labels"], target.get("crowd")
    if crowd is None or not bool(crowd.any()):
        return boxes, labels
    keep = ~crowd
    return boxes[keep], labels[keep]


def roi_rows(boxes: torch.Tensor, index: int) -> torch.Tensor:
    """RoIs ``[K, 5]`` ``(batch_index, x1, y1, x2, y2)`` of image ``index``'s ``boxes`` ``[K, 4]``."""
    return torch.cat((boxes.new_full((len(boxes), 1), index), boxes), dim=1)


class RoIHeads(nn.Module):
    """``roi_features`` → ``head`` (fc6, fc7) → ``predictor``; samples and scores training RoIs.

    ``sampling``: the keyword arguments of :func:`~detaccel.models.sampling.sample_rois`
    (:func:`~detaccel.models.sampling.sampling_options`); ``max_train``: proposals
    per image considered in training; ``box_loss_weight``: weight of ``loss_box``.
    """

    def __init__(
        self,
        roi_features: nn.Module,
        head: nn.Module,
        predictor: nn.Module,
        sampling: dict[str, Any],
        max_train: int,
        box_loss_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.roi_features = roi_features
        self.head = head
        self.predictor = predictor
        self.sampling = dict(sampling)
        self.max_train = int(max_train)
        self.box_loss_weight = float(box_loss_weight)

    _graph: Any = None  # the exported head graph holding the head's and predictor's weights (use_graph)

    def use_graph(self, session: Any) -> None:
        """Run :meth:`predict` in ``session``, the exported head graph (input ``pooled``, outputs
        ``class_scores`` and ``box_deltas`` among others): the head's and predictor's own weights are
        unused from now on, and only inference runs."""
        self._graph = session

    def scores(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(fc7 features, class logits, box deltas)`` of pooled RoI features, each stage timed."""
        if self._graph is not None:
            raise RuntimeError("these RoI heads run their exported ONNX graph: predict() only")
        with stage("head"):
            features = self.head(pooled)
        with stage("predictor"):
            logits, deltas = self.predictor(features)
        return features, logits, deltas

    def predict(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(detection scores [K, N], box deltas [K, 4 (N + 1)])`` of pooled RoI features: what
        inference reads (the softmax's object classes, or the SVMs' squashed margins)."""
        if self._graph is not None:
            with stage("head"):
                feeds = {"pooled": pooled.float().contiguous().numpy()}
                scores, deltas = self._graph.run(["class_scores", "box_deltas"], feeds)
            return torch.from_numpy(scores), torch.from_numpy(deltas)
        features, logits, deltas = self.scores(pooled)
        with stage("predictor"):
            return self.predictor.detection_scores(features, logits), deltas

    def forward(
        self,
        shared: torch.Tensor,
        proposals: Sequence[torch.Tensor | None],
        targets: Targets,
        backbone: nn.Module,
        seed: int = 0,
    ) -> dict[str, torch.Tensor]:
        """Losses of the RoIs sampled from ``proposals[i]`` (image ``i``'s boxes in the batch's pixels)
        and ``targets`` (per image: ``boxes``, ``labels``, ``crowd``, ``image_size``; R-CNN: ``windows``),
        pooled on ``shared`` (the backbone's map; R-CNN: the images). ``seed`` fixes the sampling."""
        if self.roi_features.per_region:
            rois, labels, box_targets = self.region_centric(proposals, targets)
        else:
            rois, labels, box_targets = self.image_centric(proposals, targets, seed)
        device = shared.device
        pooled = self.roi_features.pool(shared, rois.to(device, shared.dtype), backbone)
        _, logits, deltas = self.scores(pooled)
        labels = labels.to(device)
        losses = detection_loss(logits, deltas, labels, box_targets.to(device), self.box_loss_weight)
        losses.pop("loss")
        losses["loss_box"] = self.box_loss_weight * losses["loss_box"]
        losses["fg_fraction"] = (labels > 0).float().mean()
        return losses

    def image_centric(
        self, proposals: Sequence[torch.Tensor | None], targets: Targets, seed: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Fast R-CNN's sampling: per image, foreground and background RoIs among its proposals and
        ground truth; an image with neither gives itself whole as background."""
        generator = torch.Generator().manual_seed(seed)
        rois, labels, box_targets = [], [], []
        for i, target in enumerate(targets):
            gt, gt_labels = non_crowd(target)
            boxes = proposals[i]
            boxes = torch.zeros((0, 4)) if boxes is None else boxes[: self.max_train]
            sampled = sample_rois(boxes, gt, gt_labels, **self.sampling, generator=generator)
            if len(sampled) == 0:
                height, width = target["image_size"]
                sampled.boxes = torch.tensor([[0.0, 0.0, width - 1.0, height - 1.0]])
                sampled.labels = torch.zeros(1, dtype=torch.long)
                sampled.targets = torch.zeros((1, 4))
            rois.append(roi_rows(sampled.boxes, i))
            labels.append(sampled.labels)
            box_targets.append(sampled.targets)
        return torch.cat(rois), torch.cat(labels), torch.cat(box_targets)

    def region_centric(
        self, proposals: Sequence[torch.Tensor | None], targets: Targets
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """R-CNN's windows: ``targets[i]["windows"]`` index image ``i``'s ground truth followed by its
        proposals; a window is foreground at IoU >= ``fg_iou`` with an object, else background."""
        rois, labels, box_targets = [], [], []
        for i, target in enumerate(targets):
            windows = target.get("windows")
            if not windows:
                continue
            gt, gt_labels = non_crowd(target)
            boxes = proposals[i]
            boxes = torch.zeros((0, 4)) if boxes is None else boxes[: self.max_train]
            candidates = torch.cat((target["boxes"], boxes))[torch.tensor(windows)]
            iou, window_labels, window_targets = assign_targets(
                candidates, gt, gt_labels, self.sampling["weights"]
            )
            rois.append(roi_rows(candidates, i))
            labels.append(torch.where(iou >= self.sampling["fg_iou"], window_labels, 0))
            box_targets.append(window_targets)
        if not rois:
            raise ValueError("region-centric training: no image of the batch has windows")
        return torch.cat(rois), torch.cat(labels), torch.cat(box_targets)
