"""A tiny synthetic dataset and detector configurations that train in seconds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from detaccel.config import Config, config_from_dict
from detaccel.data import write_synthetic

# R²-CNN with a learned objectness head (and box sides) on a small backbone's stride-8 map.
LEARNED_R2CNN = {
    "name": "r2cnn",
    "params": {"reduction": "objectness", "objectness_channels": 8, "objectness_boxes": True,
               "layer": "stride8", "ranking": "contrast", "num_levels": 6},
    "max_test": 100,
}  # fmt: skip


def tiny_dataset(root: Path, num_images: int = 10) -> Path:
    if not (root / "synthetic.json").is_file():
        write_synthetic(root, "voc", seed=3, num_images=num_images, width=96, height=72)
    return root


def tiny_config_dict(root: Path, family: str = "fast_rcnn", **sections: dict[str, Any]) -> dict[str, Any]:
    mapping: dict[str, Any] = {
        "model": {"family": family},
        "backbone": {"name": "small", "width": 8, "stride": 8},
        "roi_features": {"output_size": 3, "spp_levels": [1, 2], "warp_size": 24, "context_padding": 4},
        "head": {"fc_dims": [32, 16], "dropout": 0.5},
        "proposals": {
            "name": "sliding_window",
            "params": {"scales": [16, 32, 48], "aspect_ratios": [1.0], "stride_fraction": 0.5},
            "cache_dir": str(root / "proposals"),
        },
        "data": {
            "root": str(root),
            "classes": "synthetic",
            "train_split": "trainval",
            "test_split": "test",
            "train_scales": [72],
            "test_scale": 72,
            "max_size": 200,
        },
        "train": {
            "images_per_batch": 2,
            "rois_per_image": 16,
            "regions_per_batch": 16,
            "base_lr": 0.01,
            "max_iter": 4,
            "steps": [3],
            "checkpoint_period": 2,
            "log_period": 1,
            "eval_after_training": False,
            "svm_hard_negative_rounds": 1,
        },
        "eval": {"metrics": ["voc07"], "score_threshold": 0.0},
    }
    for section, values in sections.items():
        mapping.setdefault(section, {}).update(values)
    return mapping


def tiny_config(root: Path, family: str = "fast_rcnn", **sections: dict[str, Any]) -> Config:
    return config_from_dict(tiny_config_dict(root, family, **sections))


def detect_on_maps(model, maps, scales, proposals, sizes):
    """``(boxes, scores, labels)`` per image from shared maps at each test scale: the detector's
    :meth:`pool_on_maps` then :meth:`detect_pooled`, as :meth:`predict` runs them."""
    from detaccel.models.detector import PooledRegions

    pooled = model.pool_on_maps(maps, scales, proposals, sizes)
    regions = PooledRegions(pooled, [p.detach().cpu().numpy() for p in proposals], list(sizes))
    return [(p.boxes, p.scores, p.labels) for p in model.detect_pooled(regions)]
