"""The standard small-image benchmarks (MNIST, Fashion-MNIST, CIFAR-10/100, SVHN, STL-10) through
``torchvision.datasets``, read once into memory. Each YAML names the dataset class and the
constructor arguments of each split, so one class serves them all."""

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from ssl_lab.data.images import InMemoryImageDataModule, channels_first
from ssl_lab.errors import SslLabError


class TorchvisionDataModule(InMemoryImageDataModule):
    """``split_args`` maps ``train``, ``test`` and optionally ``unlabelled`` (pretraining only) to
    the dataset's constructor arguments for that split, e.g. ``{train: false}`` or
    ``{split: unlabeled}``."""

    def __init__(
        self,
        dataset: Callable[..., Any],
        root: str,
        download: bool,
        split_args: Mapping[str, Mapping[str, Any]],
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.dataset, self.root, self.download = dataset, Path(root).expanduser(), download
        self.split_args = split_args

    def _open(self, args: Mapping[str, Any]) -> Any:
        try:
            return self.dataset(root=str(self.root), download=self.download, **args)
        except RuntimeError as err:
            if self.download:
                raise
            raise SslLabError(
                f"data={self.name}: not found under {self.root} "
                f"(pass data.download=true to fetch it, or set data.root)"
            ) from err

    def load_arrays(self) -> dict[str, np.ndarray]:
        arrays = {}
        for split, args in self.split_args.items():
            dataset = self._open(args)
            arrays[f"x_{split}"] = channels_first(np.asarray(dataset.data))
            if split != "unlabelled":
                labels = dataset.targets if hasattr(dataset, "targets") else dataset.labels
                arrays[f"y_{split}"] = np.asarray(labels)
        return arrays
