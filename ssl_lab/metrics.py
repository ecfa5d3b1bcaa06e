"""Training metrics that accumulate on the device, so a training step never waits for the GPU.

torchmetrics' ``MulticlassAccuracy`` and ``MulticlassJaccardIndex`` check their inputs on the host
by default (``validate_args``), drop ignored targets by boolean indexing and count with
``torch.bincount``: on a GPU each of these reads a value back, a sync per step. These give the
same numbers (micro accuracy; the macro mIoU of ``MulticlassJaccardIndex``) with fixed-shape
tensor ops only; Lightning logs them as it logs any ``Metric`` (summed over DDP processes).
"""

import torch
from torchmetrics import Metric
from torchmetrics.classification import MulticlassJaccardIndex

IGNORE = -100  # a target that does not count (PyTorch's cross-entropy default)


class Accuracy(Metric):
    """Share of targets equal to the argmax of the scores over dim 1: scores (N, C, ...),
    targets (N, ...); targets equal to ``IGNORE`` are left out."""

    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("correct", torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0), dist_reduce_fx="sum")

    def update(self, scores: torch.Tensor, targets: torch.Tensor) -> None:
        counted = targets != IGNORE
        self.correct += ((scores.argmax(1) == targets) & counted).sum()
        self.total += counted.sum()

    def compute(self) -> torch.Tensor:
        return self.correct.float() / self.total.clamp_min(1)


class JaccardIndex(MulticlassJaccardIndex):
    """``MulticlassJaccardIndex(num_classes, average="macro")`` whose confusion matrix is counted
    by ``index_add_`` (its ``compute`` is torchmetrics' own)."""

    def __init__(self, num_classes: int) -> None:
        super().__init__(num_classes, average="macro", validate_args=False)

    def update(self, scores: torch.Tensor, targets: torch.Tensor) -> None:
        cells = targets.flatten().long() * self.num_classes + scores.argmax(1).flatten()
        self.confmat.view(-1).index_add_(0, cells, torch.ones_like(cells))
