"""Evaluation: VOC AP/mAP, COCO AP through pycocotools, proposal recall, result files."""

from detaccel.evaluation.coco_eval import (
    coco_image_ids,
    dataset_ground_truth,
    detections_to_coco,
    evaluate_coco,
    evaluate_coco_results,
    records_to_coco,
)
from detaccel.evaluation.detections import Detections, align_detections
from detaccel.evaluation.evaluate import METRICS, evaluate_detections
from detaccel.evaluation.overlaps import pairwise_iou
from detaccel.evaluation.proposal_eval import AR_LIMITS, proposal_recall
from detaccel.evaluation.result_files import (
    read_coco_detections,
    read_coco_results,
    read_proposals,
    read_voc_detections,
    write_coco_detections,
    write_proposals,
    write_voc_detections,
)
from detaccel.evaluation.voc_eval import evaluate_voc, voc_ap

__all__ = [
    "AR_LIMITS",
    "METRICS",
    "Detections",
    "align_detections",
    "coco_image_ids",
    "dataset_ground_truth",
    "detections_to_coco",
    "evaluate_coco",
    "evaluate_coco_results",
    "evaluate_detections",
    "evaluate_voc",
    "pairwise_iou",
    "proposal_recall",
    "read_coco_detections",
    "read_coco_results",
    "read_proposals",
    "read_voc_detections",
    "records_to_coco",
    "voc_ap",
    "write_coco_detections",
    "write_proposals",
    "write_voc_detections",
]
