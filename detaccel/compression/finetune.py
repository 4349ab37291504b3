"""Fine-tuning a compressed head on training RoIs pooled once (the retrain step of prune-then-retrain).

The backbone and the proposals stay fixed, so each training image's RoIs are
sampled once as Fast R-CNN's training samples them (``train.rois_per_image``,
``fg_fraction``, IoU ranges), pooled once, and the head and predictor are then
trained on mini-batches of those features with the Fast R-CNN loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm import tqdm

from detaccel.config.schema import Config
from detaccel.data import ImageRecord, read_image
from detaccel.models.detector import RegionDetector
from detaccel.models.losses import detection_loss
from detaccel.models.sampling import sample_rois, sampling_options


class TrainingRegions:
    """Sampled, pooled RoIs of ``records`` with their labels (0: background) and box targets."""

    def __init__(
        self,
        model: RegionDetector,
        records: Sequence[ImageRecord],
        config: Config,
        seed: int = 0,
        progress: bool = True,
    ) -> None:
        generator = torch.Generator().manual_seed(seed)
        features, labels, targets = [], [], []
        model.eval()
        for record in tqdm(records, desc="pool training RoIs", disable=not progress, leave=False):
            keep = ~record.crowd.astype(bool)
            proposals = record.proposals if record.proposals is not None else np.zeros((0, 4), np.float32)
            sampled = sample_rois(
                torch.tensor(np.asarray(proposals, np.float32)[: config.proposals.max_train]),
                torch.tensor(record.boxes[keep]),
                torch.tensor(record.labels[keep]),
                **sampling_options(config),
                generator=generator,
            )
            if len(sampled) == 0:
                continue
            regions = model.pool_regions([read_image(record.file_path)], [sampled.boxes.numpy()])
            features.append(regions.features.cpu())
            labels.append(sampled.labels)
            targets.append(sampled.targets)
        if not features:
            raise ValueError("fine-tuning: no training RoI could be sampled (no proposals, no objects)")
        self.features = torch.cat(features)
        self.labels = torch.cat(labels)
        self.targets = torch.cat(targets)

    def __len__(self) -> int:
        return len(self.labels)


def finetune_head(
    model: RegionDetector,
    regions: TrainingRegions,
    config: Config,
    iterations: int,
    lr: float | None = None,
    batch_rois: int | None = None,
    seed: int = 0,
) -> list[float]:
    """``iterations`` SGD steps of ``model``'s head and predictor on ``regions``; the losses per step.

    Defaults: a tenth of ``train.base_lr`` (fine-tuning), ``train.momentum`` and
    ``weight_decay``, mini-batches of ``images_per_batch * rois_per_image`` RoIs.
    """
    train = config.train
    parameters = [*model.head.parameters(), *model.predictor.parameters()]
    optimizer = torch.optim.SGD(
        parameters,
        lr=train.base_lr * 0.1 if lr is None else lr,
        momentum=train.momentum,
        weight_decay=train.weight_decay,
    )
    size = batch_rois or train.images_per_batch * train.rois_per_image
    generator = torch.Generator().manual_seed(seed)
    device = model.device
    losses = []
    model.head.train()
    model.predictor.train()
    try:
        for _ in range(iterations):
            index = torch.randint(len(regions), (min(size, len(regions)),), generator=generator)
            features = model.head(regions.features[index].to(device))
            logits, deltas = model.predictor(features)
            loss = detection_loss(
                logits,
                deltas,
                regions.labels[index].to(device),
                regions.targets[index].to(device),
                train.box_loss_weight,
            )["loss"]
            if not torch.isfinite(loss):
                raise ValueError("fine-tuning diverged (non-finite loss): lower the learning rate")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
    finally:
        model.eval()
    return losses
