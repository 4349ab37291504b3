"""Datasets: VOC and COCO loaders, the embedded synthetic set, image decoding.

Everything loads into :class:`ImageRecord` (boxes in inclusive 0-based
pixels, see :mod:`detaccel.data.records`) gathered in a :class:`DetectionDataset`.
Transforms and the ``torch`` dataset live in :mod:`detaccel.data.transforms`
and :mod:`detaccel.data.samples`.
"""

from detaccel.data.build import FORMATS, dataset_from_config, load_dataset
from detaccel.data.classes import SYNTHETIC_CLASSES, VOC_CLASSES, resolve_class_names
from detaccel.data.coco import (
    CategoryWarning,
    find_coco_split,
    load_coco,
    load_coco_split,
    resolve_coco_paths,
)
from detaccel.data.errors import BadInputWarning, DatasetError, DatasetIssue
from detaccel.data.io import decode_image, read_image
from detaccel.data.records import DetectionDataset, ImageId, ImageRecord, LeftOutCategory, attach_proposals
from detaccel.data.synthetic import synthetic_image, write_synthetic
from detaccel.data.voc import load_voc, resolve_voc_root

__all__ = [
    "FORMATS",
    "SYNTHETIC_CLASSES",
    "VOC_CLASSES",
    "BadInputWarning",
    "CategoryWarning",
    "DatasetError",
    "DatasetIssue",
    "DetectionDataset",
    "ImageId",
    "ImageRecord",
    "LeftOutCategory",
    "attach_proposals",
    "dataset_from_config",
    "decode_image",
    "find_coco_split",
    "load_coco",
    "load_coco_split",
    "load_dataset",
    "load_voc",
    "read_image",
    "resolve_class_names",
    "resolve_coco_paths",
    "resolve_voc_root",
    "synthetic_image",
    "write_synthetic",
]
