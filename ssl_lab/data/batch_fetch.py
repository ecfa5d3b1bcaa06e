"""Whole batches from tensors in memory: one indexing per tensor per batch instead of one
``__getitem__`` per example and a ``torch.stack`` to collate them.

``BatchFetch`` wraps the datasets that in-memory data modules build (``TensorDataset`` and
``Subset`` / ``ConcatDataset`` of them). It is still a map-style dataset behind a ``DataLoader``,
so samplers, shuffling and the distributed sampler Lightning inserts under DDP behave as before;
only the fetching changes (``DataLoader`` calls ``__getitems__`` with a batch of indices). The
batches are the same tensors, in the same order, as the per-example path gives.
"""

from collections.abc import Sequence

import torch
from torch.utils.data import ConcatDataset, Dataset, Subset, TensorDataset


def to_device(index: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``index`` (on the host) on ``device``. To a GPU through pinned memory and without
    blocking: a copy from pageable memory waits for all the work queued on the GPU, a sync per
    batch that would let the host fall behind the step it should be feeding."""
    if index.device == device:
        return index
    if device.type == "cuda":
        return index.pin_memory().to(device, non_blocking=True)
    return index.to(device)


def fetch(dataset: Dataset, index: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The examples of ``dataset`` at ``index`` (a 1-D long tensor on the host), stacked, in that
    order, on the device the dataset's tensors are on (``data.on_device``). The index arithmetic
    stays on the host; only the final indices travel."""
    if isinstance(dataset, TensorDataset):
        moved: dict[torch.device, torch.Tensor] = {}
        return tuple(
            t.index_select(0, moved.setdefault(t.device, to_device(index, t.device)))
            for t in dataset.tensors
        )
    if isinstance(dataset, Subset):
        return fetch(dataset.dataset, torch.as_tensor(dataset.indices, dtype=torch.long)[index])
    if isinstance(dataset, ConcatDataset):
        if len(dataset.datasets) == 1:  # the pretraining data of most datasets: no extra copy
            return fetch(dataset.datasets[0], index)
        ends = torch.as_tensor(dataset.cumulative_sizes)
        part = torch.bucketize(index, ends, right=True)  # which dataset each index falls in
        starts = torch.cat([ends.new_zeros(1), ends[:-1]])
        pieces = [(part == p).nonzero().squeeze(1) for p in range(len(dataset.datasets))]
        fetched = [
            fetch(d, index[where] - starts[p]) if len(where) else None
            for p, (d, where) in enumerate(zip(dataset.datasets, pieces))
        ]
        first = next((f for f in fetched if f is not None), None) or fetch(
            dataset.datasets[0], index[:0]
        )
        out = tuple(t.new_empty((len(index), *t.shape[1:])) for t in first)
        for where, tensors in zip(pieces, fetched):
            if tensors is not None:
                for o, t in zip(out, tensors):
                    o.index_copy_(0, to_device(where, o.device), t)
        return out
    raise TypeError(f"BatchFetch cannot fetch batches from a {type(dataset).__name__}")


class BatchFetch(Dataset):
    """``dataset`` with batched fetching (see the module docstring). Use with
    ``collate_fn=as_batch``: what ``__getitems__`` returns is already the batch."""

    def __init__(self, dataset: Dataset) -> None:
        fetch(dataset, torch.zeros(0, dtype=torch.long))  # refuses an unsupported dataset now
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, ...]:
        return self.dataset[i]

    def __getitems__(self, indices: Sequence[int]) -> tuple[torch.Tensor, ...]:
        return fetch(self.dataset, torch.as_tensor(indices, dtype=torch.long))


def as_batch(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """The collate function for ``BatchFetch``: the batch is already made (a module-level
    function, so worker processes can pickle it)."""
    return batch
