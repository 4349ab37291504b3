"""Image and box transforms: shorter-side resize, horizontal flip, normalisation, padded batches.

Images are RGB ``uint8`` arrays ``[H, W, 3]`` as decoded by
:func:`detaccel.data.io.read_image`; boxes follow the inclusive pixel
convention of :mod:`detaccel.data.records`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

# ImageNet statistics of RGB images scaled to [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def resize_scale(
    height: int,
    width: int,
    short_side: int | None = None,
    max_side: int | None = None,
    upscale: bool = True,
) -> float:
    """The factor of the one resize rule of every path (the detector's scales, the generators' inputs).

    The shorter side becomes ``short_side`` unless the longer one would then exceed ``max_side``
    (after rounding), in which case the longer side becomes ``max_side``; ``max_side`` alone makes the
    longer side ``max_side``; neither: 1. With ``upscale=False`` the factor never exceeds 1.
    """
    shorter, longer = min(height, width), max(height, width)
    if short_side is not None:
        scale = short_side / shorter
    elif max_side is not None:
        scale = max_side / longer
    else:
        scale = 1.0
    if max_side is not None and round(scale * longer) > max_side:
        scale = max_side / longer
    if not upscale:
        scale = min(scale, 1.0)
    return scale


def resized_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """``(height, width)`` after resizing by ``scale``: sides rounded, at least 1 px."""
    return max(1, round(height * scale)), max(1, round(width * scale))


def resize_image(image: np.ndarray, scale: float) -> np.ndarray:
    """Resize by ``scale`` with bilinear interpolation to :func:`resized_size`."""
    height, width = image.shape[:2]
    new_height, new_width = resized_size(height, width, scale)
    if (new_height, new_width) == (height, width):
        return image
    return cv2.resize(image, (new_width, new_height), interpolation=cv2.INTER_LINEAR)


def scale_boxes(boxes: np.ndarray, scale: float) -> np.ndarray:
    """Boxes of an image resized by ``scale``."""
    return (np.asarray(boxes, np.float32) * np.float32(scale)).astype(np.float32)


def hflip_image(image: np.ndarray) -> np.ndarray:
    """Mirror an ``[H, W, ...]`` image left to right."""
    return np.ascontiguousarray(image[:, ::-1])


def hflip_boxes(boxes: np.ndarray, width: int) -> np.ndarray:
    """Mirror inclusive boxes of an image ``width`` wide: ``x1' = W - 1 - x2``, ``x2' = W - 1 - x1``."""
    boxes = np.asarray(boxes, np.float32)
    flipped = boxes.copy()
    flipped[:, 0] = width - 1 - boxes[:, 2]
    flipped[:, 2] = width - 1 - boxes[:, 0]
    return flipped


def normalize(
    image: np.ndarray, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> np.ndarray:
    """``uint8`` ``[H, W, 3]`` to float32 ``[3, H, W]``: ``(pixel / 255 - mean) / std`` per channel.

    Computed as ``pixel * a - b`` per channel plane, one pass writing the planar output.
    """
    std64 = np.asarray(std, np.float64)
    gain = (1.0 / (255.0 * std64)).astype(np.float32)
    offset = (np.asarray(mean, np.float64) / std64).astype(np.float32)
    out = np.empty((image.shape[2], *image.shape[:2]), np.float32)
    for channel, plane in enumerate(out):
        np.multiply(image[:, :, channel], gain[channel], out=plane, dtype=np.float32)
        plane -= offset[channel]
    return out


def batch_images(images: Sequence, size_divisibility: int = 1, pad_value: float = 0.0):
    """Stack ``[C, H, W]`` tensors into ``[B, C, H_max, W_max]``, padding at the bottom and right.

    The padded size is rounded up to a multiple of ``size_divisibility``.
    Returns the batch and the ``(height, width)`` of each image before padding.
    """
    import torch

    if not images:
        raise ValueError("batch_images: no images")
    tensors = [torch.as_tensor(image) for image in images]
    sizes = [(int(t.shape[-2]), int(t.shape[-1])) for t in tensors]
    step = max(int(size_divisibility), 1)
    height = -(-max(h for h, _ in sizes) // step) * step
    width = -(-max(w for _, w in sizes) // step) * step
    batch = tensors[0].new_full((len(tensors), tensors[0].shape[0], height, width), pad_value)
    for slot, tensor in zip(batch, tensors, strict=True):
        slot[:, : tensor.shape[-2], : tensor.shape[-1]].copy_(tensor)
    return batch, sizes


@dataclass(frozen=True)
class Resize:
    """Shorter side to one of ``scales`` (chosen at random in training), longer side at most ``max_size``."""

    scales: tuple[int, ...] = (600,)
    max_size: int = 1000

    def __post_init__(self) -> None:
        object.__setattr__(self, "scales", tuple(int(s) for s in self.scales))
        if not self.scales or min(self.scales) <= 0 or self.max_size <= 0:
            raise ValueError("Resize needs positive scales and max_size")


@dataclass(frozen=True)
class TransformedImage:
    """An image ready for a network, with what was done to it."""

    image: np.ndarray  # float32 [3, H, W]
    boxes: np.ndarray  # float32 [N, 4] in the transformed image
    scale: float
    flipped: bool


class TrainTransform:
    """Random scale from ``resize.scales``, random horizontal flip, normalisation."""

    def __init__(
        self,
        resize: Resize = Resize(),
        flip_probability: float = 0.5,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        self.resize, self.flip_probability, self.mean, self.std = resize, flip_probability, mean, std

    def __call__(self, image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator) -> TransformedImage:
        height, width = image.shape[:2]
        target = self.resize.scales[int(rng.integers(len(self.resize.scales)))]
        flipped = bool(rng.random() < self.flip_probability)
        if flipped:
            image, boxes = hflip_image(image), hflip_boxes(boxes, width)
        scale = resize_scale(height, width, target, self.resize.max_size)
        image = resize_image(image, scale)
        return TransformedImage(
            normalize(image, self.mean, self.std), scale_boxes(boxes, scale), scale, flipped
        )


class InferenceTransform:
    """Every scale of ``resize.scales`` (multi-scale testing), normalised; no flip."""

    def __init__(
        self,
        resize: Resize = Resize(),
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        self.resize, self.mean, self.std = resize, mean, std

    def __call__(self, image: np.ndarray, boxes: np.ndarray | None = None) -> list[TransformedImage]:
        height, width = image.shape[:2]
        boxes = np.zeros((0, 4), np.float32) if boxes is None else boxes
        out = []
        for target in self.resize.scales:
            scale = resize_scale(height, width, target, self.resize.max_size)
            resized = normalize(resize_image(image, scale), self.mean, self.std)
            out.append(TransformedImage(resized, scale_boxes(boxes, scale), scale, False))
        return out
