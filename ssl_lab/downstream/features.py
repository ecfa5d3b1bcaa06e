"""Frozen features, extracted once with Lightning's predict loop (so they are computed on whatever
accelerator and precision the trainer config names)."""

from collections.abc import Callable

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import DataLoader

from ssl_lab.ranks import gather_cat


class _FeatureExtractor(pl.LightningModule):
    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone

    def predict_step(
        self, batch: tuple[torch.Tensor, ...], batch_idx: int
    ) -> tuple[torch.Tensor, ...]:
        return self.backbone(batch[0]).float(), batch[1]


def extract_features(
    backbone: nn.Module, loader: DataLoader, make_trainer: Callable[..., pl.Trainer]
) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, labels) of every example in ``loader``, backbone in eval mode."""
    outputs = make_trainer(max_epochs=1, logger=False).predict(
        _FeatureExtractor(backbone), dataloaders=loader
    )
    # to the host once, not once per batch; under DDP each process predicted a shard: every
    # process gets all of them
    features = torch.cat([f for f, _ in outputs]).cpu()
    return gather_cat(features, torch.cat([y for _, y in outputs]).cpu())
