"""Progress of long work: a bar in a terminal, one log line per epoch everywhere else.

A 67-minute pretraining would otherwise say nothing until it ends. Where one person watches one
run (stdout a terminal, not a sweep) Lightning's tqdm bar shows the phase, the epoch, the last
epoch's loss and the throughput. Where a bar would turn into carriage-return noise (a log file,
SLURM) or interleave with others (a sweep), each training epoch ends with one line instead:

    pretraining epoch 3/8: loss 0.4121, 1532 images/s, elapsed 0:00:21, ETA 0:00:35

Nothing here waits for the device during an epoch: images are counted on the host from batch
shapes, text tokens (ids that are not padding) are summed on the device and read once per epoch,
and the loss is the epoch's value the module already logs. Throughput is over the training part
of the epoch (validation and the kNN monitor left out), for all processes of a DDP job; the ETA
extrapolates this fit's epochs so far.
"""

import logging
import sys
import time
from datetime import timedelta
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from pytorch_lightning.callbacks import TQDMProgressBar

log = logging.getLogger("ssl_lab")


class EpochMeter:
    """What a fit has read and how long it took, epoch by epoch."""

    def __init__(self, pad_id: int | None) -> None:
        self.pad_id = pad_id
        self.unit = "examples"
        self._count: int | torch.Tensor = 0
        self._fit_started = self._epoch_started = self._validating_since = 0.0
        self._validated = 0.0
        self._first_epoch = 0

    def fit_start(self, trainer: pl.Trainer) -> None:
        self._fit_started, self._first_epoch = time.perf_counter(), trainer.current_epoch

    def epoch_start(self) -> None:
        self._count, self._validated = 0, 0.0
        self._epoch_started = time.perf_counter()

    def batch(self, batch: Any) -> None:
        x = batch[0]
        if self.pad_id is not None and x.dtype == torch.long and x.dim() == 2:
            self.unit = "tokens"
            self._count = self._count + (x != self.pad_id).sum()  # stays on the device
        else:  # images, or features (a linear probe)
            self.unit = "images" if x.dim() == 4 else "examples"
            self._count += len(x)

    def validation_start(self) -> None:
        self._validating_since = time.perf_counter()

    def validation_end(self) -> None:
        self._validated += time.perf_counter() - self._validating_since

    def rate_so_far(self, world_size: int) -> float | None:
        """This epoch's examples (or images) per second so far; None for tokens, which are
        read from the device at the epoch end only."""
        if isinstance(self._count, torch.Tensor):
            return None
        seconds = time.perf_counter() - self._epoch_started - self._validated
        return self._count * world_size / seconds if seconds > 0 else None

    def epoch_end(self, trainer: pl.Trainer) -> dict[str, Any]:
        """The finished epoch: ``epoch``, ``epochs``, ``loss``, ``count`` (``unit``s read by all
        processes), ``rate`` (per second), ``elapsed`` and ``eta`` (seconds)."""
        now = time.perf_counter()
        training = max(now - self._epoch_started - self._validated, 1e-9)
        count = int(self._count) * trainer.world_size  # the one read of the device per epoch
        elapsed = now - self._fit_started
        done = trainer.current_epoch + 1 - self._first_epoch
        left = max(trainer.max_epochs - trainer.current_epoch - 1, 0)
        return {
            "epoch": trainer.current_epoch + 1,
            "epochs": trainer.max_epochs,
            "loss": train_loss(trainer),
            "count": count,
            "rate": count / training,
            "unit": self.unit,
            "elapsed": elapsed,
            "eta": elapsed / done * left,
        }


def train_loss(trainer: pl.Trainer) -> float | None:
    """The training loss the module logged (``pretrain/train_loss``, ``transfer/train_loss``,
    ...): its epoch mean, or its last step for a module that logs steps."""
    for key, value in trainer.callback_metrics.items():
        if key.rsplit("/", 1)[-1].startswith("train_loss"):
            return float(value)
    return None


def _clock(seconds: float) -> str:
    return str(timedelta(seconds=round(seconds)))


def epoch_line(phase: str, stats: dict[str, Any]) -> str:
    loss = "n/a" if stats["loss"] is None else f"{stats['loss']:.4g}"
    return (
        f"{phase} epoch {stats['epoch']}/{stats['epochs']}: loss {loss}, "
        f"{stats['rate']:.0f} {stats['unit']}/s, elapsed {_clock(stats['elapsed'])}, "
        f"ETA {_clock(stats['eta'])}"
    )


class _Measured(pl.Callback):
    """The hooks that feed an ``EpochMeter``; subclasses say what to show."""

    def __init__(self, phase: str, pad_id: int | None, *args: Any) -> None:
        super().__init__(*args)
        self.phase, self.meter = phase, EpochMeter(pad_id)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self.meter.fit_start(trainer)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        self.meter.epoch_start()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx: int
    ) -> None:
        self.meter.batch(batch)
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_start(trainer, pl_module)
        self.meter.validation_start()

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        self.meter.validation_end()


class EpochLines(_Measured):
    """One log line per training epoch (rank 0 only), for logs, clusters and sweeps."""

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        stats = self.meter.epoch_end(trainer)
        if trainer.is_global_zero:
            log.info(epoch_line(self.phase, stats))


class EpochBar(_Measured, TQDMProgressBar):
    """Lightning's tqdm bar, titled with the phase and the epoch; beside the module's own
    progress-bar metrics it shows the last epoch's loss and throughput, and for images the
    current epoch's throughput as it goes."""

    def __init__(self, phase: str, pad_id: int | None) -> None:
        super().__init__(phase, pad_id)
        self._last: dict[str, str] = {}

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        epoch = f"{self.phase} epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"
        self.train_progress_bar.set_description(epoch)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        stats = self.meter.epoch_end(trainer)
        loss = {} if stats["loss"] is None else {"loss": f"{stats['loss']:.4g}"}
        self._last = {**loss, f"{stats['unit']}/s": f"{stats['rate']:.0f}"}
        super().on_train_epoch_end(trainer, pl_module)

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        shown = {
            key: value
            for key, value in super().get_metrics(trainer, pl_module).items()
            if key != "v_num" and not key.rsplit("/", 1)[-1].startswith("train_loss")
        }
        rate = self.meter.rate_so_far(trainer.world_size)
        live = {} if rate is None else {f"{self.meter.unit}/s": f"{rate:.0f}"}
        return {**shown, **self._last, **live}


def in_sweep() -> bool:
    """Whether this job is one of a Hydra multirun (whose jobs share the terminal and logs)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def progress_callback(phase: str, pad_id: int | None) -> pl.Callback:
    """A bar where one person watches one run (stdout a terminal, not a sweep), else one line
    per epoch. ``pad_id``: text data's padding id (tokens are counted), None for images."""
    if sys.stdout.isatty() and not in_sweep():
        return EpochBar(phase, pad_id)
    return EpochLines(phase, pad_id)
