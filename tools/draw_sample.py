"""Draw synthetic images with their boxes into one PNG (the picture in docs/dataset.md).

    python tools/draw_sample.py --out docs/images/synthetic_sample.png

Boxes are drawn on the pixels they cover (inclusive boxes); difficult
objects get a dashed box, truncated ones a "T" after the class name.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from detaccel.data.synthetic import SYNTHETIC_CLASSES, synthetic_image

# One colour per class (RGB), readable on busy backgrounds when outlined in black.
COLORS = [(255, 60, 60), (60, 220, 60), (70, 140, 255), (255, 220, 0), (255, 0, 255), (0, 240, 240)]


def _dashed_rectangle(image: np.ndarray, box: tuple[int, int, int, int], color, dash: int = 4) -> None:
    x1, y1, x2, y2 = box
    for x in range(x1, x2 + 1, 2 * dash):
        cv2.line(image, (x, y1), (min(x + dash - 1, x2), y1), color, 1)
        cv2.line(image, (x, y2), (min(x + dash - 1, x2), y2), color, 1)
    for y in range(y1, y2 + 1, 2 * dash):
        cv2.line(image, (x1, y), (x1, min(y + dash - 1, y2)), color, 1)
        cv2.line(image, (x2, y), (x2, min(y + dash - 1, y2)), color, 1)


def draw(image: np.ndarray, objects, scale: int) -> np.ndarray:
    """The image enlarged ``scale`` times with boxes and class names drawn on it."""
    canvas = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    for obj in objects:
        color = COLORS[obj.label % len(COLORS)]
        x1, y1, x2, y2 = obj.box
        box = (x1 * scale, y1 * scale, (x2 + 1) * scale - 1, (y2 + 1) * scale - 1)
        if obj.difficult:
            _dashed_rectangle(canvas, box, color)
        else:
            cv2.rectangle(canvas, box[:2], box[2:], (0, 0, 0), 3)
            cv2.rectangle(canvas, box[:2], box[2:], color, 1)
        text = (
            SYNTHETIC_CLASSES[obj.label] + (" T" if obj.truncated else "") + (" D" if obj.difficult else "")
        )
        (width, height), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
        tx, ty = box[0], max(box[1] - 2, height + 2)
        cv2.rectangle(canvas, (tx, ty - height - 2), (tx + width + 2, ty + 1), (0, 0, 0), -1)
        cv2.putText(canvas, text, (tx + 1, ty - 1), cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, 1, cv2.LINE_AA)
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/images/synthetic_sample.png")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--first", type=int, default=0, help="index of the first image")
    parser.add_argument("--columns", type=int, default=3)
    parser.add_argument("--rows", type=int, default=2)
    parser.add_argument("--scale", type=int, default=2, help="enlargement of each image")
    args = parser.parse_args()

    tiles = []
    for index in range(args.first, args.first + args.columns * args.rows):
        image, objects = synthetic_image(args.seed, index)
        tiles.append(draw(image, objects, args.scale))
    gap = 4
    height, width = tiles[0].shape[:2]
    sheet = np.full(
        (args.rows * height + (args.rows - 1) * gap, args.columns * width + (args.columns - 1) * gap, 3),
        255,
        np.uint8,
    )
    for i, tile in enumerate(tiles):
        row, column = divmod(i, args.columns)
        y, x = row * (height + gap), column * (width + gap)
        sheet[y : y + height, x : x + width] = tile
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(args.out, cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(f"wrote {args.out} ({sheet.shape[1]}x{sheet.shape[0]})")


if __name__ == "__main__":
    main()
