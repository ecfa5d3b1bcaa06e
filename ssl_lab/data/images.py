"""An image LightningDataModule for datasets that fit in memory as one tensor.

A subclass only says how to read its arrays (``load_arrays``); this class resizes, normalises,
splits by ``split_seed`` (fixed, so the test set never moves), and picks the labelled subset by
``seed`` (so seeds vary the labelled examples, not the test set).
"""

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, RandomSampler, Subset, TensorDataset

from ssl_lab.data.labels import select_labelled
from ssl_lab.errors import SslLabError


class InMemoryImageDataModule(pl.LightningDataModule):
    """Splits: ``train`` (pretraining sees all of it, without labels), its labelled subset
    (transfer trains on it), ``val`` and ``test``."""

    def __init__(self, name: str, num_classes: int, channels: int, size: int,
                 modality: str = "image", batch_size: int = 128,
                 labels_per_class: int | None = None, label_fraction: float | None = None,
                 fixed_epoch_length: bool = True, val_fraction: float = 0.1,
                 test_fraction: float = 0.2, split_seed: int = 0, seed: int = 0,
                 num_workers: int = 0) -> None:
        super().__init__()
        if batch_size < 1:
            raise SslLabError(f"data.batch_size={batch_size}: must be at least 1")
        self.name, self.modality = name, modality
        self.num_classes, self.channels, self.size = num_classes, channels, size
        self.batch_size, self.num_workers = batch_size, num_workers
        self.labels_per_class, self.label_fraction = labels_per_class, label_fraction
        self.fixed_epoch_length = fixed_epoch_length
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.split_seed, self.seed = split_seed, seed
        self.splits: dict[str, TensorDataset] = {}

    def load_arrays(self) -> dict[str, np.ndarray]:
        """``x_train`` (N, H, W) or (N, C, H, W) and ``y_train``; ``x_test``/``y_test`` if the
        dataset has an official test split."""
        raise NotImplementedError

    def _to_tensor(self, x: np.ndarray) -> torch.Tensor:
        t = torch.as_tensor(np.asarray(x), dtype=torch.float32)
        if t.ndim == 3:
            t = t.unsqueeze(1)
        if t.shape[1] != self.channels:
            raise SslLabError(f"data={self.name}: images have {t.shape[1]} channels, "
                              f"config says data.channels={self.channels}")
        if t.shape[-1] != self.size or t.shape[-2] != self.size:
            t = F.interpolate(t, size=(self.size, self.size), mode="bilinear", align_corners=False)
        return t

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        arrays = self.load_arrays()
        x, y = self._to_tensor(arrays["x_train"]), torch.as_tensor(arrays["y_train"]).long()
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.split_seed))
        n_val = int(round(self.val_fraction * len(x)))
        if "x_test" in arrays:
            x_test, y_test = self._to_tensor(arrays["x_test"]), torch.as_tensor(arrays["y_test"]).long()
            n_test = 0
        else:
            n_test = int(round(self.test_fraction * len(x)))
            x_test, y_test = x[order[:n_test]], y[order[:n_test]]
        val_idx, train_idx = order[n_test:n_test + n_val], order[n_test + n_val:]
        x_train = x[train_idx]
        dims = (0, 2, 3)
        self.mean, self.std = x_train.mean(dims), x_train.std(dims).clamp_min(1e-6)

        def normalise(t: torch.Tensor) -> torch.Tensor:
            return (t - self.mean.view(1, -1, 1, 1)) / self.std.view(1, -1, 1, 1)

        self.splits = {
            "train": TensorDataset(normalise(x_train), y[train_idx]),
            "val": TensorDataset(normalise(x[val_idx]), y[val_idx]),
            "test": TensorDataset(normalise(x_test), y_test),
        }
        self.labelled_indices = select_labelled(
            y[train_idx].numpy(), self.labels_per_class, self.label_fraction, self.seed)

    @property
    def n_labels(self) -> int:
        return len(self.labelled_indices)

    def _loader(self, dataset, shuffle: bool) -> DataLoader:
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def unlabelled_dataloader(self) -> DataLoader:
        """The whole train split, for pretraining (labels are there; self-supervised tasks ignore
        them, the supervised reference uses them)."""
        return self._loader(self.splits["train"], shuffle=True)

    def labelled_dataset(self) -> Subset:
        """The labelled subset of the train split, for transfer."""
        return Subset(self.splits["train"], self.labelled_indices.tolist())

    def labelled_loader(self, dataset: Dataset) -> DataLoader:
        """A training loader over ``dataset`` (the labelled subset, or features of it).

        With ``fixed_epoch_length`` an epoch draws as many examples as the whole train split
        (cycling through the subset in fresh permutations), so 10 labels per class train for as
        many steps as all labels do; otherwise a few labels would get a handful of steps.
        """
        size = len(self.splits["train"]) if self.fixed_epoch_length else len(dataset)
        sampler = RandomSampler(dataset, num_samples=max(size, len(dataset)))
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self.labelled_loader(self.labelled_dataset())

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.splits["val"], shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.splits["test"], shuffle=False)
