import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from detaccel.engine.distributed import batch_indices, epoch_shard
from tests.detector_configs import tiny_dataset

REPO = Path(__file__).resolve().parents[1]


def test_epoch_shards_cover_each_item_once():
    for num_items, world in ((10, 2), (11, 2), (7, 3)):
        for epoch in range(3):
            shards = [epoch_shard(num_items, epoch, rank, world, seed=5) for rank in range(world)]
            assert sorted(np.concatenate(shards).tolist()) == list(range(num_items))
    # Consecutive iterations of one rank walk through its shard, then the next epoch's.
    items = [batch_indices(i, 2, 10, 0, 2, 0) for i in range(5)]
    flat = [pair for batch in items for pair in batch]
    assert all(epoch == 0 for epoch, _ in flat[:5]) and flat[5][0] == 1


def test_two_gloo_processes(tmp_path):
    root = tiny_dataset(tmp_path / "data")
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        str(REPO / "tests" / "ddp_worker.py"),
        str(root),
        str(out),
    ]
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads((out / "ddp_report.json").read_text())
    seen = report["seen"]
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == list(range(report["num_images"]))
    assert report["identical"]
    assert report["eval_images"] == 3  # the tiny set's test split, gathered from both ranks
    assert (out / "model_final.pth").is_file() and (out / "eval.json").is_file()
