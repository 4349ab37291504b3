"""Selective search (Uijlings et al.) through OpenCV's ximgproc implementation."""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

import cv2
import numpy as np

from detaccel.data.transforms import resize_scale
from detaccel.proposals._checks import check_choice, check_float, check_int
from detaccel.proposals.base import GeneratorBase, ImageId, RawProposals
from detaccel.proposals.image import rects_to_boxes, rescale_boxes, resize_image
from detaccel.proposals.opencv_threads import opencv_threads

_LIBC: Any = None


def _seed_libc(seed: int) -> None:
    # OpenCV ranks the regions with C's rand(); seeding it fixes their order.
    global _LIBC
    if _LIBC is None:
        try:
            _LIBC = ctypes.CDLL(ctypes.util.find_library("c"))
        except OSError:
            _LIBC = False
    if _LIBC:
        _LIBC.srand(ctypes.c_uint(seed))


class SelectiveSearch(GeneratorBase):
    """Selective search in OpenCV's "fast" or "quality" configuration.

    The image is resized so that its longer side is ``max_side`` pixels (only
    downwards unless ``upscale``), searched, and the boxes are mapped back.
    Boxes come without scores, in OpenCV's order: regions ranked by hierarchy
    level times a random number (Uijlings et al.'s pseudo-random ordering),
    whose generator is C's ``rand()``; ``seed`` seeds it before each image so
    the order is reproducible (``None`` leaves it alone).

    Args:
        mode: ``"fast"`` or ``"quality"``.
        max_side: longer side of the searched image in pixels (``None``: native size).
        upscale: also enlarge images smaller than ``max_side``.
        base_k, inc_k, sigma: graph-segmentation parameters (k from ``base_k``
            in steps of ``inc_k``; Gaussian ``sigma``).
        num_threads: ``cv2.setNumThreads`` during the search (``None``: OpenCV's setting).
        seed: see above.
    """

    name = "selective_search"

    def __init__(
        self,
        *,
        mode: str = "fast",
        max_side: int | None = 500,
        upscale: bool = False,
        base_k: int = 150,
        inc_k: int = 150,
        sigma: float = 0.8,
        num_threads: int | None = None,
        seed: int | None = 0,
        max_proposals: int | None = None,
        min_size: float = 1.0,
    ) -> None:
        super().__init__(max_proposals=max_proposals, min_size=min_size)
        self.mode = check_choice("mode", mode, ("fast", "quality"))
        self.max_side = check_int("max_side", max_side, minimum=1, allow_none=True)
        self.upscale = bool(upscale)
        self.base_k = check_int("base_k", base_k, minimum=1)
        self.inc_k = check_int("inc_k", inc_k, minimum=0)
        self.sigma = check_float("sigma", sigma, minimum=0.0)
        self.num_threads = check_int("num_threads", num_threads, minimum=0, allow_none=True)
        self.seed = check_int("seed", seed, minimum=0, allow_none=True)

    def _propose(self, image: np.ndarray, features: Any | None, image_id: ImageId | None) -> RawProposals:
        height, width = image.shape[:2]
        scale = resize_scale(height, width, max_side=self.max_side, upscale=self.upscale)
        resized, factors = resize_image(image, scale)
        with opencv_threads(self.num_threads):
            search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
            search.setBaseImage(resized)
            if self.mode == "fast":
                search.switchToSelectiveSearchFast(self.base_k, self.inc_k, self.sigma)
            else:
                search.switchToSelectiveSearchQuality(self.base_k, self.inc_k, self.sigma)
            if self.seed is not None:
                _seed_libc(self.seed)
            rects = search.process()
        return RawProposals(rescale_boxes(rects_to_boxes(rects), factors))
