"""The C allocator's settings for CPU inference: reuse freed buffers instead of mapping new pages.

A detector's forward on the CPU allocates and frees the same few-megabyte
activation buffers for every image. glibc's ``malloc`` serves such buffers with
``mmap`` once they pass its mmap threshold (128 KiB at first, raised only by
some patterns of frees) and returns them to the system when freed, so every
image page-faults its buffers in again (``tools/bench_r2cnn_parts.py`` counts the
faults per image). :func:`reuse_freed_memory`
raises the mmap threshold to glibc's maximum (32 MiB) and the trim threshold to
512 MiB, so buffers come from the heap and stay there. The ``detaccel`` command
and the benchmark tools call it at start; code that runs detectors through the
Python API can call it too.

It changes the whole process's allocator (that is the point), so it is skipped
where the user has set glibc's own ``MALLOC_MMAP_THRESHOLD_`` or
``MALLOC_TRIM_THRESHOLD_``, or ``DETACCEL_MALLOC=default``, and on C libraries
other than glibc.
"""

from __future__ import annotations

import ctypes
import os
import platform

# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# The largest mmap threshold glibc accepts on 64-bit systems, and the free heap kept before trimming.
MMAP_THRESHOLD = 32 * 1024 * 1024
TRIM_THRESHOLD = 512 * 1024 * 1024
# Environment variables that leave the allocator as it is.
USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
SWITCH = "DETACCEL_MALLOC"

_applied: bool | None = None


def reuse_freed_memory() -> bool:
    """Keep freed buffers of up to 32 MiB on glibc's heap (see the module docstring); whether the
    settings are in force. Idempotent."""
    global _applied
    if _applied is not None:
        return _applied
    _applied = False
    if os.environ.get(SWITCH, "").lower() == "default" or any(name in os.environ for name in USER_SETTINGS):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    _applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
    return _applied
