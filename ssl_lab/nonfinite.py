"""What training does with a NaN or infinite loss: stop, naming the step (``nonfinite: stop``), or
skip the batch and count it (``nonfinite: skip``). One callback on every trainer of a run, so
each module's own loop stays as it is.

``stop`` keeps its watch on the device: the first bad step is recorded there and read every
``CHECK_EVERY`` steps and at each epoch end, so no training step waits for the GPU (a run that
goes bad stops a few steps later, still naming the first bad step, and the weights it leaves are
never used). ``skip`` must decide before each optimiser step, on the host: one sync per step is
the price of that choice."""

import pytorch_lightning as pl
import torch

from ssl_lab.errors import SslLabError

CHOICES = ("stop", "skip")
CHECK_EVERY = 50  # training steps between two reads of the device-side record (nonfinite=stop)


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
        self._first_bad: tuple[torch.Tensor, ...] = ()  # stop: step, epoch, loss of the first bad

    def state_dict(self) -> dict[str, int]:
        return {"skipped": self.skipped}  # kept in a resume point, so the count survives a kill

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self.skipped = state_dict["skipped"]

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._batches, self._skipped_before = 0, self.skipped
        none = torch.tensor(-1, device=pl_module.device)
        self._first_bad = (none, none, none.double())

    def _stop_if_bad(self) -> None:
        """Read the device-side record (a sync, once in ``CHECK_EVERY`` steps) and stop."""
        if not self._first_bad:
            return
        step, epoch, loss = torch.stack([t.double() for t in self._first_bad]).tolist()
        if step >= 0:
            raise SslLabError(
                f"non-finite {self.phase} loss ({loss}) at step {int(step)} (epoch "
                f"{int(epoch)}): lower the learning rate or check the data; nonfinite=skip "
                f"skips such batches"
            )

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        if self._batches % CHECK_EVERY == 0:
            self._stop_if_bad()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop_if_bad()  # before the epoch's resume point or snapshot is saved

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop_if_bad()
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
        finite = torch.isfinite(loss.detach()).all()
        if self.mode == "skip":
            self._bad = not bool(finite)  # decided on the host, before the optimiser steps
            return
        step, epoch, value = self._first_bad  # recorded on the device, read by _stop_if_bad
        first = ~finite & (step < 0)
        self._first_bad = (  # Python numbers go into where() as they are: no copy to the GPU
            torch.where(first, trainer.global_step, step),
            torch.where(first, trainer.current_epoch, epoch),
            torch.where(first, loss.detach().double(), value),
        )

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
