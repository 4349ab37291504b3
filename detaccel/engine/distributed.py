"""Multi-process training under ``torchrun``: process group, rank helpers, sharding, gathering.

``torchrun --nproc_per_node=N -m detaccel train ...`` sets ``WORLD_SIZE``,
``RANK`` and ``LOCAL_RANK``; :func:`init_distributed` then joins the group
(NCCL with GPUs, gloo on CPUs). Without ``torchrun`` everything runs in one process.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

CPU = torch.device("cpu")


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = CPU

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Join the process group that ``torchrun`` describes (if any) and pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    chosen = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if use_cuda:
        torch.cuda.set_device(chosen)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank, world_size, local_rank, chosen)


def shutdown_distributed() -> None:
    """Leave the process group; every rank waits for the others first.

    Unreachable DistributedDataParallel wrappers (their hooks form reference
    cycles) are collected first, while the group is alive: left to interpreter
    exit, their reducers can abort the process ("terminate called without an
    active exception") after a run that succeeded.
    """
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def all_gather_objects(info: DistInfo, value: Any) -> list[Any]:
    """Every rank's ``value``, in rank order (``[value]`` in one process)."""
    if not info.distributed:
        return [value]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, value)
    return out


def broadcast_object(info: DistInfo, value: Any) -> Any:
    """Rank 0's ``value`` on every rank."""
    if not info.distributed:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def epoch_shard(num_items: int, epoch: int, rank: int, world_size: int, seed: int) -> np.ndarray:
    """This rank's items of ``epoch``: a seeded permutation split round-robin, so that across
    ranks every item appears exactly once per epoch."""
    order = np.random.default_rng([int(seed), int(epoch)]).permutation(num_items)
    return order[rank::world_size]


def batch_indices(
    iteration: int, batch_size: int, num_items: int, rank: int, world_size: int, seed: int
) -> list[tuple[int, int]]:
    """The ``(epoch, item)`` pairs this rank loads at ``iteration``: a pure function of its arguments,
    so that a resumed run reads exactly what an uninterrupted one would."""
    out = []
    for position in range(iteration * batch_size, (iteration + 1) * batch_size):
        shard_len = len(epoch_shard(num_items, 0, rank, world_size, seed))
        if shard_len == 0:
            raise ValueError(f"rank {rank} has no training images ({num_items} images, {world_size} ranks)")
        epoch, offset = divmod(position, shard_len)
        out.append((epoch, int(epoch_shard(num_items, epoch, rank, world_size, seed)[offset])))
    return out
