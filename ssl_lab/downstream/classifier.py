"""The LightningModule that trains a classification head on a backbone (frozen or not)."""

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from torchmetrics.classification import MulticlassAccuracy

from ssl_lab.optim import configure_optimizers


class ClassifierModule(pl.LightningModule):
    """Cross-entropy on ``head(backbone(x))``. The backbone trains at ``lr * backbone_lr_scale``;
    a scale of 0 freezes it (no gradients, batch-norm statistics kept in eval mode)."""

    def __init__(self, backbone: nn.Module, head: nn.Module, num_classes: int, lr: float,
                 optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., Any] | None = None,
                 backbone_lr_scale: float = 1.0) -> None:
        super().__init__()
        self.backbone, self.head, self.lr = backbone, head, lr
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.backbone_lr_scale = backbone_lr_scale
        self.backbone.requires_grad_(backbone_lr_scale > 0)
        self.accuracy = nn.ModuleDict({f"{s}_acc": MulticlassAccuracy(num_classes, average="micro")
                                       for s in ("train", "val", "test")})

    def on_train_epoch_start(self) -> None:
        if self.backbone_lr_scale == 0:
            self.backbone.eval()

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], split: str) -> torch.Tensor:
        x, y = batch
        logits = self.head(self.backbone(x))
        loss = F.cross_entropy(logits, y)
        prefix = {"train": "transfer/train_", "val": "transfer/val_", "test": "test/"}[split]
        acc = self.accuracy[f"{split}_acc"]
        acc(logits.detach(), y)
        self.log(f"{prefix}loss", loss, on_step=False, on_epoch=True, batch_size=len(y))
        self.log(f"{prefix}acc", acc, on_step=False, on_epoch=True, batch_size=len(y))
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self._step(batch, "test")

    def configure_optimizers(self) -> dict[str, Any]:
        groups = [{"params": list(self.head.parameters())}]
        if self.backbone_lr_scale > 0:
            groups.append({"params": list(self.backbone.parameters()),
                           "lr_scale": self.backbone_lr_scale})
        return configure_optimizers(groups, self.lr, self.optimizer_factory, self.scheduler_factory)


def fit_and_test(module: ClassifierModule, train: DataLoader, val: DataLoader, test: DataLoader,
                 epochs: int, make_trainer: Callable[..., pl.Trainer]) -> dict[str, float]:
    """Train for ``epochs`` and return the test metrics of the final model."""
    trainer = make_trainer(max_epochs=epochs)
    trainer.fit(module, train_dataloaders=train, val_dataloaders=val)
    (results,) = trainer.test(module, dataloaders=test, verbose=False)
    return {"score": float(results["test/acc"]), "score_name": "test/acc",
            "test_loss": float(results["test/loss"])}
