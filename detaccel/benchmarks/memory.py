"""Peak memory of a block of work: resident set size sampled in a thread (CPU) or CUDA's counter."""

from __future__ import annotations

import ctypes
import os
import threading
from types import TracebackType

import torch

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def release_free_memory() -> None:
    """Hand memory the C allocator holds but no longer uses back to the system (glibc; else a no-op).

    Without it, the resident set keeps what earlier work (training, another
    pair) freed, and a peak measured afterwards reports that work's memory.
    """
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)


def resident_bytes() -> int:
    """Current resident set size of this process (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


class PeakMemory:
    """``with PeakMemory(device) as peak: ...`` then ``peak.megabytes``: the peak memory during the block.

    On the CPU: the process's resident set size, sampled every ``interval``
    seconds, after freed memory is handed back (memory the process still uses,
    such as loaded models, counts too: it is what the work needs resident).
    On CUDA: the allocator's peak of allocated device memory.
    """

    def __init__(self, device: str | torch.device = "cpu", interval: float = 0.002) -> None:
        self.cuda = torch.device(device).type == "cuda"
        self.interval = interval
        self.megabytes = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._peak = 0

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, resident_bytes())

    def __enter__(self) -> PeakMemory:
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
        else:
            release_free_memory()
            self._peak = resident_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self.cuda:
            peak = torch.cuda.max_memory_allocated()
        else:
            self._stop.set()
            assert self._thread is not None
            self._thread.join()
            peak = max(self._peak, resident_bytes())
        self.megabytes = peak / 2**20
