"""What every in-memory dataset shares, images or text: fixed splits, a labelled subset picked by
seed, and the loaders of each phase over tensors that are already in memory.

A subclass fills ``self.splits`` (``train``, ``val``, ``test`` and optionally ``unlabelled``:
``TensorDataset``s whose last tensor is the label) and ``self.labelled_indices`` in ``setup``.
Splits are fixed by ``split_seed`` (the test set never moves); the labelled subset is picked by
``seed`` (seeds vary the labelled examples, not the test set).
"""

from collections.abc import Callable, Iterator

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler, Subset, TensorDataset

from ssl_lab.data.batch_fetch import BatchFetch, as_batch
from ssl_lab.data.placement import place
from ssl_lab.errors import SslLabError

UNLABELLED = -1  # the label of pretraining-only examples (``unlabelled`` split)


class CyclingSampler(Sampler[int]):
    """``num_samples`` indices from fresh random permutations of ``range(n)``, one after another.

    Not a ``RandomSampler`` on purpose: under DDP Lightning replaces those with a one-pass
    distributed sampler, but wraps any other sampler, so the epoch length survives.
    """

    def __init__(self, n: int, num_samples: int) -> None:
        self.n, self.num_samples = n, num_samples

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self) -> Iterator[int]:
        permutations = [torch.randperm(self.n) for _ in range(-(-self.num_samples // self.n))]
        return iter(torch.cat(permutations)[: self.num_samples].tolist())


def carve_splits(n: int, fractions: dict[str, float], split_seed: int) -> dict[str, torch.Tensor]:
    """Indices of the held-out splits named in ``fractions`` (in that order: test first, so it
    never moves when val changes) and of ``train``, the rest, from a fixed order of ``range(n)``."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed))
    indices, start = {}, 0
    for split, fraction in fractions.items():
        indices[split] = order[start : start + int(round(fraction * n))]
        if len(indices[split]) == 0:  # a split of nothing fails later, far from its cause
            raise SslLabError(
                f"data.{split}_fraction={fraction}: holds none of the {n} examples "
                f"(at least {1 / n:.2g})"
            )
        start += len(indices[split])
    indices["train"] = order[start:]
    if len(indices["train"]) == 0:
        raise SslLabError(f"data.val_fraction and data.test_fraction leave none of {n} to train")
    return indices


class InMemoryDataModule(pl.LightningDataModule):
    """Splits: ``train`` (pretraining sees all of it, without labels), its labelled subset
    (transfer trains on it), ``val`` and ``test``."""

    modality: str  # what a batch holds: "image", or "text" (then it offers texts.TextData too)
    collate_fn: Callable | None = None  # how a list of examples becomes a batch (None: stack)
    batch_fetch: bool = False  # fetch whole batches by one indexing (needs collate_fn None)
    on_device: bool | str = False  # move the splits to the accelerator once (``placement``)

    def __init__(
        self,
        name: str,
        num_classes: int,
        modality: str,
        batch_size: int = 128,
        labels_per_class: int | None = None,
        label_fraction: float | None = None,
        fixed_epoch_length: bool | int = True,
        augment: nn.Module | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        split_seed: int = 0,
        seed: int = 0,
        num_workers: int = 0,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise SslLabError(f"data.batch_size={batch_size}: must be at least 1")
        self.name, self.modality, self.num_classes = name, modality, num_classes
        self.batch_size, self.num_workers = batch_size, num_workers
        self.labels_per_class, self.label_fraction = labels_per_class, label_fraction
        self.fixed_epoch_length = fixed_epoch_length
        self.augment = augment  # applied by transfer training to its batches, on their device
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.split_seed, self.seed = split_seed, seed
        self.splits: dict[str, TensorDataset] = {}
        self.labelled_indices = np.arange(0)

    @property
    def n_labels(self) -> int:
        return len(self.labelled_indices)

    def place(self, device: torch.device) -> bool:
        """Move the splits to ``device`` once, if ``on_device`` asks for it; True if they are
        there (``placement.PlaceData`` calls it when a trainer sets up)."""
        return place(self.splits, self.on_device, self.num_workers, device)

    def loader(self, dataset: Dataset) -> DataLoader:
        """An evaluation loader over ``dataset`` (a split, or a subset of one): batches in order,
        fetched and collated as every loader of this module."""
        return self._loader(dataset)

    def _loader(
        self, dataset: Dataset, shuffle: bool = False, sampler: Sampler | None = None
    ) -> DataLoader:
        collate = self.collate_fn
        if self.batch_fetch and collate is None:
            dataset, collate = BatchFetch(dataset), as_batch
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            sampler=sampler,
            collate_fn=collate,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def unlabelled_dataloader(self) -> DataLoader:
        """The whole train split plus any unlabelled examples, for pretraining (labels are
        there; self-supervised tasks ignore them, the supervised reference uses them; unlabelled
        examples carry ``UNLABELLED``)."""
        extra = [self.splits["unlabelled"]] if "unlabelled" in self.splits else []
        return self._loader(ConcatDataset([self.splits["train"], *extra]), shuffle=True)

    def labelled_pretraining_dataloader(self) -> DataLoader:
        """The whole train split with its labels, for pretraining that learns from them (the
        supervised reference); the same batches as ``unlabelled_dataloader`` when the dataset has
        no unlabelled examples."""
        return self._loader(self.splits["train"], shuffle=True)

    def labelled_dataset(self) -> Subset:
        """The labelled subset of the train split, for transfer."""
        return Subset(self.splits["train"], self.labelled_indices.tolist())

    def labelled_loader(self, dataset: Dataset) -> DataLoader:
        """A training loader over ``dataset`` (the labelled subset, or features of it).

        With ``fixed_epoch_length`` an epoch draws as many examples as the whole train split
        (cycling through the subset in fresh permutations), so 10 labels per class train for as
        many steps as all labels do; otherwise a few labels would get a handful of steps. A
        number instead of ``true`` sets the examples per epoch directly.
        """
        fixed = self.fixed_epoch_length
        if isinstance(fixed, bool):
            size = len(self.splits["train"]) if fixed else len(dataset)
        else:
            size = int(fixed)
        return self._loader(dataset, sampler=CyclingSampler(len(dataset), max(size, len(dataset))))

    def train_dataloader(self) -> DataLoader:
        return self.labelled_loader(self.labelled_dataset())

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.splits["val"])

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.splits["test"])
