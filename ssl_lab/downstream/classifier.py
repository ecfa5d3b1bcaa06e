"""The LightningModule that trains a classification head on a backbone (frozen, partly or fully
trained), and the freeze policy that decides which backbone blocks train at what learning rate."""

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from ssl_lab.downstream.schema import FREEZE_CHOICES
from ssl_lab.errors import SslLabError
from ssl_lab.metrics import Accuracy
from ssl_lab.optim import configure_optimizers
from ssl_lab.ranks import unrepeated


def block_lr_scales(
    num_blocks: int,
    freeze: str = "full",
    trainable_blocks: int = 1,
    backbone_lr_scale: float = 1.0,
    layer_decay: float = 1.0,
) -> list[float]:
    """Learning-rate scale of each block, input to output; 0 freezes the block.

    Block i from the top trains at ``backbone_lr_scale * layer_decay**i``: layers near the input
    hold generic features worth keeping, so they move least.
    """
    if freeze not in FREEZE_CHOICES:
        raise SslLabError(f"downstream.freeze={freeze}: choose from {', '.join(FREEZE_CHOICES)}")
    if freeze == "frozen" or backbone_lr_scale <= 0:
        return [0.0] * num_blocks
    if freeze == "last_k" and not 1 <= trainable_blocks <= num_blocks:
        raise SslLabError(
            f"downstream.trainable_blocks={trainable_blocks}: the backbone has {num_blocks} blocks"
        )
    if not 0.0 < layer_decay <= 1.0:
        raise SslLabError(f"downstream.layer_decay={layer_decay}: must be in (0, 1]")
    trainable = num_blocks if freeze == "full" else trainable_blocks
    return [
        backbone_lr_scale * layer_decay ** (num_blocks - 1 - i)
        if i >= num_blocks - trainable
        else 0.0
        for i in range(num_blocks)
    ]


class ClassifierModule(pl.LightningModule):
    """Cross-entropy on ``head(backbone(x))``, with the freeze policy of ``block_lr_scales``
    (a ``backbone_lr_scale`` of 0 freezes the whole backbone, which then needs no ``blocks()``).

    Frozen blocks get no gradients and stay in eval mode, so their batch-norm statistics do not
    drift towards the few labelled examples either. Parameters outside every block train only
    with ``freeze=full``, at ``backbone_lr_scale``.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        num_classes: int,
        lr: float,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        backbone_lr_scale: float = 1.0,
        freeze: str = "full",
        trainable_blocks: int = 1,
        layer_decay: float = 1.0,
        augment: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.backbone, self.head, self.lr = backbone, head, lr
        self.augment = augment
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        whole_backbone_frozen = freeze == "frozen" or backbone_lr_scale <= 0
        blocks = [] if whole_backbone_frozen else list(backbone.blocks())
        scales = block_lr_scales(
            len(blocks), freeze, trainable_blocks, backbone_lr_scale, layer_decay
        )
        self.backbone_lr_scale = backbone_lr_scale
        self._blocks = list(zip(blocks, scales))  # (block, lr scale), input to output
        self.n_trainable_blocks = sum(s > 0 for s in scales)
        backbone.requires_grad_(freeze == "full" and not whole_backbone_frozen)
        for block, scale in self._blocks:
            block.requires_grad_(scale > 0)
        self._frozen = (
            [backbone] if whole_backbone_frozen else [b for b, s in self._blocks if s == 0]
        )
        self.accuracy = nn.ModuleDict({f"{s}_acc": Accuracy() for s in ("train", "val", "test")})

    def train(self, mode: bool = True) -> "ClassifierModule":
        super().train(mode)
        for module in self._frozen:
            module.eval()
        return self

    def on_train_start(self) -> None:
        # Lightning restores, but never sets, training mode: set it, frozen parts aside
        self.train()

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], split: str) -> torch.Tensor:
        x, y = batch
        if split == "train" and self.augment is not None:
            x = self.augment(x)
        logits = self.head(self.backbone(x))
        loss = F.cross_entropy(logits, y)
        prefix = {"train": "transfer/train_", "val": "transfer/val_", "test": "test/"}[split]
        acc = self.accuracy[f"{split}_acc"]
        acc.update(logits.detach(), y)
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
        groups += [
            {"params": list(b.parameters()), "lr_scale": s} for b, s in self._blocks if s > 0
        ]
        in_blocks = {id(p) for b, _ in self._blocks for p in b.parameters()}
        outside = [
            p for p in self.backbone.parameters() if p.requires_grad and id(p) not in in_blocks
        ]
        groups.append({"params": outside, "lr_scale": self.backbone_lr_scale})
        return configure_optimizers(groups, self.lr, self.optimizer_factory, self.scheduler_factory)


def fit_and_test(
    module: ClassifierModule,
    train: DataLoader,
    val: DataLoader,
    test: DataLoader,
    epochs: int,
    make_trainer: Callable[..., pl.Trainer],
) -> dict[str, float]:
    """Train for ``epochs`` and return the test metrics of the final model."""
    trainer = make_trainer(max_epochs=epochs)
    trainer.fit(module, train_dataloaders=train, val_dataloaders=val)
    (results,) = trainer.test(module, dataloaders=unrepeated(test), verbose=False)
    return {
        "score": float(results["test/acc"]),
        "score_name": "test/acc",
        "test_loss": float(results["test/loss"]),
    }
