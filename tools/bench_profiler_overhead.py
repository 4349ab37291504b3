#!/usr/bin/env python
"""Overhead of the stage profiler on Fast R-CNN detection, measured side by side in one process.

Runs the same images through the same detector with fixed proposals, alternately with profiling
off (stage marks are no-ops) and on (a StageTimer collects every stage), and reports the median
time per image of each and the relative overhead.

    python tools/bench_profiler_overhead.py --checkpoint outputs/demo/models/fast_rcnn/model_final.pth
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from detaccel.allocator import reuse_freed_memory
from detaccel.benchmarks.detection import detect_image
from detaccel.engine import init_distributed
from detaccel.engine.data import load_split
from detaccel.engine.loading import load_detector
from detaccel.profiling import StageTimer


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--images", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=5, help="alternations of off/on over all images")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    reuse_freed_memory()  # as the detaccel command does (detaccel.allocator)
    torch.set_num_threads(args.threads)
    config, model, _ = load_detector(args.checkpoint)
    records = list(load_split(config, config.data.test_split, init_distributed("cpu")).records)[: args.images]
    # Sliding windows: proposals cost next to nothing, so the detector's own stages dominate.
    model.set_proposal_generator("sliding_window", {"max_proposals": 300})

    def pipeline(record):
        return detect_image(model, record)

    for record in records[:2]:
        pipeline(record)  # warm-up
    off, on = [], []
    for _ in range(args.rounds):
        for record in records:
            start = time.perf_counter()
            pipeline(record)
            off.append(time.perf_counter() - start)
            timer = StageTimer()
            with timer.activate():
                start = time.perf_counter()
                with timer.image():
                    pipeline(record)
                on.append(time.perf_counter() - start)
    off_ms, on_ms = 1e3 * statistics.median(off), 1e3 * statistics.median(on)
    print(f"profiling off: {off_ms:.3f} ms/image (median of {len(off)})")
    print(f"profiling on:  {on_ms:.3f} ms/image (median of {len(on)})")
    print(f"overhead: {100 * (on_ms - off_ms) / off_ms:+.2f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
