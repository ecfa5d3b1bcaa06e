"""Images with boxes, in memory: what ``downstream=detection`` trains on, and what every other
task sees as a plain image dataset.

A subclass says how to make its annotated splits (``annotated_splits``: images in [0, 1] and, per
image, its boxes and their classes); this class normalises the images with the train split's
statistics, pads the boxes into tensors and picks the labelled subset.

Two views of each split share one image tensor:

- ``splits[name]``: ``(image, label)``, as every in-memory dataset, for pretraining, the kNN
  monitor and the classification tasks. An image's label is the class of its largest box (the
  most visible object; 0 for an image without boxes), so ``pretext=supervised`` and a linear
  probe have one class per image to learn.
- ``detection[name]``: ``(image, boxes, classes)``, boxes ``(N, M, 4)`` as ``xmin, ymin, xmax,
  ymax`` in pixels, classes ``(N, M)``, both padded to the most boxes any image has, padding
  marked by class ``-1``.

Label budgets count labelled images: ``labelled_images=N`` keeps the boxes of N train images
picked by ``seed`` (uniformly: an image holds several classes), or ``labels_per_class`` /
``label_fraction`` pick them stratified by the images' labels.
"""

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import Subset, TensorDataset

from ssl_lab.data.in_memory import InMemoryDataModule
from ssl_lab.data.labels import select_labelled
from ssl_lab.data.placement import check_on_device
from ssl_lab.errors import SslLabError

PADDING = -1  # the class of a padding box


@dataclass
class Annotated:
    """One split: ``images`` (N, C, H, W) float32 in [0, 1]; per image, ``boxes`` (k, 4) float
    ``xmin, ymin, xmax, ymax`` in pixels and ``classes`` (k,) int (k may be 0: background)."""

    images: np.ndarray
    boxes: list[np.ndarray]
    classes: list[np.ndarray]


def image_label(boxes: np.ndarray, classes: np.ndarray) -> int:
    """The class of the largest box (the first of equals); 0 for an image without boxes."""
    if len(boxes) == 0:
        return 0
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return int(classes[int(np.argmax(areas))])


def pad_boxes(
    boxes: list[np.ndarray], classes: list[np.ndarray]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, M, 4)`` float boxes and ``(N, M)`` long classes, ``M`` the most boxes of any image
    (at least 1), padding classed ``PADDING``."""
    most = max([1, *(len(b) for b in boxes)])
    padded = torch.zeros(len(boxes), most, 4)
    padded_classes = torch.full((len(boxes), most), PADDING, dtype=torch.long)
    for i, (b, c) in enumerate(zip(boxes, classes)):
        padded[i, : len(b)] = torch.as_tensor(np.asarray(b, dtype=np.float32).reshape(-1, 4))
        padded_classes[i, : len(c)] = torch.as_tensor(np.asarray(c, dtype=np.int64))
    return padded, padded_classes


def unpad(boxes: torch.Tensor, classes: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """A padded batch as torchvision's detection targets: one ``{boxes, labels}`` per image."""
    kept = classes != PADDING
    return [{"boxes": b[k], "labels": c[k]} for b, c, k in zip(boxes, classes, kept)]


class DetectionDataModule(InMemoryDataModule):
    """Images of ``channels`` x ``size`` x ``size`` with boxes of ``num_classes`` classes."""

    batch_fetch = True

    def __init__(
        self,
        name: str,
        num_classes: int,
        channels: int,
        size: int,
        labelled_images: int | None = None,
        modality: str = "image",
        batch_size: int = 32,
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
        budgets = [labelled_images, labels_per_class, label_fraction]
        if sum(b is not None for b in budgets) > 1:
            raise SslLabError(
                f"data.labelled_images={labelled_images}: set one of data.labelled_images, "
                "data.labels_per_class, data.label_fraction"
            )
        self.channels, self.size, self.labelled_images = channels, size, labelled_images
        self.batch_fetch = batch_fetch
        self.on_device = check_on_device(on_device, num_workers)
        self.detection: dict[str, TensorDataset] = {}
        self.background_images = 0  # images without boxes, in all splits (counted, allowed)

    def annotated_splits(self) -> dict[str, Annotated]:
        """``train``, ``val`` and ``test``, each an ``Annotated``."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        parts = self.annotated_splits()
        for split, part in parts.items():
            if len(part.images) == 0:
                raise SslLabError(f"data={self.name}: the {split} split holds no image")
        train = torch.from_numpy(np.ascontiguousarray(parts["train"].images, dtype=np.float32))
        dims = (0, 2, 3)
        self.mean, self.std = train.mean(dims), train.std(dims).clamp_min(1e-6)
        for split, part in parts.items():
            x = torch.from_numpy(np.array(part.images, dtype=np.float32))
            x.sub_(self.mean.view(1, -1, 1, 1)).div_(self.std.view(1, -1, 1, 1))
            y = torch.tensor([image_label(b, c) for b, c in zip(part.boxes, part.classes)])
            boxes, classes = pad_boxes(part.boxes, part.classes)
            self.splits[split] = TensorDataset(x, y)
            self.detection[split] = TensorDataset(x, boxes, classes)
        self.background_images = sum(len(b) == 0 for p in parts.values() for b in p.boxes)
        self.labelled_indices = self._labelled(self.splits["train"].tensors[1].numpy())

    def _labelled(self, labels: np.ndarray) -> np.ndarray:
        n = len(labels)
        if self.labelled_images is None:
            return select_labelled(labels, self.labels_per_class, self.label_fraction, self.seed)
        if self.labelled_images > n:
            raise SslLabError(
                f"data.labelled_images={self.labelled_images}: the train split has {n} images"
            )
        rng = np.random.default_rng(self.seed)
        return np.sort(rng.permutation(n)[: self.labelled_images])

    def detection_dataset(self, split: str) -> TensorDataset:
        """``(image, boxes, classes)`` of a whole split (``train``, ``val``, ``test``)."""
        return self.detection[split]

    def labelled_detection_dataset(self) -> Subset:
        """The labelled train images with their boxes, for transfer."""
        return Subset(self.detection["train"], self.labelled_indices.tolist())
