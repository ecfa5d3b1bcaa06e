"""Fine-tuning: a linear head on the backbone, both trained on the labelled subset; the backbone
at its own learning-rate scale (0 freezes it)."""

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from ssl_lab.downstream.classifier import ClassifierModule, fit_and_test


class FineTune:
    def __init__(self, name: str, modality: str, epochs: int, lr: float,
                 optimizer: Callable[..., torch.optim.Optimizer],
                 scheduler: Callable[..., Any] | None = None,
                 backbone_lr_scale: float = 1.0) -> None:
        self.name, self.modality, self.epochs, self.lr = name, modality, epochs, lr
        self.optimizer, self.scheduler = optimizer, scheduler
        self.backbone_lr_scale = backbone_lr_scale

    def evaluate(self, backbone: nn.Module, data: pl.LightningDataModule,
                 make_trainer: Callable[..., pl.Trainer]) -> dict[str, Any]:
        head = nn.Linear(backbone.out_dim, data.num_classes)
        module = ClassifierModule(backbone, head, data.num_classes, self.lr, self.optimizer,
                                  self.scheduler, self.backbone_lr_scale)
        return fit_and_test(module, data.train_dataloader(), data.val_dataloader(),
                            data.test_dataloader(), self.epochs, make_trainer)
