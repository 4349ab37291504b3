import time

import numpy as np

from detaccel.benchmarks.memory import PeakMemory, resident_bytes


def test_peak_memory_sees_a_large_temporary_allocation():
    before = resident_bytes()
    assert before > 0
    with PeakMemory(interval=0.001) as peak:
        block = np.ones(64 * 2**20, dtype=np.uint8)  # 64 MiB, touched
        block.sum()
        time.sleep(0.1)  # the sampler runs while the block is held
        del block
    assert peak.megabytes * 2**20 >= before + 60 * 2**20 - 16 * 2**20
