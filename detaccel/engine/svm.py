"""R-CNN's per-class linear SVMs on fc7 features, trained with hard-negative mining.

Positives of class ``c`` are its ground-truth boxes; negatives are proposals
whose IoU with every box of class ``c`` is under ``train.svm_neg_iou``. Each
SVM minimises ``mean(squared hinge) + svm_c / 2 * |w|^2`` with L-BFGS, first on
the positives and a random subset of negatives, then ``svm_hard_negative_rounds``
times more after adding the negatives it scores above -1 (the hard ones).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
import torch
from tqdm import tqdm

from detaccel.config.schema import Config
from detaccel.data import ImageRecord
from detaccel.data.samples import inference_samples
from detaccel.data.transforms import InferenceTransform, Resize, batch_images
from detaccel.engine.distributed import DistInfo, broadcast_object
from detaccel.models.detector import RegionDetector
from detaccel.models.sampling import pixel_iou

INITIAL_NEGATIVES = 4000


def _fit(features: torch.Tensor, targets: torch.Tensor, c: float, init: torch.Tensor | None) -> torch.Tensor:
    weights = init.clone() if init is not None else torch.zeros(features.shape[1] + 1, dtype=torch.float64)
    weights.requires_grad_(True)
    x = torch.cat((features, torch.ones(len(features), 1, dtype=features.dtype)), dim=1)
    optimizer = torch.optim.LBFGS([weights], max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        margins = (1 - targets * (x @ weights)).clamp(min=0)
        loss = (margins**2).mean() + 0.5 * c * (weights[:-1] ** 2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return weights.detach()


@torch.no_grad()
def _collect(
    model: RegionDetector, records: Sequence[ImageRecord], config: Config, info: DistInfo, progress: bool
):
    transform = InferenceTransform(
        Resize((config.data.test_scale,), config.data.max_size), model.pixel_mean, model.pixel_std
    )
    features, ious, gt_labels = [], [], []
    for record in tqdm(records, desc="svm features", disable=not progress, leave=False):
        sample = inference_samples(record, transform)[0]
        proposals = sample.get("proposals", torch.zeros((0, 4)))[: config.proposals.max_train]
        keep = ~torch.from_numpy(record.crowd.copy())
        gt = torch.from_numpy(record.boxes.copy())[keep]
        labels = torch.from_numpy(record.labels.copy())[keep]
        boxes = torch.cat((gt * sample["scale"], proposals))
        images, _ = batch_images([sample["image"]], model.size_divisibility)
        rois = torch.cat((boxes.new_zeros((len(boxes), 1)), boxes), dim=1)
        features.append(model.region_features(images.to(info.device), rois.to(info.device)).cpu().double())
        per_class = torch.zeros((len(boxes), model.num_classes))
        if len(gt):
            iou = pixel_iou(boxes / sample["scale"], gt)
            for c in range(model.num_classes):
                if bool((labels == c).any()):
                    per_class[:, c] = iou[:, labels == c].max(dim=1).values
        ious.append(per_class)
        is_gt = torch.full((len(boxes),), -1, dtype=torch.long)
        is_gt[: len(gt)] = labels
        gt_labels.append(is_gt)
    return torch.cat(features), torch.cat(ious), torch.cat(gt_labels)


def train_svms(
    model: RegionDetector,
    records: Sequence[ImageRecord],
    config: Config,
    info: DistInfo,
    progress: bool = True,
) -> None:
    """Fit ``model.predictor.svm`` (rank 0 computes, every rank receives the weights)."""
    train = config.train
    weights = None
    if info.is_main:
        model.eval()
        chosen = list(records)
        if train.svm_images:
            chosen = chosen[: train.svm_images]
        features, ious, gt_labels = _collect(model, chosen, config, info, progress)
        scale = float(features.norm(dim=1).mean()) / 20.0  # R-CNN's feature scaling: mean norm 20
        features = features / max(scale, 1e-12)
        rng = np.random.default_rng(train.seed)
        rows = []
        for c in range(model.num_classes):
            positives = torch.nonzero(gt_labels == c).flatten()
            negatives = torch.nonzero(ious[:, c] < train.svm_neg_iou).flatten()
            if len(positives) == 0:
                rows.append(torch.cat((torch.zeros(features.shape[1]), torch.tensor([-1.0]))).double())
                continue
            cache = negatives[torch.from_numpy(rng.permutation(len(negatives))[:INITIAL_NEGATIVES])]
            solution = None
            for _ in range(1 + train.svm_hard_negative_rounds):
                chosen_rows = torch.cat((positives, cache))
                targets = torch.cat((torch.ones(len(positives)), -torch.ones(len(cache)))).double()
                solution = _fit(features[chosen_rows], targets, train.svm_c, solution)
                scores = features[negatives] @ solution[:-1] + solution[-1]
                hard = negatives[scores > -1.0]
                easy_in_cache = cache[(features[cache] @ solution[:-1] + solution[-1]) < -1.05]
                new = hard[~torch.isin(hard, cache)]
                if len(new) == 0:
                    break
                cache = torch.cat((cache[~torch.isin(cache, easy_in_cache)], new))
            rows.append(solution)
            print(
                f"svm {c}: {len(positives)} positives, {len(cache)} negatives in cache",
                file=sys.stderr,
            )
        stacked = torch.stack(rows)
        weights = (stacked[:, :-1] / scale).float(), stacked[:, -1].float()
    weights = broadcast_object(info, weights)
    with torch.no_grad():
        model.predictor.svm.weight.copy_(weights[0])
        model.predictor.svm.bias.copy_(weights[1])
