"""The one LightningModule that trains a backbone with any pretext task."""

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from ssl_lab.metrics import Accuracy
from ssl_lab.optim import configure_optimizers
from ssl_lab.pretext.task import PretextTask


class PretextModule(pl.LightningModule):
    """Logs ``pretrain/train_loss`` and ``pretrain/val_loss`` (and ``.../acc`` for tasks with
    pseudo-classes). The task owns inputs, head and loss; this module owns the loop."""

    def __init__(
        self,
        backbone: nn.Module,
        task: PretextTask,
        lr: float,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__()
        self.backbone, self.task, self.lr = backbone, task, lr
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        if task.num_classes:
            self.train_acc, self.val_acc = Accuracy(), Accuracy()

    def _step(self, batch: tuple[torch.Tensor, ...], split: str) -> torch.Tensor:
        inputs, targets = self.task.make_batch(batch)
        outputs = self.task(self.backbone, inputs)
        loss = self.task.loss(outputs, targets)
        self.log(
            f"pretrain/{split}_loss",
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(targets),
            sync_dist=True,  # under DDP: the mean over all processes, not rank 0's share
        )
        if self.task.num_classes:
            acc = getattr(self, f"{split}_acc")
            acc.update(outputs.detach(), targets)
            self.log(
                f"pretrain/{split}_acc", acc, on_step=False, on_epoch=True, batch_size=len(targets)
            )
        return loss

    def training_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: tuple[torch.Tensor, ...], batch_idx: int) -> None:
        self._step(batch, "val")

    def configure_optimizers(self) -> dict[str, Any]:
        return configure_optimizers(
            [{"params": list(self.parameters())}],
            self.lr,
            self.optimizer_factory,
            self.scheduler_factory,
        )
