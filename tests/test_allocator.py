"""The allocator settings for CPU inference: freed buffers are reused instead of page-faulted in anew."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's allocator only"
)

# A few layers of a mobile backbone on a 240x320 image, forward after forward (their activations are 0.3
# to 3.7 MB); prints whether the settings applied and the median page faults of a forward once warm.
PROBE = """
import json, resource
import torch
from torch import nn
from detaccel.allocator import reuse_freed_memory
applied = reuse_freed_memory()
torch.set_num_threads(1)
net = nn.Sequential(
    nn.Conv2d(3, 32, 3, 2, 1), nn.ReLU6(), nn.Conv2d(32, 32, 3, 1, 1, groups=32), nn.Conv2d(32, 96, 1),
    nn.ReLU6(), nn.Conv2d(96, 96, 3, 2, 1, groups=96), nn.Conv2d(96, 24, 1), nn.Conv2d(24, 144, 1),
).eval()
image = torch.randn(1, 3, 240, 320)
per_forward = []
with torch.no_grad():
    for _ in range(5):
        net(image)
    for _ in range(11):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        net(image)
        per_forward.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
faults = sorted(per_forward)[len(per_forward) // 2]  # the median: a one-off fault elsewhere does not count
print(json.dumps({"applied": applied, "faults": faults}))
"""


def _probe(**env: str) -> dict:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "DETACCEL_MALLOC"))}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env={**environ, **env}, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_freed_buffers_are_reused_without_page_faults():
    result = _probe()
    assert result["applied"] is True
    # A forward writes ~14 MB of activations (~3,500 pages): with glibc's defaults they are mapped and
    # faulted in again on every forward; reused heap memory faults none of them.
    assert result["faults"] < 50


@pytest.mark.parametrize("env", [{"DETACCEL_MALLOC": "default"}, {"MALLOC_MMAP_THRESHOLD_": "131072"}])
def test_user_settings_leave_the_allocator_as_it_is(env):
    assert _probe(**env)["applied"] is False


def test_the_command_line_applies_it(tmp_path):
    script = (
        "import detaccel.allocator as a, detaccel.cli as c; c.main(['info', '--json']); "
        "print('APPLIED', a._applied)"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "DETACCEL_MALLOC"))}
    out = subprocess.run(
        [sys.executable, "-c", script], env=environ, capture_output=True, text=True, check=True
    )
    assert "APPLIED True" in out.stdout
