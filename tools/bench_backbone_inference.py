"""Time each backbone's inference pass as is, with batch norm folded, and folded in channels-last layout.

    python tools/bench_backbone_inference.py --height 480 --width 640 --threads 1 \
        --backbones efficientnet_lite0,small,resnet18,mobilenet_v2

Prints a markdown table: ms per image of each variant (median of ``--repeats``
passes after two warm-up passes), its ratio to the plain body, and the largest
absolute difference of the output map from the plain body's.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from detaccel.allocator import reuse_freed_memory
from detaccel.config.schema import EFFICIENTNET_LITE, BackboneConfig
from detaccel.models.backbones import build_backbone

VARIANTS = (("as is", False, False), ("folded", True, False), ("folded, channels-last", True, True))


def _median_ms(backbone: torch.nn.Module, images: torch.Tensor, repeats: int) -> tuple[float, torch.Tensor]:
    with torch.no_grad():
        out = backbone(images)
        backbone(images)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            backbone(images)
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0, out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbones", default="efficientnet_lite0,small,resnet18,mobilenet_v2")
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args(argv)
    reuse_freed_memory()  # as the detaccel command does (detaccel.allocator)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images = torch.randn(1, 3, args.height, args.width)
    size = f"{args.width}x{args.height}, {args.threads} thread"
    print(f"| backbone | variant | ms / image ({size}) | ratio | max abs diff |")
    print("|---|---|---:|---:|---:|")
    for name in args.backbones.split(","):
        pretrained = "imagenet" if name in EFFICIENTNET_LITE else None
        config = BackboneConfig(name=name, pretrained=pretrained)
        backbone = build_backbone(config).eval()
        base_ms, reference = None, None
        for label, fold, channels_last in VARIANTS:
            backbone.set_inference_layout(fold, channels_last)
            ms, out = _median_ms(backbone, images, args.repeats)
            if base_ms is None:
                base_ms, reference = ms, out
            diff = float((out - reference).abs().max())
            print(f"| {name} | {label} | {ms:.1f} | {ms / base_ms:.2f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
