"""Edge Boxes (Zitnick and Dollár) through OpenCV's ximgproc, on edges computed with OpenCV alone.

Edge Boxes expects thin edges with a magnitude in ``[0, 1]`` and an
orientation map. Without a structured-forest model the edges come from the
image gradient: a 3x3 Sobel on the (lightly blurred) image, taken per pixel
from the color channel with the strongest response, kept only on the Canny
edges of that gradient (thin, hysteresis-cleaned), and divided by a high
percentile of the kept magnitudes (clipped to 1). The orientation is the
gradient direction ``atan2(dy, dx)`` folded into ``[0, pi)`` (``dy`` along
rows): the direction of the edge normal, the quantity OpenCV's
``StructuredEdgeDetection.computeOrientation`` provides. Unmasked gradient
maps make Edge Boxes two orders of magnitude slower and worse.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from detaccel.data.transforms import resize_scale
from detaccel.proposals._checks import check_float, check_int
from detaccel.proposals.base import GeneratorBase, ImageId, RawProposals
from detaccel.proposals.image import rects_to_boxes, rescale_boxes, resize_image
from detaccel.proposals.opencv_threads import opencv_threads

# Edge magnitudes are divided by this percentile of the magnitudes on edges.
EDGE_NORM_PERCENTILE = 99.0


def edge_maps(
    image: np.ndarray, blur_sigma: float = 1.0, canny_low: float = 40.0, canny_high: float = 100.0
) -> tuple[np.ndarray, np.ndarray]:
    """Thin edge magnitude in ``[0, 1]`` and normal orientation in ``[0, pi)``, both float32 ``[H, W]``.

    Args:
        image: ``[H, W, 3]`` uint8 BGR.
        blur_sigma: Gaussian blur before differentiation (0: none).
        canny_low, canny_high: hysteresis thresholds on the L2 magnitude of the
            3x3 Sobel gradient (8-bit intensity units).
    """
    if blur_sigma > 0:
        image = cv2.GaussianBlur(image, (0, 0), blur_sigma)
    dx = cv2.Sobel(image, cv2.CV_16S, 1, 0, ksize=3)
    dy = cv2.Sobel(image, cv2.CV_16S, 0, 1, ksize=3)
    edges = cv2.Canny(dx, dy, canny_low, canny_high, L2gradient=True) > 0

    gx, gy = dx.astype(np.float32), dy.astype(np.float32)
    if gx.ndim == 3:
        strongest = np.argmax(gx * gx + gy * gy, axis=2)[..., None]
        gx = np.take_along_axis(gx, strongest, axis=2)[..., 0]
        gy = np.take_along_axis(gy, strongest, axis=2)[..., 0]
    magnitude = np.sqrt(gx * gx + gy * gy)
    magnitude[~edges] = 0.0
    if edges.any():
        norm = float(np.percentile(magnitude[edges], EDGE_NORM_PERCENTILE))
        magnitude = np.minimum(magnitude / max(norm, 1e-6), 1.0)
    orientation = np.mod(np.arctan2(gy, gx), np.pi).astype(np.float32)
    orientation[orientation >= np.pi] = 0.0
    return np.ascontiguousarray(magnitude, dtype=np.float32), np.ascontiguousarray(orientation)


class EdgeBoxes(GeneratorBase):
    """Edge Boxes proposals, scored (decreasing score order).

    The edge parameters are those of :func:`edge_maps`; the others are
    ``cv2.ximgproc.createEdgeBoxes``'s (``alpha``: sliding-window step,
    ``beta``: NMS threshold, ``eta``: its adaptation rate, ``min_score``,
    ``max_boxes``, ``edge_min_mag``, ``edge_merge_thr``, ``cluster_min_mag``,
    ``max_aspect_ratio``, ``min_box_area`` in pixels of the searched image,
    ``gamma``: affinity sensitivity, ``kappa``: scale sensitivity).
    ``max_side``/``upscale`` resize the image first as in selective search
    (default: native size); ``num_threads`` sets ``cv2.setNumThreads``.
    """

    name = "edge_boxes"

    def __init__(
        self,
        *,
        blur_sigma: float = 1.0,
        canny_low: float = 40.0,
        canny_high: float = 100.0,
        alpha: float = 0.65,
        beta: float = 0.75,
        eta: float = 1.0,
        min_score: float = 0.01,
        max_boxes: int = 2000,
        edge_min_mag: float = 0.1,
        edge_merge_thr: float = 0.5,
        cluster_min_mag: float = 0.5,
        max_aspect_ratio: float = 3.0,
        min_box_area: float = 1000.0,
        gamma: float = 2.0,
        kappa: float = 1.5,
        max_side: int | None = None,
        upscale: bool = False,
        num_threads: int | None = None,
        max_proposals: int | None = None,
        min_size: float = 1.0,
    ) -> None:
        super().__init__(max_proposals=max_proposals, min_size=min_size)
        self.blur_sigma = check_float("blur_sigma", blur_sigma)
        self.canny_low = check_float("canny_low", canny_low)
        self.canny_high = check_float("canny_high", canny_high)
        for name in ("alpha", "beta"):
            value = check_float(name, locals()[name], strict=True)
            if value >= 1:
                raise ValueError(f"{name}: expected a number in (0, 1), got {value!r}")
            setattr(self, name, value)
        self.eta = check_float("eta", eta, strict=True)
        self.min_score = check_float("min_score", min_score)
        self.max_boxes = check_int("max_boxes", max_boxes, minimum=1)
        self.edge_min_mag = check_float("edge_min_mag", edge_min_mag)
        self.edge_merge_thr = check_float("edge_merge_thr", edge_merge_thr)
        self.cluster_min_mag = check_float("cluster_min_mag", cluster_min_mag)
        self.max_aspect_ratio = check_float("max_aspect_ratio", max_aspect_ratio, minimum=1.0)
        self.min_box_area = check_float("min_box_area", min_box_area)
        self.gamma = check_float("gamma", gamma)
        self.kappa = check_float("kappa", kappa)
        self.max_side = check_int("max_side", max_side, minimum=1, allow_none=True)
        self.upscale = bool(upscale)
        self.num_threads = check_int("num_threads", num_threads, minimum=0, allow_none=True)

    def _propose(self, image: np.ndarray, features: Any | None, image_id: ImageId | None) -> RawProposals:
        height, width = image.shape[:2]
        scale = resize_scale(height, width, max_side=self.max_side, upscale=self.upscale)
        resized, factors = resize_image(image, scale)
        with opencv_threads(self.num_threads):
            edges, orientation = edge_maps(resized, self.blur_sigma, self.canny_low, self.canny_high)
            if not edges.any():
                return RawProposals(np.zeros((0, 4)), np.zeros(0))
            searcher = cv2.ximgproc.createEdgeBoxes(
                alpha=self.alpha,
                beta=self.beta,
                eta=self.eta,
                minScore=self.min_score,
                maxBoxes=self.max_boxes,
                edgeMinMag=self.edge_min_mag,
                edgeMergeThr=self.edge_merge_thr,
                clusterMinMag=self.cluster_min_mag,
                maxAspectRatio=self.max_aspect_ratio,
                minBoxArea=self.min_box_area,
                gamma=self.gamma,
                kappa=self.kappa,
            )
            rects, scores = searcher.getBoundingBoxes(edges, orientation)
        boxes = rescale_boxes(rects_to_boxes(rects), factors)
        scores = np.zeros(0) if scores is None or len(scores) == 0 else np.asarray(scores).reshape(-1)
        return RawProposals(boxes, scores[: len(boxes)])
