#!/usr/bin/env python
"""R²-CNN ablation: how each way of reading the map changes recall, AR and time, against selective search.

Every variant runs on the same images in one process (``detaccel.benchmarks.proposals``), one idea
changed at a time from the default (ImageNet EfficientNet-Lite0 at stride 16, absolute values):
the random AlexNet pool1 of the original, the signed sum, contrast ranking with NMS, the original
grouping, superlevel sets, the stride-8 maps (quantile levels, 6x slower and worse at AR@100 here,
were removed). With ``--checkpoint`` two rows are
added: R²-CNN with ranking on the trained detector's RoI map, and the detector's own proposal slot
as its configuration reads it (a learned objectness head included), at its test scale.

    python tools/ablate_r2cnn.py --data-root ../shared/data/raccoon --split-dir configs/splits/raccoon \\
        --short-side 480 --out outputs/ablation_raccoon
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from detaccel.allocator import reuse_freed_memory
from detaccel.benchmarks.proposals import markdown_table, run_proposal_benchmark
from detaccel.data import load_dataset
from detaccel.models.detector_proposals import DetectorProposals
from detaccel.proposals import build_generator

RANKED = {"ranking": "contrast"}


def variants(short_side: int, max_side: int) -> dict[str, dict[str, Any]]:
    """Name -> R²-CNN parameters of each ablation row."""
    size = {"short_side": short_side, "max_side": max_side}
    return {
        "r2cnn alexnet pool1 (random, original)": {"backbone": "alexnet", **size},
        "r2cnn lite0 s16 sum": {"reduction": "sum", **size},
        "r2cnn lite0 s16 abs": {**size},
        "r2cnn lite0 s16 abs + ranking": {**RANKED, **size},
        "r2cnn lite0 s16 abs + ranking + original grouping": {**RANKED, "grouping": "original", **size},
        "r2cnn lite0 s16 abs + ranking + superlevel": {**RANKED, "superlevel": True, **size},
        "r2cnn lite0 s8 abs + ranking": {**RANKED, "layer": "stride8", **size},
        "r2cnn lite0 s8 expanded + ranking": {**RANKED, "layer": "stride8_expanded", **size},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--split-dir", default=None)
    parser.add_argument("--split", default="test")
    parser.add_argument("--classes", default="auto")
    parser.add_argument("--short-side", type=int, default=600, help="image shorter side for R²-CNN's network")
    parser.add_argument("--max-side", type=int, default=1000)
    parser.add_argument("--ss-max-side", type=int, default=500, help="selective search (fast) resize")
    parser.add_argument("--checkpoint", default=None, help="also read this trained detector's RoI map")
    parser.add_argument("--max-images", type=int, default=None)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    reuse_freed_memory()  # as the detaccel command does (detaccel.allocator)
    torch.set_num_threads(args.threads)
    dataset = load_dataset("voc", args.data_root, args.split, classes=args.classes, split_dir=args.split_dir)
    records = list(dataset.records)[: args.max_images]
    generators = {
        "selective_search (fast)": build_generator(
            "selective_search", mode="fast", num_threads=args.threads, max_side=args.ss_max_side
        )
    }
    for name, params in variants(args.short_side, args.max_side).items():
        generators[name] = build_generator("r2cnn", **params)
    if args.checkpoint:
        from detaccel.engine.loading import load_detector

        config, model, _ = load_detector(args.checkpoint)
        size = {"short_side": config.data.test_scale, "max_side": config.data.max_size}
        generators["r2cnn trained detector's map + ranking"] = build_generator(
            "r2cnn", backbone=model.backbone, **RANKED, **size
        )
        generators[f"trained detector's own proposals ({config.proposals.name})"] = DetectorProposals(model)
    results = run_proposal_benchmark(generators, records, args.out, progress=True)
    table = markdown_table(results, reference="selective_search (fast)")
    Path(args.out, "ablation.md").write_text(table)
    print(f"{len(records)} images of {args.data_root} split {args.split!r}")
    print(table)
    print(json.dumps({name: r["reads"] for name, r in results.items()}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
