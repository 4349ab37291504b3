"""The training loop shared by the three families, with checkpoints, resume, logging and DDP."""

from __future__ import annotations

import copy
import math
import random
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from detaccel.config.loader import config_to_dict, write_resolved_config
from detaccel.config.r2cnn import r2cnn_settings
from detaccel.config.schema import Config
from detaccel.engine.checkpoint import (
    CheckpointError,
    load_checkpoint,
    load_model_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from detaccel.engine.data import RegionPool, image_batches, load_split, records_for_model, train_transform
from detaccel.engine.distributed import DistInfo, all_gather_objects, barrier
from detaccel.engine.logging import MetricsWriter, plot_loss_curve
from detaccel.engine.schedule import StepSchedule
from detaccel.models.detector import RegionDetector, build_detector
from detaccel.models.proposal_generator import shapes_input_size
from detaccel.proposals.box_shapes import resolve_shapes
from detaccel.proposals.registry import canonical_name

LAST_CHECKPOINT = "last_checkpoint.pth"
FINAL_MODEL = "model_final.pth"
RESOLVED_CONFIG = "config.yaml"
ARCHITECTURE_SECTIONS = ("model", "backbone", "roi_features", "head")
# Keys of those sections that do not change the weights (where they come from, how inference runs).
NON_ARCHITECTURE_KEYS = ("weights", "fold_batchnorm", "channels_last", "runtime")


def build_optimizer(config: Config, model: nn.Module) -> torch.optim.Optimizer:
    """SGD with momentum; no weight decay on biases and normalisation parameters."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (no_decay if parameter.ndim <= 1 else decay).append(parameter)
    train = config.train
    return torch.optim.SGD(
        [{"params": decay, "weight_decay": train.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=train.base_lr,
        momentum=train.momentum,
    )


def checkpoint_payload(
    config: Config,
    class_names: tuple[str, ...] | list[str],
    model: nn.Module,
    iteration: int,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    rng: list[Any] | None = None,
    categories: dict[int, str] | None = None,
    train_seconds: float = 0.0,
) -> dict[str, Any]:
    """What a checkpoint holds; ``categories`` maps the dataset's own category ids to class names,
    ``train_seconds`` the seconds of training so far (a resumed run counts on from them)."""
    return {
        "config": config_to_dict(config),
        "class_names": list(class_names),
        "categories": dict(categories) if categories is not None else None,
        "model": model.state_dict(),
        "iteration": int(iteration),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": rng,
        "train_seconds": float(train_seconds),
    }


def check_same_architecture(saved: dict[str, Any], config: Config, source: str) -> None:
    current = config_to_dict(config)
    differing = [
        f"{section}.{key}"
        for section in ARCHITECTURE_SECTIONS
        for key in current[section]
        if key not in NON_ARCHITECTURE_KEYS and saved.get(section, {}).get(key) != current[section][key]
    ]
    if differing:
        raise CheckpointError(
            f"{source} was written for another architecture (differs in {', '.join(differing)})"
        )


def batch_targets(batch: dict[str, Any]) -> list[dict[str, Any]]:
    """The per-image targets :meth:`RegionDetector.forward` takes, from a collated training batch
    (R-CNN's region-centric batches: with each image's ``windows``)."""
    count = len(batch["boxes"])
    proposals = batch.get("proposals") or [None] * count
    targets = [
        {
            "boxes": batch["boxes"][i],
            "labels": batch["labels"][i],
            "crowd": batch["crowd"][i],
            "image_size": tuple(batch["image_sizes"][i]),
            "proposals": proposals[i],
        }
        for i in range(count)
    ]
    if "windows" in batch:
        for target in targets:
            target["windows"] = []
        for slot, window in batch["windows"]:
            targets[slot]["windows"].append(window)
    return targets


def total_loss(losses: dict[str, torch.Tensor]) -> torch.Tensor:
    """The sum of the ``loss_*`` entries of a loss dict (the others are figures to log)."""
    return sum(value for key, value in losses.items() if key.startswith("loss_"))


class Trainer:
    """Trains one detector as a configuration describes, writing everything under ``out_dir``."""

    def __init__(
        self,
        config: Config,
        out_dir: str | Path,
        info: DistInfo,
        resume: str | Path | bool | None = None,
        progress: bool = True,
    ) -> None:
        # A copy: what training resolves (classes, R²-CNN's shapes) goes into it, never into the caller's.
        self.config = copy.deepcopy(config)
        self.out_dir, self.info, self.progress = Path(out_dir), info, progress
        self.resume = resume
        self.categories: dict[int, str] | None = None
        self.out_dir.mkdir(parents=True, exist_ok=True)

    # -- setup ----------------------------------------------------------------

    def _seed(self) -> None:
        seed = self.config.train.seed * 1000 + self.info.rank
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)

    def _resume_path(self) -> Path | None:
        if not self.resume:
            return None
        if self.resume is True:
            path = self.out_dir / LAST_CHECKPOINT
            if not path.is_file():
                raise CheckpointError(f"--resume: no checkpoint to resume from in {self.out_dir}")
            return path
        return Path(self.resume)

    def cache_dir(self) -> Path:
        return (
            Path(self.config.proposals.cache_dir)
            if self.config.proposals.cache_dir
            else self.out_dir / "proposals"
        )

    # -- one iteration ----------------------------------------------------------

    def _sampling_seed(self, iteration: int) -> int:
        return hash((self.config.train.seed, iteration, self.info.rank)) & 0x7FFFFFFF

    # -- the loop ---------------------------------------------------------------

    def train(self) -> dict[str, Any]:
        config, info = self.config, self.info
        self._seed()
        dataset = load_split(config, config.data.train_split, info)
        self.categories = dataset.categories
        if isinstance(config.data.classes, str) and config.data.classes in ("auto", "discover"):
            # The test split and the checkpoint use the classes the training split resolved to.
            config.data.classes = list(dataset.class_names)
        # R²-CNN's shapes: auto becomes the training boxes' typical shapes, saved in the checkpoint's config.
        proposals = config.proposals
        if canonical_name(proposals.name) == "r2cnn":
            size = shapes_input_size(
                r2cnn_settings(proposals.params), config.data.test_scale, config.data.max_size
            )
            resolve_shapes(proposals.params, dataset.records, *size)
        model = build_detector(config, len(dataset.class_names), dataset.class_names).to(info.device)
        if model.proposal_generator.reads_features and model.roi_features.per_region:
            raise ValueError(
                "R-CNN samples its training regions once from cached proposals; R²-CNN on the model's own "
                "features trains SPPnet and Fast R-CNN (give R-CNN an image-based generator)"
            )
        if info.is_main:
            write_resolved_config(config, self.out_dir / RESOLVED_CONFIG)
        records = records_for_model(config, dataset, model, self.cache_dir(), info, self.progress)
        if model.predictor.svm is not None:
            model.predictor.svm.requires_grad_(False)  # trained after fine-tuning (engine.svm)
        optimizer = build_optimizer(config, model)
        scheduler = StepSchedule(config, optimizer)
        start, trained_seconds = 0, 0.0
        resume_path = self._resume_path()
        if resume_path is not None:
            checkpoint = load_checkpoint(resume_path)
            check_same_architecture(checkpoint["config"], config, str(resume_path))
            if list(checkpoint["class_names"]) != list(dataset.class_names):
                raise CheckpointError(f"{resume_path}: trained on other classes {checkpoint['class_names']}")
            load_model_state(model, checkpoint["model"], str(resume_path))
            if checkpoint.get("optimizer") is not None:
                optimizer.load_state_dict(checkpoint["optimizer"])
            if checkpoint.get("scheduler") is not None:
                scheduler.load_state_dict(checkpoint["scheduler"])
            rng = checkpoint.get("rng")
            if rng and len(rng) == info.world_size:
                set_rng_state(rng[info.rank])
            start = int(checkpoint["iteration"])
            trained_seconds = float(checkpoint.get("train_seconds") or 0.0)
        train = config.train
        wrapped: nn.Module = model
        if info.distributed:
            wrapped = nn.parallel.DistributedDataParallel(
                model, device_ids=[info.device.index] if info.device.type == "cuda" else None
            )
        writer = (
            MetricsWriter(self.out_dir / "metrics.jsonl", start if resume_path else None)
            if info.is_main
            else None
        )
        transform = train_transform(config, model.pixel_mean, model.pixel_std)
        region_pool = RegionPool(config, records, info, transform) if model.roi_features.per_region else None
        batches = (
            None
            if region_pool
            else image_batches(config, records, start, info, transform, model.size_divisibility)
        )
        model.train()
        window: dict[str, list[float]] = defaultdict(list)
        bar = tqdm(
            total=train.max_iter,
            initial=start,
            desc=f"train {config.model.family}",
            disable=not (self.progress and info.is_main),
            dynamic_ncols=True,
        )
        # The clock counts on from the checkpoint's seconds, so that train.max_seconds bounds the whole
        # training, however often it was interrupted and resumed.
        started = self._started = time.perf_counter() - trained_seconds
        done, elapsed = start, trained_seconds
        for iteration in range(start, train.max_iter):
            if train.max_seconds is not None and elapsed >= train.max_seconds:
                break  # a resumed run whose seconds were spent: nothing more to train
            scheduler.apply(iteration, elapsed)
            if region_pool is not None:
                batch = region_pool.batch(iteration, model.size_divisibility)
            else:
                batch = next(batches)
            images = batch["images"].to(info.device)
            losses = wrapped(images, batch_targets(batch), self._sampling_seed(iteration))
            losses["loss"] = total_loss(losses)
            loss_value = float(losses["loss"].detach())
            if not math.isfinite(loss_value):
                raise FloatingPointError(
                    f"loss became {loss_value} at iteration {iteration}; lower train.base_lr"
                )
            optimizer.zero_grad(set_to_none=True)
            losses["loss"].backward()
            optimizer.step()
            done = iteration + 1
            for key, value in losses.items():
                window[key].append(float(value.detach()))
            if done % train.log_period == 0 or done == train.max_iter:
                entry = {k: sum(v) / len(v) for k, v in window.items()}
                window.clear()
                entry.update(iteration=done, lr=optimizer.param_groups[0]["lr"])
                entry["seconds"] = time.perf_counter() - started
                if writer is not None:
                    writer.write(entry)
                bar.set_postfix(
                    loss=f"{entry['loss']:.3f}", lr=f"{entry['lr']:.2g}", acc=f"{entry['accuracy']:.2f}"
                )
            bar.update(1)
            elapsed = self._elapsed(started)
            out_of_time = train.max_seconds is not None and elapsed >= train.max_seconds
            if done % train.checkpoint_period == 0 or done == train.max_iter or out_of_time:
                self._save(LAST_CHECKPOINT, config, dataset.class_names, model, done, optimizer, scheduler)
            if out_of_time:
                break
        bar.close()
        iterations = done - start
        seconds = time.perf_counter() - started
        if info.distributed:
            # Parameters agree after every step; normalisation statistics are per rank: take rank 0's.
            for buffer in model.buffers():
                torch.distributed.broadcast(buffer, src=0)
        model.eval()
        if model.predictor.svm is not None:
            from detaccel.engine.svm import train_svms

            train_svms(model, records, config, info, progress=self.progress)
        self._save(FINAL_MODEL, config, dataset.class_names, model, start + iterations, None, None, rng=False)
        if info.is_main:
            plot_loss_curve(self.out_dir / "metrics.jsonl", self.out_dir / "loss_curve.png")
            print(
                f"trained {iterations} iterations in {seconds:.1f} s -> {self.out_dir / FINAL_MODEL}",
                file=sys.stderr,
            )
        result: dict[str, Any] = {
            "config": config,  # as resolved for training (classes, R²-CNN's shapes)
            "train_seconds": seconds,
            "iterations": iterations,  # in this call
            "total_iterations": done,  # of the whole training, resumed runs included
            "model": model,
        }
        if train.eval_after_training:
            test = load_split(config, config.data.test_split, info)
            test_records = records_for_model(config, test, model, self.cache_dir(), info, self.progress)
            result["eval"] = evaluate_model_report(
                model, test, test_records, config, info, self.out_dir, self.progress
            )
        return result

    def _elapsed(self, started: float) -> float:
        """Seconds of training so far; every rank agrees (rank 0's clock decides when time matters)."""
        seconds = time.perf_counter() - started
        if self.info.distributed and self.config.train.max_seconds is not None:
            value = torch.tensor([seconds], dtype=torch.float64, device=self.info.device)
            torch.distributed.broadcast(value, src=0)
            seconds = float(value.item())
        return seconds

    def _save(self, name, config, class_names, model, iteration, optimizer, scheduler, rng=True) -> None:
        states = all_gather_objects(self.info, rng_state()) if rng else None
        if self.info.is_main:
            save_checkpoint(
                self.out_dir / name,
                checkpoint_payload(
                    config,
                    class_names,
                    model,
                    iteration,
                    optimizer,
                    scheduler,
                    states,
                    self.categories,
                    train_seconds=time.perf_counter() - self._started,
                ),
            )
        barrier(self.info)


def evaluate_model_report(
    model: RegionDetector, dataset, records, config, info, out_dir: Path, progress: bool
):
    from detaccel.engine.evaluator import evaluate_model

    return evaluate_model(model, dataset, records, config, info, out_dir, progress)
