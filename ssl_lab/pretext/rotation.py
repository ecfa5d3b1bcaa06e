"""Rotation prediction (RotNet, Gidaris et al. 2018): which of 0/90/180/270 degrees was applied."""

import torch
from torch import nn

from ssl_lab.pretext.task import PretextTask


class RotationPrediction(PretextTask):
    """All four rotated copies of every image go into the same batch, as in RotNet: the batch
    becomes [x rotated 0; x rotated 90; x rotated 180; x rotated 270] with labels 0..3."""

    num_classes = 4

    def __init__(self, feature_dim: int) -> None:
        super().__init__()
        self.head = nn.Linear(feature_dim, self.num_classes)

    def make_batch(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        images = batch[0]
        rotated = torch.cat([torch.rot90(images, k, dims=(2, 3)) for k in range(4)])
        labels = torch.arange(4, device=images.device).repeat_interleave(len(images))
        return rotated, labels

    def picture(
        self, backbone: nn.Module, batch: tuple[torch.Tensor, ...]
    ) -> list[list[tuple[torch.Tensor, str]]]:
        images = batch[0][:6]
        inputs, labels = self.make_batch((images,))
        predicted = self(backbone, inputs).argmax(1)
        return [
            [
                (
                    inputs[k * len(images) + i],
                    f"true {90 * k}° / pred {90 * int(predicted[k * len(images) + i])}°",
                )
                for k in range(4)
            ]
            for i in range(len(images))
        ]
