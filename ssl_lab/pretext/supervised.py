"""Supervised pretraining with all training labels: the upper reference every transfer number
is read against (``pretext=none`` is the lower one)."""

import torch
from torch import nn

from ssl_lab.pretext.task import PretextTask


class SupervisedClassification(PretextTask):
    """Trains on the train split with its labels (``uses_labels``): examples kept for
    pretraining only (STL-10's unlabeled split) never reach it, so no batch has to be filtered
    on the device, which would make the GPU report the batch's new size to the host."""

    uses_labels = True

    def __init__(self, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.head = nn.Linear(feature_dim, num_classes)

    def make_batch(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        return batch[0], batch[1]
