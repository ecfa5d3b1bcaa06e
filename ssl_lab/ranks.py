"""What changes when a job runs as several processes (DDP): one writer, and evaluation that counts
every example exactly once. Single-process runs pass straight through."""

import os

import torch
import torch.distributed as dist
from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSampler
from pytorch_lightning.utilities import rank_zero_only
from torch.utils.data import DataLoader


def is_global_zero() -> bool:
    """True in the process that writes files (the only one outside DDP). Known before the
    trainer starts: Lightning's launcher sets the rank in its children's environment."""
    return rank_zero_only.rank == 0


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_cat(*tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Concatenate each tensor over all processes (shards may differ in length)."""
    if not _distributed():
        return tensors
    shards: list = [None] * dist.get_world_size()
    dist.all_gather_object(shards, [t.cpu() for t in tensors])
    return tuple(torch.cat([shard[i] for shard in shards]) for i in range(len(tensors)))


def unrepeated(loader: DataLoader) -> DataLoader:
    """An evaluation loader whose shards cover each example once: Lightning's default distributed
    sampler pads the last shard with repeats, which would count some test examples twice."""
    if not _distributed():
        return loader
    sampler = UnrepeatedDistributedSampler(loader.dataset, shuffle=False)
    return DataLoader(
        loader.dataset,
        batch_size=loader.batch_size,
        sampler=sampler,
        collate_fn=loader.collate_fn,
        num_workers=loader.num_workers,
    )


def forget_processes() -> None:
    """End this job's process group, so the next job of a sweep in this process starts its own.

    Lightning's launcher leaves the group and its rendezvous variables in the parent process,
    which would make the next job wait for helper processes that have already exited.
    """
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    for variable in ("LOCAL_RANK", "NODE_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        os.environ.pop(variable, None)
