"""Named, nestable stage timers with per-image statistics."""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch

# The stages every detector reports, in pipeline order.
DETECTION_STAGES = (
    "decode",
    "preprocess",
    "backbone",
    "proposals",
    "roi_features",
    "head",
    "predictor",
    "postprocess",
)

_ACTIVE: contextvars.ContextVar[StageTimer | None] = contextvars.ContextVar(
    "detaccel_stage_timer", default=None
)
_NOTHING = contextlib.nullcontext()


def active_timer() -> StageTimer | None:
    """The timer activated in this context, if any."""
    return _ACTIVE.get()


def stage(name: str) -> contextlib.AbstractContextManager:
    """Time the enclosed block as stage ``name`` of the active timer (a no-op without one)."""
    timer = _ACTIVE.get()
    return _NOTHING if timer is None else timer.stage(name)


@dataclass(frozen=True)
class StageStats:
    """Statistics of one stage over the profiled images, in seconds."""

    name: str
    mean: float
    p50: float
    p90: float
    p99: float
    share: float  # of the mean total time per image (top-level stages sum to at most 1)
    images: int

    def as_dict(self) -> dict:
        return asdict(self)


class StageTimer:
    """Collects the time of named stages per image.

    Nested stages are recorded under ``outer/inner``. On a CUDA device each
    stage is bracketed by CUDA events, read when the image ends (one
    synchronisation per image); on the CPU by ``time.perf_counter``. The first
    ``warmup`` images are measured but not kept.

    Args:
        device: the device the work runs on (``"cuda"`` enables event timing).
        warmup: images to discard at the start.
        record_functions: also emit ``torch.profiler.record_function`` ranges
            (for Chrome traces).
    """

    def __init__(self, device: str | torch.device = "cpu", warmup: int = 0, record_functions: bool = False):
        if warmup < 0:
            raise ValueError(f"warmup: expected a non-negative number of images, got {warmup}")
        self.cuda = torch.device(device).type == "cuda"
        self.warmup = warmup
        self.record_functions = record_functions
        self.images: list[dict[str, float]] = []
        self.totals: list[float] = []
        self._seen = 0
        self._path: list[str] = []
        self._current: dict[str, float] | None = None
        self._pending: list[tuple[str, torch.cuda.Event, torch.cuda.Event]] = []
        self._image_start: float | torch.cuda.Event | None = None

    @contextlib.contextmanager
    def activate(self) -> Iterator[StageTimer]:
        """Make this the timer that :func:`stage` reports to, inside the block."""
        token = _ACTIVE.set(self)
        try:
            yield self
        finally:
            _ACTIVE.reset(token)

    @contextlib.contextmanager
    def image(self) -> Iterator[None]:
        """Bracket the processing of one image; its stages are kept when it ends."""
        if self._current is not None:
            raise RuntimeError("StageTimer.image(): images cannot be nested")
        self._current = {}
        start = self._mark()
        try:
            yield
        finally:
            end = self._mark()
            record, self._current = self._current, None
            total = self._resolve(record, start, end)
            self._seen += 1
            if self._seen > self.warmup:
                self.images.append(record)
                self.totals.append(total)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block as ``name`` (nested inside the current stage, if any)."""
        self._path.append(name)
        key = "/".join(self._path)
        ranged = torch.profiler.record_function(key) if self.record_functions else _NOTHING
        try:
            with ranged:
                start = self._mark()
                try:
                    yield
                finally:
                    end = self._mark()
            self._add(key, start, end)
        finally:
            self._path.pop()

    def _mark(self) -> float | torch.cuda.Event:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def _add(self, key: str, start, end) -> None:
        if self._current is None:
            return  # a stage outside any image is not kept
        if self.cuda:
            self._pending.append((key, start, end))
        else:
            self._current[key] = self._current.get(key, 0.0) + (end - start)

    def _resolve(self, record: dict[str, float], start, end) -> float:
        if not self.cuda:
            return end - start
        end.synchronize()
        for key, s, e in self._pending:
            record[key] = record.get(key, 0.0) + s.elapsed_time(e) / 1e3
        self._pending.clear()
        return start.elapsed_time(end) / 1e3

    def stage_names(self) -> list[str]:
        """Every stage seen, in first-seen order."""
        names: dict[str, None] = {}
        for record in self.images:
            names.update(dict.fromkeys(record))
        return list(names)

    def summary(self) -> dict[str, StageStats]:
        """Per stage (and ``total``): mean, p50, p90, p99 over the kept images, and share of the total."""
        if not self.images:
            return {}
        totals = np.asarray(self.totals)
        mean_total = float(totals.mean())
        result = {}
        for name in [*self.stage_names(), "total"]:
            values = totals if name == "total" else np.asarray([r.get(name, 0.0) for r in self.images])
            mean = float(values.mean())
            result[name] = StageStats(
                name=name,
                mean=mean,
                p50=float(np.percentile(values, 50)),
                p90=float(np.percentile(values, 90)),
                p99=float(np.percentile(values, 99)),
                share=mean / mean_total if mean_total > 0 else 0.0,
                images=len(values),
            )
        return result
