#!/usr/bin/env python
"""Where a trained detector's R²-CNN spends its own time, part by part, and the backbone pass's page faults.

Computes the map R²-CNN reads for each test image once, then runs the detector's proposal slot on
those maps ``--rounds`` times under the project's stage timer (:mod:`detaccel.profiling`): the parts
are the stages R²-CNN itself reports (the learned head, the levels and level boxes, the local search,
the local maxima, the learned sides' boxes, the ranking with NMS, the final clean-up). Prints the
median over rounds of each part's milliseconds per image. Then times the backbone pass on one image
and counts its minor page faults per forward (run with ``DETACCEL_MALLOC=default`` for glibc's
default allocator settings).

    python tools/bench_r2cnn_parts.py --checkpoint outputs/synth_sides/detaccel/model_final.pth --images 90
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from collections import defaultdict

import torch

from detaccel.allocator import reuse_freed_memory
from detaccel.data import read_image
from detaccel.data.transforms import batch_images
from detaccel.engine import init_distributed
from detaccel.engine.data import load_split
from detaccel.engine.loading import load_detector
from detaccel.models.proposal_generator import FeatureProposals
from detaccel.profiling import StageTimer, stage

OWN_TIME = "proposals"


def backbone_pass(model: torch.nn.Module, record) -> tuple[float, float, str]:
    """``(ms, minor page faults, "WxH")`` per forward of the backbone on ``record``'s image (20 passes)."""
    (item,) = model.test_transform(read_image(record.file_path))
    batch, _ = batch_images([torch.from_numpy(item.image)], model.size_divisibility)
    model.backbone(batch)
    before, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
    for _ in range(20):
        model.backbone(batch)
    seconds = (time.perf_counter() - start) / 20
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20
    return 1e3 * seconds, faults, f"{batch.shape[-1]}x{batch.shape[-2]}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True, help="a detector trained with R²-CNN on its own map")
    parser.add_argument("--images", type=int, default=90)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    applied = reuse_freed_memory()  # as the detaccel command does (detaccel.allocator)
    torch.set_num_threads(args.threads)
    config, model, _ = load_detector(args.checkpoint)
    source = model.proposal_generator
    if not isinstance(source, FeatureProposals):
        parser.error(f"{args.checkpoint}: its proposals are {source.describe()}, not R²-CNN on its own map")
    records = list(load_split(config, config.data.test_split, init_distributed("cpu")).records)[: args.images]
    inputs = []
    with torch.no_grad():
        backbone_ms, faults, size = backbone_pass(model, records[0])
        for record in records:
            (item,) = model.test_transform(read_image(record.file_path))
            batch, sizes = batch_images([torch.from_numpy(item.image)], model.size_divisibility)
            inputs.append((model._maps(batch)[1], sizes, [item.scale]))
        rounds: dict[str, list[float]] = defaultdict(list)
        for _ in range(args.rounds):
            timer = StageTimer(warmup=2)
            with timer.activate():
                for feature_map, sizes, scales in inputs:
                    with timer.image(), stage(OWN_TIME):
                        source(feature_map, sizes, scales, model.objectness)
            summary = timer.summary()
            named = 0.0
            for name, stats in summary.items():
                if name.startswith(OWN_TIME + "/"):
                    rounds[name.split("/", 1)[1]].append(1e3 * stats.mean)
                    named += stats.mean
            rounds["total (own time)"].append(1e3 * summary[OWN_TIME].mean)
            rounds["the rest (glue)"].append(1e3 * (summary[OWN_TIME].mean - named))
    print(f"R²-CNN own time by part, ms per image (median of {args.rounds} rounds, {len(inputs)} images):")
    print("| part | ms / image |\n|---|---:|")
    for part, values in rounds.items():
        print(f"| {part} | {statistics.median(values):.3f} |")
    settings = "applied" if applied else "not applied"
    print(
        f"\nbackbone pass on one {size} input, first thing after loading the model: {backbone_ms:.2f} ms and"
    )
    print(f"{faults:.0f} minor page faults per forward (allocator settings {settings})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
