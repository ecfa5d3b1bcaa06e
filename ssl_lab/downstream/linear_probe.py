"""Linear probe: a linear classifier on frozen features, the standard measure of what a
representation already holds. Features are extracted once, not once per epoch."""

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ssl_lab.downstream.classifier import ClassifierModule, fit_and_test
from ssl_lab.downstream.features import extract_features
from ssl_lab.downstream.task import DownstreamTask


class LinearProbe(DownstreamTask):
    def __init__(
        self,
        epochs: int,
        lr: float,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
    ) -> None:
        self.epochs, self.lr = epochs, lr
        self.optimizer, self.scheduler = optimizer, scheduler

    def evaluate(
        self,
        backbone: nn.Module,
        data: pl.LightningDataModule,
        make_trainer: Callable[..., pl.Trainer],
    ) -> dict[str, Any]:
        labelled = data.loader(data.labelled_dataset())
        splits = {
            name: extract_features(backbone, loader, make_trainer)
            for name, loader in (
                ("train", labelled),
                ("val", data.val_dataloader()),
                ("test", data.test_dataloader()),
            )
        }
        # Standardise with the labelled examples' statistics: pretext tasks leave features on very
        # different scales, and one learning rate should suit them all.
        mean, std = splits["train"][0].mean(0), splits["train"][0].std(0).clamp_min(1e-6)
        features = {name: TensorDataset((f - mean) / std, y) for name, (f, y) in splits.items()}
        loaders = {
            "train": data.labelled_loader(features["train"]),
            **{
                name: DataLoader(features[name], batch_size=data.batch_size)
                for name in ("val", "test")
            },
        }
        head = nn.Linear(backbone.out_dim, data.num_classes)
        module = ClassifierModule(
            nn.Identity(),
            head,
            data.num_classes,
            self.lr,
            self.optimizer,
            self.scheduler,
            backbone_lr_scale=0.0,
        )
        return fit_and_test(
            module, loaders["train"], loaders["val"], loaders["test"], self.epochs, make_trainer
        )
