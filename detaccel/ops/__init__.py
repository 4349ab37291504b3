"""Detection operators backed by compiled CPU and CUDA kernels.

``roi_pool``, ``spp_pool``, ``nms``, ``batched_nms`` and the R²-CNN steps
(``r2cnn_feature_levels``, ``r2cnn_level_boxes``, ``r2cnn_contrast_scores``) are registered as
PyTorch operators (``torch.ops.detaccel.*``) with autograd and fake-tensor
support, so they work under ``torch.compile``. Box utilities are plain
vectorised PyTorch.
"""

from detaccel.ops.boxes import (
    box_area,
    box_iou,
    clip_boxes_to_image,
    decode_boxes,
    encode_boxes,
    remove_small_boxes,
)
from detaccel.ops.nms import batched_nms, nms
from detaccel.ops.r2cnn import r2cnn_contrast_scores, r2cnn_feature_levels, r2cnn_level_boxes
from detaccel.ops.roi_pool import RoIPool, roi_pool
from detaccel.ops.spp_pool import SpatialPyramidPool, spp_output_dim, spp_pool

__all__ = [
    "RoIPool",
    "SpatialPyramidPool",
    "batched_nms",
    "box_area",
    "box_iou",
    "clip_boxes_to_image",
    "decode_boxes",
    "encode_boxes",
    "nms",
    "r2cnn_contrast_scores",
    "r2cnn_feature_levels",
    "r2cnn_level_boxes",
    "remove_small_boxes",
    "roi_pool",
    "spp_output_dim",
    "spp_pool",
]
