"""Datasets and proposals for training and evaluation, and the training batch loaders.

Proposals are computed once per dataset split with the configured generator
and cached as an ``.npz`` file (:func:`detaccel.evaluation.write_proposals`)
whose name carries a hash of the generator settings; a later run reuses it.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from detaccel.config.schema import Config
from detaccel.data import (
    BadInputWarning,
    DatasetError,
    DetectionDataset,
    ImageRecord,
    load_dataset,
    read_image,
    write_synthetic,
)
from detaccel.data.coco import CategoryWarning
from detaccel.data.hints import dataset_error_hint
from detaccel.data.samples import DetectionSamples, collate_samples
from detaccel.data.splits import voc_train_test_warning
from detaccel.data.transforms import Resize, TrainTransform
from detaccel.engine.distributed import DistInfo, barrier, batch_indices, epoch_shard
from detaccel.evaluation import read_proposals, write_proposals


class DataSetupError(ValueError):
    """A dataset or proposals problem reported to the user."""


def load_split(config: Config, split: str, info: DistInfo | None = None) -> DetectionDataset:
    """Load ``split`` of the configured dataset (writing the synthetic set first when asked and missing)."""
    data = config.data
    root = Path(data.root)
    if data.synthetic and not (root / "synthetic.json").is_file():
        if info is None or info.is_main:
            print(
                f"data.synthetic: writing the embedded synthetic dataset ({data.synthetic_images} images) "
                f"to {root.resolve()}",
                file=sys.stderr,
            )
            write_synthetic(root, "voc", num_images=data.synthetic_images)
        if info is not None:
            barrier(info)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadInputWarning)
        warnings.simplefilter("ignore", CategoryWarning)  # reported below, from the dataset
        try:
            dataset = load_dataset(
                data.format,
                root,
                split,
                classes=data.classes,
                skip_bad=data.skip_bad,
                allow_empty=data.allow_empty,
                split_dir=data.split_dir,
                annotations=data.annotations,
                images=data.images,
            )
        except (DatasetError, ValueError) as error:
            hint = ""
            if isinstance(error, DatasetError):
                hint = dataset_error_hint(
                    error, config=True, classes=data.classes, skip_bad=data.skip_bad, root=data.root
                )
            raise DataSetupError(f"{error} ({hint})" if hint else str(error)) from None
    for issue in dataset.issues:
        print(f"detaccel: warning: {issue}", file=sys.stderr)
    if dataset.left_out_categories and (info is None or info.is_main):
        listed = ", ".join(str(c) for c in dataset.left_out_categories)
        print(
            f"detaccel: warning: split {split!r}: categories left out of the class list "
            f"(not trained or scored): {listed}",
            file=sys.stderr,
        )
    if len(dataset) == 0:
        raise DataSetupError(f"split {split!r} of {root} has no images")
    if data.format == "voc" and split == data.train_split and (info is None or info.is_main):
        overlap = voc_train_test_warning(dataset.root, data.train_split, data.test_split, data.split_dir)
        if overlap:
            print(f"detaccel: warning: {overlap} (see `detaccel data split`)", file=sys.stderr)
    return dataset


def _cache_path(config: Config, dataset: DetectionDataset, cache_dir: Path) -> Path:
    key = json.dumps(
        {
            "generator": config.proposals.name,
            "params": config.proposals.params,
            "root": str(Path(dataset.root).resolve()),
            "split": dataset.split,
            "images": [str(r.image_id) for r in dataset.records],
        },
        sort_keys=True,
        default=str,
    )
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    return cache_dir / f"{config.proposals.name}-{dataset.split}-{digest}.npz"


def compute_proposals(config: Config, records: Sequence[ImageRecord], progress: bool = True) -> list[Any]:
    """Run the configured generator on every record's image: ``[(boxes, scores or None), ...]``."""
    from detaccel.models.proposal_generator import build_proposal_source

    name = config.proposals.name
    try:
        generator = build_proposal_source(name, config.proposals.params, backbone=None).generator
    except (TypeError, ValueError) as error:
        raise DataSetupError(f"proposals: {error}") from None
    out = []
    for record in tqdm(
        records, desc=f"proposals ({config.proposals.name})", disable=not progress, leave=False
    ):
        bgr = np.ascontiguousarray(read_image(record.file_path)[:, :, ::-1])
        try:
            result = generator.generate(bgr, image_id=record.image_id)
        except LookupError as error:
            raise DataSetupError(f"proposals: {error}") from None
        out.append((result.boxes, result.scores))
    have_scores = {scores is not None for _, scores in out}
    if len(have_scores) > 1:
        out = [(boxes, None) for boxes, _ in out]
    return out


def records_for_model(
    config: Config,
    dataset: DetectionDataset,
    model: Any,
    cache_dir: Path,
    info: DistInfo | None = None,
    progress: bool = True,
) -> list[ImageRecord]:
    """The records ``model`` trains or is evaluated on: carrying cached proposals where its generator's
    boxes depend on the image alone, as they are where it computes them from its own features."""
    if model.proposal_generator.cacheable:
        return with_proposals(config, dataset, cache_dir, info, progress)
    return list(dataset.records)


def with_proposals(
    config: Config,
    dataset: DetectionDataset,
    cache_dir: Path,
    info: DistInfo | None = None,
    progress: bool = True,
) -> list[ImageRecord]:
    """The dataset's records carrying proposals, computed once and cached under ``cache_dir``."""
    path = _cache_path(config, dataset, cache_dir)
    main = info is None or info.is_main
    if not path.is_file() and main:
        start = time.perf_counter()
        proposals = compute_proposals(config, dataset.records, progress=progress)
        write_proposals(path, dataset.records, proposals)
        seconds = time.perf_counter() - start
        print(
            f"proposals: {config.proposals.name} on {len(dataset)} images of {dataset.split!r} "
            f"in {seconds:.1f} s ({seconds / len(dataset):.3f} s/image) -> {path}",
            file=sys.stderr,
        )
    if info is not None:
        barrier(info)
    try:
        entries = read_proposals(path, dataset.records)
    except DatasetError as error:
        raise DataSetupError(f"cached proposals: {error} (delete the file to recompute)") from None
    empty = (np.zeros((0, 4), np.float32), None)
    out = []
    for record in dataset.records:
        boxes, scores = entries.get(record.image_id, empty)
        out.append(record.with_proposals(boxes, scores))
    return out


def train_transform(config: Config, mean: Sequence[float], std: Sequence[float]) -> TrainTransform:
    """Training resizing and flipping of ``config.data``, normalised with the backbone's ``mean``/``std``."""
    return TrainTransform(
        Resize(tuple(config.data.train_scales), config.data.max_size),
        flip_probability=0.5 if config.data.flip else 0.0,
        mean=mean,
        std=std,
    )


class _EpochSamples(torch.utils.data.Dataset):
    """``DetectionSamples`` indexed by ``(epoch, index)`` so that workers apply the right epoch."""

    def __init__(self, samples: DetectionSamples) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        epoch, index = key
        self.samples.set_epoch(epoch)
        return self.samples[index]


class _IterationBatches(torch.utils.data.Sampler):
    def __init__(self, start: int, stop: int, batch_size: int, num_items: int, info: DistInfo, seed: int):
        self.start, self.stop, self.batch_size = start, stop, batch_size
        self.num_items, self.info, self.seed = num_items, info, seed

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for iteration in range(self.start, self.stop):
            yield batch_indices(
                iteration, self.batch_size, self.num_items, self.info.rank, self.info.world_size, self.seed
            )


def image_batches(
    config: Config,
    records: Sequence[ImageRecord],
    start: int,
    info: DistInfo,
    transform: TrainTransform,
    size_divisibility: int,
) -> Iterator[dict[str, Any]]:
    """Image-centric batches from iteration ``start`` to ``train.max_iter``.

    Each rank reads its own shard of every epoch (see :func:`batch_indices`).
    """
    samples = _EpochSamples(DetectionSamples(records, transform, seed=config.train.seed))
    sampler = _IterationBatches(
        start, config.train.max_iter, config.train.images_per_batch, len(records), info, config.train.seed
    )
    loader = torch.utils.data.DataLoader(
        samples,
        batch_sampler=sampler,
        num_workers=config.data.num_workers,
        collate_fn=lambda items: collate_samples(items, size_divisibility),
        generator=torch.Generator().manual_seed(config.train.seed),
        persistent_workers=False,
    )
    return iter(loader)


class RegionPool:
    """R-CNN's region-centric sampling: windows (proposals and ground truth) of this rank's images,
    split into foreground and background by IoU, drawn uniformly across images each iteration."""

    def __init__(
        self, config: Config, records: Sequence[ImageRecord], info: DistInfo, transform: TrainTransform
    ) -> None:
        from detaccel.models.sampling import pixel_iou

        train = config.train
        self.records = list(records)
        self.config = config
        self.shard = sorted(epoch_shard(len(records), 0, info.rank, info.world_size, train.seed).tolist())
        fg, bg = [], []
        for index in self.shard:
            record = self.records[index]
            proposals = record.proposals if record.proposals is not None else np.zeros((0, 4), np.float32)
            boxes = torch.from_numpy(np.concatenate((record.boxes, proposals[: config.proposals.max_train])))
            gt = torch.from_numpy(record.boxes.copy())
            iou = pixel_iou(boxes, gt).max(dim=1).values if len(gt) else torch.zeros(len(boxes))
            for window in torch.nonzero(iou >= train.fg_iou).flatten().tolist():
                fg.append((index, window))
            for window in torch.nonzero(iou < train.bg_iou_high).flatten().tolist():
                bg.append((index, window))
        if not fg and not bg:
            raise DataSetupError(
                "no training regions: the training images have neither objects nor proposals"
            )
        self.fg, self.bg = fg, bg
        self.num_fg = min(round(train.fg_fraction * train.regions_per_batch), len(fg)) if fg else 0
        self.num_bg = train.regions_per_batch - self.num_fg
        self.transform = transform
        self.info = info

    def batch(self, iteration: int, size_divisibility: int) -> dict[str, Any]:
        """The batch of ``iteration``: images holding the drawn windows, and each window's image and index."""
        rng = np.random.default_rng([self.config.train.seed, iteration, self.info.rank, 7])
        drawn = []
        if self.num_fg:
            drawn += [self.fg[i] for i in rng.integers(len(self.fg), size=self.num_fg)]
        if self.bg:
            drawn += [self.bg[i] for i in rng.integers(len(self.bg), size=self.num_bg)]
        images = sorted({index for index, _ in drawn})
        samples = DetectionSamples(
            [self.records[i] for i in images], self.transform, seed=self.config.train.seed
        )
        samples.set_epoch(iteration)
        loaded = [samples[i] for i in range(len(images))]
        batch = collate_samples(loaded, size_divisibility)
        slot = {index: i for i, index in enumerate(images)}
        batch["windows"] = [(slot[index], window) for index, window in drawn]
        return batch
