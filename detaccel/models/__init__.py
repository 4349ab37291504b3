"""Region-based detectors: backbones, RoI heads (features, fc head, predictor), losses, sampling, SVD."""

from detaccel.models.backbones import BackboneWeightsError, build_backbone, load_backbone_weights
from detaccel.models.detector import RegionDetector, build_detector
from detaccel.models.heads import FCHead
from detaccel.models.losses import detection_loss
from detaccel.models.postprocess import postprocess_detections
from detaccel.models.predictor import Predictor
from detaccel.models.roi_features import (
    RoIPoolFeatures,
    SPPFeatures,
    WarpFeatures,
    build_roi_features,
    warp_regions,
)
from detaccel.models.roi_heads import RoIHeads
from detaccel.models.sampling import SampledRoIs, assign_targets, sample_rois
from detaccel.models.svd import TruncatedSVDLinear, factorize_linear, linear_cost, rank_for_energy

__all__ = [
    "BackboneWeightsError",
    "FCHead",
    "Predictor",
    "RegionDetector",
    "RoIHeads",
    "RoIPoolFeatures",
    "SPPFeatures",
    "SampledRoIs",
    "TruncatedSVDLinear",
    "WarpFeatures",
    "assign_targets",
    "build_backbone",
    "build_detector",
    "build_roi_features",
    "detection_loss",
    "factorize_linear",
    "linear_cost",
    "load_backbone_weights",
    "postprocess_detections",
    "rank_for_energy",
    "sample_rois",
    "warp_regions",
]
