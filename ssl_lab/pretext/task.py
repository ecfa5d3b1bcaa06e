"""What every pretext task is: a corruption (or pseudo-labels), a head and a loss."""

import torch
import torch.nn.functional as F
from torch import nn


class PretextTask(nn.Module):
    """Subclasses set ``head`` and implement ``make_batch``; classification tasks set
    ``num_classes`` (the number of pseudo-classes) so their accuracy is logged; a task that
    learns from the labels themselves sets ``uses_labels``."""

    num_classes: int | None = None
    uses_labels = False  # True: trains on the labelled train split, not all pretraining data

    def make_batch(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """(inputs, targets) from a data batch, computed batched on the batch's device."""
        raise NotImplementedError

    def forward(self, backbone: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        return self.head(backbone(inputs))

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(outputs, targets)

    def picture(
        self, backbone: nn.Module, batch: tuple[torch.Tensor, ...]
    ) -> list[list[tuple[torch.Tensor, str]]] | None:
        """Rows of (image, caption) showing what the task sees and predicts, for a PNG at the end
        of pretraining; None for tasks with nothing to show. Called in eval mode, without grad."""
        return None
