"""Watching representations while pretraining runs: a pretext loss that falls says the task is
being learned, not that the features are getting useful. A kNN accuracy each epoch says that, at
the cost of one forward pass over a memory bank and the validation images; snapshots of the
backbone let transfer itself be measured along the way; for text, a count of the tokens read
puts pretraining length in the unit the literature uses."""

from collections.abc import Callable, Sequence

import pytorch_lightning as pl
import torch
from torch import nn
from torch.utils.data import Dataset, Subset
from torchmetrics.functional.classification import multiclass_accuracy

from ssl_lab.data.batch_fetch import fetch
from ssl_lab.downstream.knn import knn_predict


def _features(
    backbone: nn.Module, dataset: Dataset, batch_size: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    # Whole batches by index (``batch_fetch``), from wherever the data lives (``data.on_device``);
    # no DataLoader, which would draw its seed from the global RNG and so change the pretraining
    # the monitor watches.
    features, labels = [], []
    for start in range(0, len(dataset), batch_size):
        index = torch.arange(start, min(start + batch_size, len(dataset)))
        x, y = fetch(dataset, index)[:2]
        features.append(backbone(x.to(device)).float())
        labels.append(y.to(device))
    return torch.cat(features), torch.cat(labels)


class KNNMonitor(pl.Callback):
    """Logs ``pretrain/knn_acc`` at each validation epoch end: weighted kNN (``knn_predict``) of
    the ``queries`` (the val split) against a memory bank of labelled train examples (the first
    ``max_bank`` of ``bank``: the train split is in random order), on features of the backbone
    as it is now, in eval mode.

    Eval mode and no grad leave the weights, batch-norm statistics and random state untouched,
    so pretraining (and its cache key) is the same with or without the monitor.
    """

    def __init__(
        self,
        bank: Dataset,
        queries: Dataset,
        num_classes: int,
        k: int = 20,
        temperature: float = 0.07,
        max_bank: int = 5000,
        batch_size: int = 512,
    ) -> None:
        self.bank = Subset(bank, range(min(len(bank), max_bank)))
        self.queries, self.num_classes = queries, num_classes
        self.k, self.temperature, self.batch_size = k, temperature, batch_size

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        backbone = pl_module.backbone
        backbone.eval()  # Lightning restores the training modes after validation
        with torch.no_grad():
            bank, bank_labels = _features(backbone, self.bank, self.batch_size, pl_module.device)
            queries, labels = _features(backbone, self.queries, self.batch_size, pl_module.device)
        predicted = knn_predict(
            bank, bank_labels, queries, self.num_classes, self.k, self.temperature
        )
        accuracy = multiclass_accuracy(predicted, labels, self.num_classes, average="micro")
        # under DDP every process scores everything, but batch-norm statistics may differ per
        # process: log their mean
        pl_module.log("pretrain/knn_acc", accuracy, on_step=False, on_epoch=True, sync_dist=True)


class BackboneSnapshots(pl.Callback):
    """Calls ``save(epoch)`` after each pretraining epoch listed in ``epochs`` (counted from 1):
    one pretraining then answers how transfer changes with pretraining length, each snapshot
    transferred with ``backbone.checkpoint``."""

    def __init__(self, epochs: Sequence[int], save: Callable[[int], None]) -> None:
        self.epochs, self.save = {int(e) for e in epochs}, save

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if epoch in self.epochs and trainer.is_global_zero:
            self.save(epoch)


class TokenCounter(pl.Callback):
    """Counts the tokens pretraining has read (ids that are not ``pad_id``, summed over the
    processes of a DDP job at each epoch end), so ``total`` is exact with
    ``trainer.limit_train_batches`` and survives a resume (it is saved in the checkpoint)."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id, self.total, self._epoch = pad_id, 0, 0

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        # stays a tensor on the batch's device: no host sync per step
        self._epoch = self._epoch + (batch[0] != self.pad_id).sum()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        read = torch.as_tensor(self._epoch, dtype=torch.float64, device=pl_module.device)
        self.total += int(trainer.strategy.reduce(read, reduce_op="sum"))
        self._epoch = 0

    def state_dict(self) -> dict[str, int]:
        return {"total": self.total}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self.total = int(state_dict["total"])
