"""Running a detector on one's own images and videos: inputs, drawn results and JSON Lines records.

:func:`expand_inputs` turns files, folders and glob patterns into a list of
image and video files; :func:`iter_frames` yields the frames of either;
:func:`draw_prediction` draws boxes, class names and scores (and optionally the
first proposals) on an RGB image; :func:`prediction_record` is one JSON line.
"""

from __future__ import annotations

import glob
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from detaccel.data import DatasetError, read_image
from detaccel.models.detector import Prediction

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v")

# Colours (RGB) of detections, cycling by class, and of proposals.
_PALETTE = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
)  # fmt: skip
PROPOSAL_COLOUR = (160, 160, 160)


class InputError(ValueError):
    """An input argument that names nothing usable."""


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def expand_inputs(inputs: Sequence[str]) -> list[Path]:
    """Image and video files named by ``inputs``: files (any suffix), folders (their image and video
    files, sorted, not recursive) and glob patterns; duplicates removed, order kept.

    Raises:
        InputError: an input that matches no file.
    """
    found: dict[Path, None] = {}
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            members = sorted(
                p
                for p in path.iterdir()
                if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES + VIDEO_SUFFIXES
            )
            if not members:
                raise InputError(f"{item}: folder holds no image or video files")
            found.update(dict.fromkeys(members))
        elif path.is_file():
            found[path] = None
        elif glob.has_magic(item):
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True) if Path(p).is_file())
            if not matches:
                raise InputError(f"{item}: pattern matches no file")
            found.update(dict.fromkeys(matches))
        else:
            raise InputError(f"{item}: no such file or folder")
    return list(found)


@dataclass(frozen=True)
class Frame:
    """One image to detect on: its name in the outputs, the source file, frame index (videos) and pixels."""

    name: str
    source: Path
    index: int | None
    image: np.ndarray


def iter_frames(path: Path) -> Iterator[Frame]:
    """The image of an image file, or every frame of a video file (RGB ``uint8``).

    Raises:
        DatasetError: the file cannot be read or decoded (a video: not even its first frame).
    """
    if not is_video(path):
        yield Frame(path.stem, path, None, read_image(path))
        return
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise DatasetError(path, "cannot open video file")
        index = 0
        while True:
            ok, bgr = capture.read()
            if not ok:
                break
            yield Frame(f"{path.stem}_{index:06d}", path, index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            index += 1
        if index == 0:
            raise DatasetError(path, "video file has no readable frame")
    finally:
        capture.release()


def draw_prediction(
    image: np.ndarray,
    prediction: Prediction,
    class_names: Sequence[str],
    score_threshold: float = 0.0,
    show_proposals: int = 0,
) -> np.ndarray:
    """A copy of RGB ``image`` with detections (score ≥ ``score_threshold``) drawn with their class
    name and score, over the first ``show_proposals`` proposals in grey."""
    canvas = np.ascontiguousarray(image.copy())
    thickness = max(1, round(min(image.shape[:2]) / 300))
    for box in prediction.proposals[: max(show_proposals, 0)]:
        x1, y1, x2, y2 = (round(v) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), PROPOSAL_COLOUR, 1)
    keep = prediction.scores >= score_threshold
    for box, score, label in zip(
        prediction.boxes[keep].tolist(),
        prediction.scores[keep].tolist(),
        prediction.labels[keep].tolist(),
        strict=True,
    ):
        colour = _PALETTE[int(label) % len(_PALETTE)]
        x1, y1, x2, y2 = (round(v) for v in box)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, thickness)
        text = f"{class_names[int(label)]} {score:.2f}"
        (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        top = max(y1 - height - baseline - 2, 0)
        cv2.rectangle(canvas, (x1, top), (x1 + width + 2, top + height + baseline + 2), colour, -1)
        cv2.putText(
            canvas,
            text,
            (x1 + 1, top + height + 1),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.45,
            (0, 0, 0),
            1,
            cv2.LINE_AA,
        )
    return canvas


def prediction_record(
    frame: Frame,
    prediction: Prediction,
    class_names: Sequence[str],
    score_threshold: float,
    stage_seconds: dict[str, float],
    output: Path | None,
) -> dict[str, Any]:
    """One JSON Lines record: the detections (original pixels) at or above ``score_threshold``,
    the proposal count and per-stage milliseconds."""
    keep = prediction.scores >= score_threshold
    return {
        "image": str(frame.source),
        "frame": frame.index,
        "output": None if output is None else str(output),
        "height": prediction.image_size[0],
        "width": prediction.image_size[1],
        "proposals": len(prediction.proposals),
        "detections": [
            {"box": [round(v, 2) for v in box], "score": round(score, 5), "label": class_names[label]}
            for box, score, label in zip(
                prediction.boxes[keep].tolist(),
                prediction.scores[keep].tolist(),
                prediction.labels[keep].tolist(),
                strict=True,
            )
        ],
        "stage_ms": {name: round(seconds * 1e3, 3) for name, seconds in stage_seconds.items()},
    }
