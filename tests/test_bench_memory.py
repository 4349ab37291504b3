import time

import numpy as np

from detaccel.benchmarks.memory import PeakMemory, resident_bytes


def test_peak_memory_sees_a_large_temporary_allocation():
    with PeakMemory(interval=0.001) as peak:
        # The resident size the block started from, read as the block entered (after it released the
        # heap's free memory), so that nothing freed on entry is counted against the allocation.
        before = peak._peak
        assert before > 0
        block = np.ones(64 * 2**20, dtype=np.uint8)  # 64 MiB, touched
        block.sum()
        deadline = time.monotonic() + 30.0
        while peak._peak < before + 48 * 2**20 and time.monotonic() < deadline:
            time.sleep(0.01)  # hold the block until the sampler has seen it (a busy machine: up to 30 s)
        del block
    assert peak.megabytes * 2**20 >= before + 48 * 2**20


def test_memory_freed_before_the_block_is_not_counted():
    import ctypes

    import pytest
    import torch

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        pytest.skip("needs glibc's mallopt")
    m_trim_threshold, m_mmap_threshold = -1, -3
    # Serve 1 MiB blocks from the heap and never trim it by itself, as a long run ends up doing.
    assert mallopt(m_mmap_threshold, 32 * 2**20) == 1 and mallopt(m_trim_threshold, 2**30) == 1
    try:
        blocks = [torch.ones(2**18) for _ in range(400)]  # 400 MiB
        del blocks
        held = resident_bytes()
        with PeakMemory(interval=0.001) as peak:
            time.sleep(0.02)
        assert peak.megabytes * 2**20 < held - 200 * 2**20
    finally:
        mallopt(m_mmap_threshold, 128 * 2**10)
        mallopt(m_trim_threshold, 128 * 2**10)
