#!/usr/bin/env python
"""Operator benchmark: detaccel kernels against torchvision, side by side in one process.

Times RoI pooling (forward and backward), spatial pyramid pooling (against
one torchvision ``roi_pool`` call per level, concatenated) and NMS on the same
inputs, reports medians and the speed-up ratio (torchvision time / detaccel
time), and checks that both sides computed the same result. CUDA cases run
when a GPU is available.

    python tools/bench_ops.py --out outputs/bench_ops [--threads 2] [--repeats 7]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision

from detaccel import ops
from detaccel.allocator import reuse_freed_memory

LEVELS = (1, 2, 3, 6)
SCALE = 1 / 16


def random_rois(
    num: int, image_hw: tuple[int, int], device: str, dtype: torch.dtype, seed: int
) -> torch.Tensor:
    """RoIs with sides uniform in [16, 300] pixels, anywhere in the image."""
    g = torch.Generator().manual_seed(seed)
    height, width = image_hw
    wh = torch.rand(num, 2, generator=g) * 284 + 16
    xy = torch.rand(num, 2, generator=g) * torch.tensor([width - 16.0, height - 16.0])
    return torch.cat([torch.zeros(num, 1), xy, xy + wh], dim=1).to(device=device, dtype=dtype)


def median_ms(fn: Callable[[], object], repeats: int, device: str) -> float:
    """Median wall time of ``fn`` in milliseconds after one warm-up call (synchronised on CUDA)."""

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def backward_timer(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> Callable[[], object]:
    """A callable that runs only the backward pass of ``forward(x)`` (same output gradient every time)."""
    leaf = x.detach().requires_grad_()
    out = forward(leaf)
    grad = torch.randn(out.shape, generator=torch.Generator().manual_seed(3)).to(out)
    return lambda: torch.autograd.grad(out, leaf, grad, retain_graph=True)


def compare(
    name: str,
    ours: Callable[[], torch.Tensor],
    theirs: Callable[[], torch.Tensor],
    repeats: int,
    device: str,
    check: Callable[[torch.Tensor, torch.Tensor], bool] | None = None,
) -> dict:
    """Time both callables on the same inputs and check their outputs agree."""
    ours_result, theirs_result = ours(), theirs()
    if isinstance(ours_result, tuple):
        ours_result, theirs_result = ours_result[0], theirs_result[0]
    same = check(ours_result, theirs_result) if check else torch.equal(ours_result, theirs_result)
    ours_ms = median_ms(ours, repeats, device)
    theirs_ms = median_ms(theirs, repeats, device)
    row = {
        "case": name,
        "device": device,
        "detaccel_ms": round(ours_ms, 3),
        "torchvision_ms": round(theirs_ms, 3),
        "speedup": round(theirs_ms / ours_ms, 2),
        "outputs_agree": bool(same),
    }
    print(
        f"{name:55s} detaccel {ours_ms:10.3f} ms  torchvision {theirs_ms:10.3f} ms  "
        f"x{row['speedup']:<6} agree={same}",
        flush=True,
    )
    return row


def same_kept_boxes(scores: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], bool]:
    """NMS results agree: the same boxes, in the same score order (ties may be ordered differently)."""

    def check(a: torch.Tensor, b: torch.Tensor) -> bool:
        return torch.equal(a.sort().values, b.sort().values) and torch.equal(scores[a], scores[b])

    return check


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a.float(), b.float(), rtol=1e-3, atol=1e-3)


def pooling_cases(device: str, dtype: torch.dtype, num_rois: int, repeats: int) -> list[dict]:
    x = torch.randn(1, 512, 38, 50, generator=torch.Generator().manual_seed(0)).to(device=device, dtype=dtype)
    rois = random_rois(num_rois, (38 * 16, 50 * 16), device, dtype, seed=1)
    tag = f"{device} {str(dtype).replace('torch.', '')} 1x512x38x50 {num_rois} RoIs"
    rows = []

    def ours_roi(t):
        return ops.roi_pool(t, rois, (7, 7), SCALE)

    def tv_roi(t):
        return torchvision.ops.roi_pool(t, rois, (7, 7), SCALE)

    def ours_spp(t):
        return ops.spp_pool(t, rois, LEVELS, SCALE)

    def tv_spp(t):
        return torch.cat([torchvision.ops.roi_pool(t, rois, (n, n), SCALE).flatten(1) for n in LEVELS], dim=1)

    try:
        tv_roi(x)
    except (RuntimeError, NotImplementedError) as error:
        print(f"{tag}: torchvision cannot run this case ({str(error).splitlines()[0]})")
        return [
            {"case": f"roi_pool forward 7x7, {tag}", "device": device, "torchvision_error": str(error)[:200]}
        ]
    # Inference (no autograd): detaccel skips the argmax that only a backward pass needs.
    with torch.no_grad():
        rows.append(
            compare(
                f"roi_pool forward 7x7 inference, {tag}",
                lambda: ours_roi(x),
                lambda: tv_roi(x),
                repeats,
                device,
            )
        )
    # Training: the input requires grad, both sides record their argmax.
    x_train = x.detach().requires_grad_()
    rows.append(
        compare(
            f"roi_pool forward 7x7 training, {tag}",
            lambda: ours_roi(x_train),
            lambda: tv_roi(x_train),
            repeats,
            device,
            check=lambda a, b: torch.equal(a.detach(), b.detach()),
        )
    )
    rows.append(
        compare(
            f"roi_pool backward 7x7, {tag}",
            backward_timer(ours_roi, x),
            backward_timer(tv_roi, x),
            repeats,
            device,
            check=close,
        )
    )
    with torch.no_grad():
        rows.append(
            compare(
                f"spp_pool forward (1,2,3,6) inference, {tag}",
                lambda: ours_spp(x),
                lambda: tv_spp(x),
                repeats,
                device,
            )
        )
    rows.append(
        compare(
            f"spp_pool forward (1,2,3,6) training, {tag}",
            lambda: ours_spp(x_train),
            lambda: tv_spp(x_train),
            repeats,
            device,
            check=lambda a, b: torch.equal(a.detach(), b.detach()),
        )
    )
    rows.append(
        compare(
            f"spp_pool backward (1,2,3,6), {tag}",
            backward_timer(ours_spp, x),
            backward_timer(tv_spp, x),
            repeats,
            device,
            check=close,
        )
    )
    return rows


def nms_cases(device: str, repeats: int) -> list[dict]:
    g = torch.Generator().manual_seed(2)
    rows = []
    for n in (2000, 20000):
        xy = torch.rand(n, 2, generator=g) * 800
        boxes = torch.cat([xy, xy + torch.rand(n, 2, generator=g) * 200 + 4], dim=1).to(device)
        scores = torch.rand(n, generator=g).to(device)
        idxs = torch.randint(0, 20, (n,), generator=g).to(device)
        rows.append(
            compare(
                f"nms IoU 0.7, {device} float32 {n} boxes",
                lambda b=boxes, s=scores: ops.nms(b, s, 0.7),
                lambda b=boxes, s=scores: torchvision.ops.nms(b, s, 0.7),
                repeats,
                device,
                check=same_kept_boxes(scores),
            )
        )
        rows.append(
            compare(
                f"batched_nms IoU 0.5 20 classes, {device} float32 {n} boxes",
                lambda b=boxes, s=scores, i=idxs: ops.batched_nms(b, s, i, 0.5),
                lambda b=boxes, s=scores, i=idxs: torchvision.ops.batched_nms(b, s, i, 0.5),
                repeats,
                device,
                check=same_kept_boxes(scores),
            )
        )
    return rows


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    info = {
        "platform": platform.platform(),
        "processor": cpu_name(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def markdown(rows: list[dict], info: dict) -> str:
    lines = [
        f"Machine: {info['processor']}, {info['threads']} threads, torch {info['torch']}, "
        f"torchvision {info['torchvision']}" + (f", GPU {info['gpu']}" if "gpu" in info else ""),
        "",
        "| case | detaccel (ms) | torchvision (ms) | speed-up | outputs agree |",
        "|---|---:|---:|---:|:---:|",
    ]
    for row in rows:
        if "speedup" in row:
            lines.append(
                f"| {row['case']} | {row['detaccel_ms']:.2f} | {row['torchvision_ms']:.2f} | "
                f"{row['speedup']:.2f}x | {'yes' if row['outputs_agree'] else 'NO'} |"
            )
        else:
            lines.append(f"| {row['case']} | | torchvision cannot run it | | |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=Path("outputs/bench_ops"), help="directory for the report"
    )
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case (median reported)")
    parser.add_argument(
        "--no-cuda", action="store_true", help="skip the CUDA cases even when a GPU is present"
    )
    args = parser.parse_args()
    reuse_freed_memory()  # as the detaccel command does (detaccel.allocator)
    torch.set_num_threads(args.threads)
    info = machine()
    print(f"detaccel operator benchmark on {info['processor']}, {args.threads} threads", flush=True)

    rows = pooling_cases("cpu", torch.float32, 2000, args.repeats)
    rows += nms_cases("cpu", args.repeats)
    if torch.cuda.is_available() and not args.no_cuda:
        for dtype in (torch.float32, torch.float16):
            for num_rois in (2000, 20000):
                rows += pooling_cases("cuda", dtype, num_rois, max(args.repeats, 20))
        rows += nms_cases("cuda", max(args.repeats, 20))

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({"machine": info, "results": rows}, indent=2))
    report = markdown(rows, info)
    (args.out / "report.md").write_text(report)
    print(f"\n{report}\nwritten to {args.out}/report.md and {args.out}/results.json")
    return 0 if all(row.get("outputs_agree", True) for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
