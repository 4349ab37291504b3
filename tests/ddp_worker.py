"""Run by test_engine_distributed under ``torch.distributed.run`` with two gloo processes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

from detaccel.engine import Trainer, init_distributed, shutdown_distributed
from detaccel.engine.distributed import all_gather_objects, batch_indices
from tests.detector_configs import tiny_config


def main() -> None:
    root, out = Path(sys.argv[1]), Path(sys.argv[2])
    torch.set_num_threads(1)
    info = init_distributed("cpu")
    assert dist.get_backend() == "gloo" and info.world_size == 2
    config = tiny_config(
        root,
        train={"max_iter": 1, "images_per_batch": 1, "eval_after_training": True, "checkpoint_period": 1},
    )
    from detaccel.engine.data import load_split

    num_images = len(load_split(config, "trainval", info))
    # Every image once per epoch across ranks: the batches of one epoch's iterations.
    per_rank = -(-num_images // info.world_size)
    seen = [
        item
        for iteration in range(per_rank)
        for epoch, item in batch_indices(iteration, 1, num_images, info.rank, 2, 0)
        if epoch == 0
    ]
    result = Trainer(config, out, info, progress=False).train()
    model = result["model"]
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    buffers = torch.cat([b.detach().flatten().double() for b in model.buffers()])
    flat = torch.cat((flat.double(), buffers))
    gathered = all_gather_objects(info, {"seen": seen, "weights": flat})
    if info.is_main:
        report = {
            "num_images": num_images,
            "seen": [g["seen"] for g in gathered],
            "identical": bool(torch.equal(gathered[0]["weights"], gathered[1]["weights"])),
            "eval": result["eval"]["metrics"]["voc07"]["mAP"],
            "eval_images": result["eval"]["timing"]["images"],
        }
        (out / "ddp_report.json").write_text(json.dumps(report))
    else:
        assert result.get("eval") is None
    shutdown_distributed()


if __name__ == "__main__":
    main()
