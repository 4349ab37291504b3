"""Temporarily set OpenCV's thread count."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import cv2


@contextmanager
def opencv_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``cv2.setNumThreads(count)``, then restore the previous setting.

    ``None`` leaves the setting alone; ``0`` makes OpenCV single-threaded.
    """
    if count is None:
        yield
        return
    previous = cv2.getNumThreads()
    cv2.setNumThreads(count)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)
