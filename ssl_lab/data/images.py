"""An image LightningDataModule for datasets that fit in memory as one tensor.

A subclass only says how to read its arrays (``load_arrays``); this class resizes, normalises,
splits by ``split_seed`` (fixed, so the test set never moves), and picks the labelled subset by
``seed`` (so seeds vary the labelled examples, not the test set).

A dataset with extra images that have no labels (STL-10's ``unlabeled`` split) returns them as
``x_unlabelled``: they are normalised with the train statistics and added to the pretraining data
only (``unlabelled_dataloader``), labelled ``UNLABELLED``; transfer, val and test never see them.
"""

from collections.abc import Iterator

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Sampler, Subset, TensorDataset

from ssl_lab.data.labels import select_labelled
from ssl_lab.errors import SslLabError

UNLABELLED = -1  # the label of pretraining-only images (``x_unlabelled``)
_CHUNK = 4096  # images converted at a time: a large uint8 array never exists whole as float32


def channels_first(x: np.ndarray) -> np.ndarray:
    """(N, H, W, C) -> (N, C, H, W) when the last axis looks like channels (1 or 3) and the
    second does not; (N, H, W) and (N, C, H, W) pass through. A view, not a copy."""
    if x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        return x.transpose(0, 3, 1, 2)
    return x


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
        return iter(torch.cat(permutations)[:self.num_samples].tolist())


class InMemoryImageDataModule(pl.LightningDataModule):
    """Splits: ``train`` (pretraining sees all of it, without labels), its labelled subset
    (transfer trains on it), ``val`` and ``test``."""

    def __init__(self, name: str, num_classes: int, channels: int, size: int,
                 modality: str = "image", batch_size: int = 128,
                 labels_per_class: int | None = None, label_fraction: float | None = None,
                 fixed_epoch_length: bool = True, augment: nn.Module | None = None,
                 val_fraction: float = 0.1,
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
        self.augment = augment  # applied by transfer training to its batches, on their device
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.split_seed, self.seed = split_seed, seed
        self.splits: dict[str, TensorDataset] = {}

    def load_arrays(self) -> dict[str, np.ndarray]:
        """``x_train`` (N, H, W) or (N, C, H, W), float in [0, 1] or uint8, and ``y_train``;
        ``x_val``/``y_val`` and ``x_test``/``y_test`` if the dataset has official splits;
        ``x_unlabelled`` if it has images without labels, for pretraining only."""
        raise NotImplementedError

    def _to_tensor(self, x: np.ndarray) -> torch.Tensor:
        x = np.asarray(x)
        if x.ndim == 3:
            x = x[:, None]
        if x.shape[1] != self.channels:
            raise SslLabError(f"data={self.name}: images have {x.shape[1]} channels, "
                              f"config says data.channels={self.channels}")
        scale = 1 / 255 if x.dtype == np.uint8 else 1.0
        out = torch.empty(len(x), self.channels, self.size, self.size)
        for start in range(0, len(x), _CHUNK):
            chunk = torch.from_numpy(np.ascontiguousarray(x[start:start + _CHUNK]))
            if chunk.shape[-2:] != out.shape[-2:]:
                chunk = F.interpolate(chunk.float(), size=(self.size, self.size), mode="bilinear",
                                      align_corners=False, antialias=True)
            out[start:start + len(chunk)].copy_(chunk).mul_(scale)
        return out

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        arrays = self.load_arrays()
        x, y = self._to_tensor(arrays["x_train"]), torch.as_tensor(arrays["y_train"]).long()
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.split_seed))
        held_out, start = {}, 0
        for split, fraction in (("test", self.test_fraction), ("val", self.val_fraction)):
            if f"x_{split}" in arrays:
                held_out[split] = (self._to_tensor(arrays[f"x_{split}"]),
                                   torch.as_tensor(arrays[f"y_{split}"]).long())
            else:
                idx = order[start:start + int(round(fraction * len(x)))]
                held_out[split], start = (x[idx], y[idx]), start + len(idx)
        train_idx = order[start:]
        x_train = x[train_idx]
        dims = (0, 2, 3)
        self.mean, self.std = x_train.mean(dims), x_train.std(dims).clamp_min(1e-6)

        def normalise(t: torch.Tensor) -> torch.Tensor:  # in place: every tensor here is a copy
            return t.sub_(self.mean.view(1, -1, 1, 1)).div_(self.std.view(1, -1, 1, 1))

        self.splits = {"train": TensorDataset(normalise(x_train), y[train_idx])}
        for split, (xs, ys) in held_out.items():
            self.splits[split] = TensorDataset(normalise(xs), ys)
        if "x_unlabelled" in arrays:
            x_extra = normalise(self._to_tensor(arrays["x_unlabelled"]))
            self.splits["unlabelled"] = TensorDataset(
                x_extra, torch.full((len(x_extra),), UNLABELLED, dtype=torch.long))
        self.labelled_indices = select_labelled(
            y[train_idx].numpy(), self.labels_per_class, self.label_fraction, self.seed)

    @property
    def n_labels(self) -> int:
        return len(self.labelled_indices)

    def _loader(self, dataset, shuffle: bool) -> DataLoader:
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def unlabelled_dataloader(self) -> DataLoader:
        """The whole train split plus any unlabelled images, for pretraining (labels are there;
        self-supervised tasks ignore them, the supervised reference uses them; unlabelled
        images carry ``UNLABELLED``)."""
        extra = [self.splits["unlabelled"]] if "unlabelled" in self.splits else []
        return self._loader(ConcatDataset([self.splits["train"], *extra]), shuffle=True)

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
        sampler = CyclingSampler(len(dataset), max(size, len(dataset)))
        return DataLoader(dataset, batch_size=self.batch_size, sampler=sampler,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self.labelled_loader(self.labelled_dataset())

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.splits["val"], shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.splits["test"], shuffle=False)
