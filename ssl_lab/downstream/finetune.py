"""Fine-tuning: a linear head on the backbone, both trained on the labelled subset. Which backbone
blocks train, and how fast, is the freeze policy of ``classifier.block_lr_scales``."""

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from ssl_lab.downstream.classifier import ClassifierModule, fit_and_test
from ssl_lab.downstream.task import DownstreamTask


class FineTune(DownstreamTask):
    def __init__(
        self,
        epochs: int,
        lr: float,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        backbone_lr_scale: float = 1.0,
        freeze: str = "full",
        trainable_blocks: int = 1,
        layer_decay: float = 1.0,
    ) -> None:
        self.epochs, self.lr = epochs, lr
        self.optimizer, self.scheduler = optimizer, scheduler
        self.backbone_lr_scale, self.layer_decay = backbone_lr_scale, layer_decay
        self.freeze, self.trainable_blocks = freeze, trainable_blocks

    def evaluate(
        self,
        backbone: nn.Module,
        data: pl.LightningDataModule,
        make_trainer: Callable[..., pl.Trainer],
    ) -> dict[str, Any]:
        head = nn.Linear(backbone.out_dim, data.num_classes)
        module = ClassifierModule(
            backbone,
            head,
            data.num_classes,
            self.lr,
            self.optimizer,
            self.scheduler,
            self.backbone_lr_scale,
            self.freeze,
            self.trainable_blocks,
            self.layer_decay,
            data.augment,
        )
        metrics = fit_and_test(
            module,
            data.train_dataloader(),
            data.val_dataloader(),
            data.test_dataloader(),
            self.epochs,
            make_trainer,
        )
        # The report sees only metrics.json: record the policy so a sweep over it stays readable.
        return {
            **metrics,
            "freeze": self.freeze,
            "trainable_blocks": module.n_trainable_blocks,
            "layer_decay": self.layer_decay,
        }
