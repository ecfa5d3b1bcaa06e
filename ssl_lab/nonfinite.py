"""What training does with a NaN or infinite loss: stop, naming the step (``nonfinite: stop``), or
skip the batch and count it (``nonfinite: skip``). One callback on every trainer of a run, so
each module's own loop stays as it is."""

import pytorch_lightning as pl
import torch

from ssl_lab.errors import SslLabError

CHOICES = ("stop", "skip")


class NonFiniteGuard(pl.Callback):
    """A skipped batch leaves no trace on the model: its gradients are dropped before the
    optimiser steps (parameters without a gradient are not touched, not even by weight decay)
    and the buffers its forward pass changed (batch-norm statistics) are put back. ``skipped``
    counts such batches over every trainer this guard serves. A training run that skipped every
    one of its batches trained nothing: it stops, rather than report a score from an untrained
    model."""

    def __init__(self, mode: str = "stop", phase: str = "training") -> None:
        if mode not in CHOICES:
            raise SslLabError(f"nonfinite={mode}: choose from {', '.join(CHOICES)}")
        self.mode, self.phase = mode, phase
        self.skipped = 0
        self._bad = False
        self._batches = self._skipped_before = 0
        self._buffers: list[torch.Tensor] = []

    def state_dict(self) -> dict[str, int]:
        return {"skipped": self.skipped}  # kept in a resume point, so the count survives a kill

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self.skipped = state_dict["skipped"]

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._batches, self._skipped_before = 0, self.skipped

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._batches and self.skipped - self._skipped_before == self._batches:
            raise SslLabError(
                f"every one of the {self._batches} {self.phase} batches had a "
                f"non-finite loss, so nothing was trained: lower the learning rate "
                f"or check the data"
            )

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch, batch_idx: int
    ) -> None:
        self._bad = False
        self._batches += 1
        if self.mode == "skip":
            self._buffers = [b.detach().clone() for b in pl_module.buffers()]

    def on_before_backward(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor
    ) -> None:
        if torch.isfinite(loss.detach()).all():
            return
        if self.mode == "stop":
            raise SslLabError(
                f"non-finite {self.phase} loss ({loss.item()}) at step "
                f"{trainer.global_step} (epoch {trainer.current_epoch}): lower the "
                f"learning rate or check the data; nonfinite=skip skips such batches"
            )
        self._bad = True

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if not self._bad:
            return
        for group in optimizer.param_groups:
            for param in group["params"]:
                param.grad = None
        with torch.no_grad():
            for saved, buffer in zip(self._buffers, pl_module.buffers()):
                buffer.copy_(saved)
        self.skipped += 1
        self._bad = False
