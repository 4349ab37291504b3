"""A Chrome trace of one call, with the detector's stages as named ranges."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from detaccel.profiling.timer import StageTimer


def chrome_trace(fn: Callable[[], object], path: str | Path, device: str | torch.device = "cpu") -> Path:
    """Run ``fn`` once under ``torch.profiler`` and write a Chrome trace (open it in chrome://tracing).

    Stages marked with :func:`~detaccel.profiling.stage` inside ``fn`` appear
    as ``record_function`` ranges next to the operators they ran.
    """
    activities = [torch.profiler.ProfilerActivity.CPU]
    if torch.device(device).type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    timer = StageTimer(device=device, record_functions=True)
    with torch.profiler.profile(activities=activities) as profiler, timer.activate(), timer.image():
        fn()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    profiler.export_chrome_trace(str(path))
    return path
