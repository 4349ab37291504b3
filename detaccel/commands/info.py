"""``detaccel info``: versions, devices and which compiled operators run where."""

from __future__ import annotations

import argparse
import json
import platform


def collect() -> dict:
    """Return torch/CUDA versions and, per compiled operator, the devices it has kernels for."""
    import torch
    import torchvision

    from detaccel import __version__
    from detaccel.ops import extension

    return {
        "detaccel": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "cpu_threads": torch.get_num_threads(),
        "extension_loaded": extension.is_loaded(),
        "extension_error": extension.load_error(),
        "operators": extension.operator_backends(),
    }


def run(args: argparse.Namespace) -> int:
    info = collect()
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    for key, value in info.items():
        if key == "operators":
            continue
        print(f"{key:18s} {value}")
    print("operators:")
    for name, backends in info["operators"].items():
        print(f"  {name:22s} {', '.join(backends) if backends else 'unavailable'}")
    return 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("info", help="show versions, devices and available compiled operators")
    parser.add_argument("--json", action="store_true", help="print as JSON")
    parser.set_defaults(func=run)
