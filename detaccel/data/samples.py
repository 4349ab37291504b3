"""A ``torch`` dataset over image records: decode, transform, and collate into padded batches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from detaccel.data.io import read_image
from detaccel.data.records import ImageRecord
from detaccel.data.transforms import (
    InferenceTransform,
    TrainTransform,
    batch_images,
    hflip_boxes,
    scale_boxes,
)


class DetectionSamples(torch.utils.data.Dataset):
    """Training samples: each item is one image transformed by a :class:`TrainTransform`.

    Randomness comes from a generator seeded with ``(seed, epoch, index)``, so an
    item is the same whichever worker loads it; call :meth:`set_epoch` each epoch.
    Proposals carried by the records are resized and flipped with the image.
    """

    def __init__(self, records: Sequence[ImageRecord], transform: TrainTransform, seed: int = 0) -> None:
        self.records = list(records)
        self.transform = transform
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        record = self.records[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        out = self.transform(read_image(record.file_path), record.boxes, rng)
        sample = {
            "image": torch.from_numpy(out.image),
            "boxes": torch.from_numpy(out.boxes),
            "labels": torch.from_numpy(record.labels.copy()),
            "difficult": torch.from_numpy(record.difficult.copy()),
            "crowd": torch.from_numpy(record.crowd.copy()),
            "scale": out.scale,
            "flipped": out.flipped,
            "record": record,
        }
        if record.proposals is not None:
            proposals = hflip_boxes(record.proposals, record.width) if out.flipped else record.proposals
            sample["proposals"] = torch.from_numpy(scale_boxes(proposals, out.scale))
        return sample


def inference_samples(record: ImageRecord, transform: InferenceTransform) -> list[dict[str, Any]]:
    """One sample per test scale of ``record`` (proposals resized with the image)."""
    image = read_image(record.file_path)
    samples = []
    for out in transform(image, record.proposals):
        samples.append({"image": torch.from_numpy(out.image), "scale": out.scale, "record": record})
        if record.proposals is not None:
            samples[-1]["proposals"] = torch.from_numpy(out.boxes)
    return samples


def collate_samples(samples: Sequence[dict[str, Any]], size_divisibility: int = 1) -> dict[str, Any]:
    """Pad samples into one batch: ``images`` ``[B, 3, H, W]``, ``image_sizes`` and per-image lists."""
    images, sizes = batch_images([s["image"] for s in samples], size_divisibility)
    batch: dict[str, Any] = {"images": images, "image_sizes": sizes}
    for key in samples[0]:
        if key != "image":
            batch[key] = [s.get(key) for s in samples]
    return batch
