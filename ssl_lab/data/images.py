"""An image LightningDataModule for datasets that fit in memory as one tensor.

A subclass only says how to read its arrays (``load_arrays``); this class resizes, normalises and
splits them; ``InMemoryDataModule`` picks the labelled subset and serves the loaders.

A dataset with extra images that have no labels (STL-10's ``unlabeled`` split) returns them as
``x_unlabelled``: they are normalised with the train statistics and added to the pretraining data
only (``unlabelled_dataloader``), labelled ``UNLABELLED``; transfer, val and test never see them.
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import TensorDataset

from ssl_lab.data.in_memory import UNLABELLED, InMemoryDataModule, carve_splits
from ssl_lab.data.labels import select_labelled
from ssl_lab.data.placement import check_on_device
from ssl_lab.errors import SslLabError

_CHUNK = 4096  # images converted at a time: a large uint8 array never exists whole as float32


def channels_first(x: np.ndarray) -> np.ndarray:
    """(N, H, W, C) -> (N, C, H, W) when the last axis looks like channels (1 or 3) and the
    second does not; (N, H, W) and (N, C, H, W) pass through. A view, not a copy."""
    if x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        return x.transpose(0, 3, 1, 2)
    return x


class InMemoryImageDataModule(InMemoryDataModule):
    """Images of ``channels`` x ``size`` x ``size``, normalised with the train split's
    statistics."""

    def __init__(
        self,
        name: str,
        num_classes: int,
        channels: int,
        size: int,
        modality: str = "image",
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
        batch_fetch: bool = True,
        on_device: bool | str = "auto",
    ) -> None:
        super().__init__(
            name,
            num_classes,
            modality,
            batch_size,
            labels_per_class,
            label_fraction,
            fixed_epoch_length,
            augment,
            val_fraction,
            test_fraction,
            split_seed,
            seed,
            num_workers,
        )
        self.channels, self.size = channels, size
        self.batch_fetch = batch_fetch
        self.on_device = check_on_device(on_device, num_workers)

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
            raise SslLabError(
                f"data={self.name}: images have {x.shape[1]} channels, "
                f"config says data.channels={self.channels}"
            )
        scale = 1 / 255 if x.dtype == np.uint8 else 1.0
        out = torch.empty(len(x), self.channels, self.size, self.size)
        for start in range(0, len(x), _CHUNK):
            chunk = torch.from_numpy(np.ascontiguousarray(x[start : start + _CHUNK]))
            if chunk.shape[-2:] != out.shape[-2:]:
                chunk = F.interpolate(
                    chunk.float(),
                    size=(self.size, self.size),
                    mode="bilinear",
                    align_corners=False,
                    antialias=True,
                )
            out[start : start + len(chunk)].copy_(chunk).mul_(scale)
        return out

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        arrays = self.load_arrays()
        x, y = self._to_tensor(arrays["x_train"]), torch.as_tensor(arrays["y_train"]).long()
        carve = {
            split: getattr(self, f"{split}_fraction")
            for split in ("test", "val")
            if f"x_{split}" not in arrays
        }
        indices = carve_splits(len(x), carve, self.split_seed)
        held_out = {split: (x[indices[split]], y[indices[split]]) for split in carve}
        for split in ("test", "val"):
            if f"x_{split}" in arrays:
                held_out[split] = (
                    self._to_tensor(arrays[f"x_{split}"]),
                    torch.as_tensor(arrays[f"y_{split}"]).long(),
                )
        train_idx = indices["train"]
        classes = torch.unique(y[train_idx]).tolist()
        if classes != list(range(self.num_classes)):  # a head of the wrong size fails far later
            raise SslLabError(
                f"data.num_classes={self.num_classes}: the training labels of data={self.name} "
                f"are {len(classes)} classes, {classes[0]}..{classes[-1]}"
            )
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
                x_extra, torch.full((len(x_extra),), UNLABELLED, dtype=torch.long)
            )
        self.labelled_indices = select_labelled(
            y[train_idx].numpy(), self.labels_per_class, self.label_fraction, self.seed
        )
