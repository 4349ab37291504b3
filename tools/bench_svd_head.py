"""Time the detection head (fc6 + fc7) at a number of RoIs, before and after truncated SVD, in one process.

    PYTHONPATH=. python tools/bench_svd_head.py --checkpoint outputs/fast_rcnn_synthetic/model_final.pth \
        --svd fc6=128,fc7=64 --rois 2000

With only ``--config``, the head has that configuration's size and random weights (timing only).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch

from detaccel.allocator import reuse_freed_memory
from detaccel.commands.compress import parse_ranks
from detaccel.models.svd import compress_head, linear_cost


def time_head(head: torch.nn.Module, features: torch.Tensor, repeat: int, warmup: int = 3) -> list[float]:
    with torch.inference_mode():
        for _ in range(warmup):
            head(features)
        samples = []
        for _ in range(repeat):
            start = time.perf_counter()
            head(features)
            samples.append(time.perf_counter() - start)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a trained (uncompressed) detaccel checkpoint")
    source.add_argument("--config", help="a configuration (random head weights of its size)")
    ranks = parser.add_mutually_exclusive_group(required=True)
    ranks.add_argument("--svd", help="ranks, e.g. fc6=128,fc7=64")
    ranks.add_argument("--svd-energy", type=float, help="retained energy per layer instead of ranks")
    parser.add_argument("--rois", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: leave as is)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    reuse_freed_memory()  # as the detaccel command does (detaccel.allocator)
    if args.threads:
        torch.set_num_threads(args.threads)

    from detaccel.config import load_config
    from detaccel.engine.loading import load_detector
    from detaccel.models import build_detector

    if args.checkpoint:
        _, model, _ = load_detector(args.checkpoint)
    else:
        config = load_config(args.config)
        model = build_detector(config, 20)
    head = model.head.eval()
    compressed = copy.deepcopy(head)
    if args.svd:
        report = compress_head(compressed, ranks=parse_ranks(args.svd))
    else:
        report = compress_head(compressed, energy=args.svd_energy)
    features = torch.randn(args.rois, head.fc6.in_features if hasattr(head.fc6, "in_features") else 0)
    # Interleave the two heads so that load from other processes hits both alike.
    original_times, compressed_times = [], []
    for _ in range(max(args.repeat // 5, 1)):
        original_times += time_head(head, features, 5)
        compressed_times += time_head(compressed, features, 5)
    original = statistics.median(original_times)
    factorised = statistics.median(compressed_times)
    macs = [sum(linear_cost(getattr(h, n))[1] for n in ("fc6", "fc7")) for h in (head, compressed)]
    result = {
        "rois": args.rois,
        "threads": torch.get_num_threads(),
        "layers": report,
        "head_ms_original": original * 1000,
        "head_ms_compressed": factorised * 1000,
        "speedup": original / factorised,
        "macs_per_roi_original": macs[0],
        "macs_per_roi_compressed": macs[1],
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for row in report:
        print(
            f"{row['layer']}: {row['out_features']}x{row['in_features']} -> rank {row['rank']} "
            f"(energy kept {row['energy']:.4f})"
        )
    print(
        f"fc6+fc7 at {args.rois} RoIs, {result['threads']} threads: "
        f"original {result['head_ms_original']:.2f} ms, "
        f"compressed {result['head_ms_compressed']:.2f} ms -> {result['speedup']:.2f}x faster "
        f"({macs[0]:,} -> {macs[1]:,} multiply-adds per RoI)"
    )


if __name__ == "__main__":
    main()
