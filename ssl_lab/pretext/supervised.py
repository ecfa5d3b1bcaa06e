"""Supervised pretraining with all training labels: the upper reference every transfer number
is read against (``pretext=none`` is the lower one)."""

import torch
from torch import nn

from ssl_lab.pretext.task import PretextTask


class SupervisedClassification(PretextTask):
    def __init__(self, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.head = nn.Linear(feature_dim, num_classes)

    def make_batch(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = batch[0], batch[1]
        labelled = labels >= 0  # pretraining-only images (STL-10's unlabeled split) carry -1
        return images[labelled], labels[labelled]
