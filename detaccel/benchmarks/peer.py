"""The peer a user would pick: torchvision's Faster R-CNN on the backbone a detaccel configuration names.

:func:`build_peer` puts torchvision's own RPN and RoIAlign box head on a fresh copy of the
configured backbone (one map, the configuration's image scales and normalisation);
:func:`train_peer` trains it for a number of seconds with torchvision's detection reference
recipe (SGD, momentum 0.9, weight decay 1e-4, learning rate 0.02 per 16 images scaled to the
batch, linear warm-up, decay by 0.1 at 16/26 and 22/26 of the run, horizontal flips);
:func:`score_peer` scores it with the same VOC07 code as detaccel's detectors and times it per
image, from decoding the image to the detections. :func:`export_peer` writes it to ONNX with
torchvision's own recipe (the TorchScript exporter, the whole model from image to detections) and
:class:`OnnxPeer` runs that graph in ONNX Runtime where :func:`score_peer` runs the model.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from detaccel.config.schema import Config
from detaccel.data import ImageRecord, read_image
from detaccel.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from detaccel.evaluation import Detections, evaluate_coco, evaluate_voc
from detaccel.models.backbones import build_backbone

# torchvision's detection reference: lr 0.02 for 16 images (8 GPUs x 2), warm-up factor 0.001,
# decay by 0.1 at epochs 16 and 22 of 26 (here: at those fractions of the training seconds).
REFERENCE_LR_PER_IMAGE = 0.02 / 16
REFERENCE_DECAY_AT = (16 / 26, 22 / 26)
REFERENCE_WARMUP_ITERS = 100
PEER_NAME = "torchvision Faster R-CNN"


class StrideBackbone(torch.nn.Module):
    """A detaccel backbone as torchvision's detection models expect it (``out_channels``, one map)."""

    def __init__(self, backbone: torch.nn.Module) -> None:
        super().__init__()
        self.body = backbone
        self.out_channels = backbone.out_channels

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"0": self.body(images)}


def build_peer(config: Config, num_classes: int) -> torch.nn.Module:
    """torchvision ``FasterRCNN`` on a fresh copy of the configured backbone, at the same image scales,
    run as its users run it: eager PyTorch (whatever ``backbone.runtime`` the configuration gives)."""
    import dataclasses

    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.ops import MultiScaleRoIAlign

    backbone = build_backbone(dataclasses.replace(config.backbone, runtime="torch"))
    mean = list(getattr(backbone, "pixel_mean", IMAGENET_MEAN))
    std = list(getattr(backbone, "pixel_std", IMAGENET_STD))
    anchors = AnchorGenerator(sizes=((32, 64, 128, 256, 512),), aspect_ratios=((0.5, 1.0, 2.0),))
    return FasterRCNN(
        StrideBackbone(backbone),
        num_classes=num_classes + 1,
        rpn_anchor_generator=anchors,
        box_roi_pool=MultiScaleRoIAlign(featmap_names=["0"], output_size=7, sampling_ratio=2),
        min_size=tuple(config.data.train_scales),
        max_size=config.data.max_size,
        image_mean=mean,
        image_std=std,
    )


def peer_target(record: ImageRecord, flip: bool, width: int) -> dict[str, torch.Tensor]:
    """A record's objects as torchvision's detection targets (continuous corners, labels from 1)."""
    boxes = torch.from_numpy(record.boxes.astype(np.float32)).reshape(-1, 4).clone()
    boxes[:, 2:] += 1.0  # inclusive pixels to torchvision's continuous corners
    if flip:
        boxes[:, [0, 2]] = width - boxes[:, [2, 0]]
    keep = ~torch.from_numpy(record.crowd.copy()) if len(record.crowd) else torch.ones(len(boxes), dtype=bool)
    return {"boxes": boxes[keep], "labels": torch.from_numpy(record.labels.astype(np.int64))[keep] + 1}


def _image_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float() / 255.0


def train_peer(
    model: torch.nn.Module,
    records: list[ImageRecord],
    seconds: float,
    batch: int,
    seed: int,
    progress: bool = False,
) -> dict[str, Any]:
    """Train ``model`` for ``seconds`` with torchvision's reference recipe; returns iterations and time."""
    lr = REFERENCE_LR_PER_IMAGE * batch
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    model.train()
    bar = tqdm(total=round(seconds), desc=PEER_NAME, unit="s", disable=not progress, leave=False)
    started, iteration, losses = time.perf_counter(), 0, []
    while (elapsed := time.perf_counter() - started) < seconds:
        factor = 0.001 + (1 - 0.001) * min(iteration / REFERENCE_WARMUP_ITERS, 1.0)
        factor *= 0.1 ** sum(elapsed >= at * seconds for at in REFERENCE_DECAY_AT)
        for group in optimizer.param_groups:
            group["lr"] = lr * factor
        images, targets = [], []
        for index in rng.integers(len(records), size=batch):
            record = records[int(index)]
            image = read_image(record.file_path)
            flip = bool(rng.random() < 0.5)
            if flip:
                image = image[:, ::-1]
            images.append(_image_tensor(image))
            targets.append(peer_target(record, flip, image.shape[1]))
        loss = sum(model(images, targets).values())
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"{PEER_NAME}: loss became {value} at iteration {iteration}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(value)
        iteration += 1
        bar.update(min(round(time.perf_counter() - started), round(seconds)) - bar.n)
        bar.set_postfix(iter=iteration, loss=f"{np.mean(losses[-20:]):.3f}")
    bar.close()
    return {
        "iterations": iteration,
        "seconds": time.perf_counter() - started,
        "lr": lr,
        "final_loss": float(np.mean(losses[-20:])) if losses else float("nan"),
    }


@torch.no_grad()
def score_peer(
    model: torch.nn.Module,
    records: list[ImageRecord],
    class_names: tuple[str, ...],
    warmup: int,
    progress: bool = False,
) -> tuple[dict[str, Any], dict[Any, Detections]]:
    """VOC07 mAP (and COCO AP) of the peer on ``records``, its time per image (decode to detections),
    and its detections per image."""
    model.eval()
    detections, times = {}, []
    schedule = [*records[:warmup], *records]
    for i, record in enumerate(tqdm(schedule, desc=PEER_NAME, unit="img", disable=not progress, leave=False)):
        start = time.perf_counter()
        (output,) = model([_image_tensor(read_image(record.file_path))])
        elapsed = time.perf_counter() - start
        if i < warmup:
            continue
        times.append(elapsed)
        boxes = output["boxes"].clone()
        boxes[:, 2:] -= 1.0  # back to inclusive pixels
        detections[record.image_id] = Detections(boxes, output["scores"], output["labels"] - 1)
    voc = evaluate_voc(records, detections, class_names, use_07_metric=True)
    coco = evaluate_coco(records, detections, class_names)
    figures = {
        "voc07_mAP": voc["mAP"],
        "AP": voc["AP"],
        "coco_AP": coco["AP"],
        "seconds_per_image": float(np.mean(times)),
    }
    return figures, detections


def save_peer(model: torch.nn.Module, path: Path, training: dict[str, Any]) -> None:
    """Save the trained peer's weights with its training figures (written whole, then renamed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(path.suffix + ".partial")
    torch.save({"model": model.state_dict(), "training": training}, partial)
    partial.replace(path)


def load_peer(model: torch.nn.Module, path: Path) -> dict[str, Any]:
    """Load weights saved by :func:`save_peer` into ``model``; returns its training figures."""
    saved = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(saved["model"])
    return saved["training"]


class OnnxPeer:
    """The peer exported by :func:`export_peer`, run by ONNX Runtime; called as the model is (a list of
    one ``[3, H, W]`` image, a list of one dict of ``boxes``, ``labels``, ``scores``)."""

    def __init__(self, path: Path) -> None:
        from detaccel.models.backbones import onnx_session

        self.session = onnx_session(str(path))

    def eval(self) -> OnnxPeer:
        return self

    def __call__(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        (image,) = images
        boxes, labels, scores = self.session.run(None, {"images": image.contiguous().numpy()})
        return [{"boxes": torch.from_numpy(boxes), "labels": torch.from_numpy(labels),
                 "scores": torch.from_numpy(scores)}]  # fmt: skip


def export_peer(model: torch.nn.Module, path: Path, examples: list[np.ndarray]) -> float:
    """Write the trained peer to ONNX at ``path`` as torchvision documents it (``torch.onnx.export``
    with the TorchScript exporter, opset 17, a list of one image in, its detections out), traced on
    the first of ``examples`` (RGB ``uint8``); returns the largest difference of the graph's boxes
    from the model's over all of them (``inf`` where the number of detections differs), so that a
    graph that only holds for the traced image's size shows."""
    import warnings

    model.eval()
    images = [_image_tensor(example) for example in examples]
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = [model([image])[0]["boxes"] for image in images]  # also makes the inference copy first
        torch.onnx.export(
            model,
            ([images[0]],),
            str(path),
            opset_version=17,
            input_names=["images"],
            output_names=["boxes", "labels", "scores"],
            dynamic_axes={"images": {1: "height", 2: "width"}, "boxes": {0: "detections"},
                          "labels": {0: "detections"}, "scores": {0: "detections"}},
            dynamo=False,
        )  # fmt: skip
    graph = OnnxPeer(path)
    worst = 0.0
    for image, boxes in zip(images, expected, strict=True):
        got = graph([image])[0]["boxes"]
        if got.shape != boxes.shape:
            return float("inf")
        worst = max(worst, float((got - boxes).abs().max()) if len(got) else 0.0)
    return worst
