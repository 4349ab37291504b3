"""Small synthetic images for the proposal-generator tests."""

from __future__ import annotations

import cv2
import numpy as np


def scene(width: int = 160, height: int = 120, seed: int = 0) -> np.ndarray:
    """A BGR uint8 image with a few filled shapes on a gradient background, plus mild noise."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(40, 90, width, dtype=np.float32)
    image = np.repeat(np.repeat(ramp[None, :, None], height, axis=0), 3, axis=2).astype(np.uint8)
    cv2.rectangle(image, (10, 12), (60, 70), (30, 160, 220), -1)
    cv2.circle(image, (110, 60), 28, (200, 60, 40), -1)
    cv2.rectangle(image, (70, 85), (150, 110), (60, 200, 90), -1)
    cv2.ellipse(image, (35, 95), (20, 12), 30, 0, 360, (240, 240, 240), -1)
    noise = rng.integers(0, 12, image.shape, dtype=np.uint8)
    return cv2.add(image, noise)


def variants(image: np.ndarray) -> dict[str, np.ndarray]:
    """The image as color, grayscale, BGRA, 16-bit color and float, plus a tiny crop of it."""
    return {
        "color": image,
        "gray": cv2.cvtColor(image, cv2.COLOR_BGR2GRAY),
        "gray_1ch": cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)[:, :, None],
        "bgra": cv2.cvtColor(image, cv2.COLOR_BGR2BGRA),
        "uint16": image.astype(np.uint16) * 257,
        "float": image.astype(np.float32) / 255.0,
        "tiny": np.ascontiguousarray(image[50:60, 100:112]),
        "one_pixel": np.ascontiguousarray(image[:1, :1]),
    }
