"""Pretraining that survives a kill: a resume point, ``last.ckpt``, in a directory that outlives
the process, written at every epoch end and when the job is told to stop (SIGTERM, or SIGUSR1,
which SLURM sends before a time limit or a preemption). Rerunning the same command resumes from
it and ends after the same number of steps as an uninterrupted run. Everything in the file is
tensors and plain containers, and it is read with ``weights_only=True``.

Under SLURM, Lightning's auto-requeue owns SIGUSR1: it requeues the job (and saves a checkpoint
of its own, which ``pipeline.trainer_factory`` keeps from being loaded anywhere); the SIGTERM
that then ends the job writes ``last.ckpt``, from which the requeued job resumes.
"""

import logging
import os
import pickle
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from omegaconf import DictConfig
from pytorch_lightning.utilities.exceptions import SIGTERMException
from torch.utils.data import DataLoader

from ssl_lab.cache import pretrain_key
from ssl_lab.errors import Interrupted, SslLabError

log = logging.getLogger("ssl_lab")

LAST = "last.ckpt"
_METRICS_KEY = "ssl_lab_callback_metrics"


def resume_dir(cfg: DictConfig) -> Path:
    """Where this job's pretraining keeps its resume point: beside the cache entry it will
    become, named by the entry's key, so the same command finds it again. Without a cache, in the
    run directory: a rerun in the same directory resumes, a rerun in a new one starts afresh."""
    if cfg.paths.cache_dir is None:
        return Path(cfg.paths.run_dir) / "pretrain.partial"
    return Path(cfg.paths.cache_dir) / f".{pretrain_key(cfg)}.partial"


def _stop_as_if_terminated(signum: int, frame: Any) -> None:
    """SIGUSR1 outside SLURM: stop like SIGTERM (Lightning finishes the batch, then stops)."""
    os.kill(os.getpid(), signal.SIGTERM)


class ResumePoint(pl.Callback):
    """Saves ``directory/last.ckpt`` at each training epoch end and when SIGTERM (or SIGUSR1)
    stops training, at a batch boundary, so the loop state it records is consistent.

    The checkpoint also carries the metrics logged so far, so a job killed after its last epoch
    still knows its final losses when it resumes (``logged_metrics``).
    """

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / LAST
        self.resumed_from_step: int | None = None
        self._restored_metrics: dict[str, float] = {}
        self._replaced_usr1: Any = None

    def latest(self) -> Path | None:
        return self.path if self.path.is_file() else None

    def logged_metrics(self, trainer: pl.Trainer) -> dict[str, float]:
        """Everything logged so far, across the interruption."""
        return {
            **self._restored_metrics,
            **{key: float(value) for key, value in trainer.callback_metrics.items()},
        }

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Lightning has set its handlers by now: SIGUSR1 is free unless SLURM auto-requeue owns it
        free = signal.getsignal(signal.SIGUSR1) in (signal.SIG_DFL, None)
        if free and threading.current_thread() is threading.main_thread():
            self._replaced_usr1 = signal.signal(signal.SIGUSR1, _stop_as_if_terminated)

    def _restore_usr1(self) -> None:
        if self._replaced_usr1 is not None:
            signal.signal(signal.SIGUSR1, self._replaced_usr1)
            self._replaced_usr1 = None

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)  # all state; temp name, rename

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore_usr1()

    def on_exception(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException
    ) -> None:
        self._restore_usr1()
        if isinstance(exception, SIGTERMException):  # raised between batches: a consistent state
            trainer.save_checkpoint(self.path, weights_only=False)
            log.warning("stopped by a signal at step %d: saved %s", trainer.global_step, self.path)

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint[_METRICS_KEY] = {k: float(v) for k, v in trainer.callback_metrics.items()}

    def on_load_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._restored_metrics = dict(checkpoint.get(_METRICS_KEY, {}))
        self.resumed_from_step = int(checkpoint["global_step"])


def fit_resumably(
    make_trainer: Callable[..., pl.Trainer],
    max_epochs: int,
    callbacks: list[pl.Callback],
    module: pl.LightningModule,
    train: DataLoader,
    val: DataLoader,
    directory: Path,
) -> tuple[pl.Trainer, ResumePoint]:
    """``trainer.fit`` that resumes from ``directory``'s resume point if there is one and keeps
    it up to date. A signal ends the job with one line (``Interrupted``); a resume point that is
    not a plain checkpoint is refused, never unpickled."""
    resume = ResumePoint(directory)
    start = resume.latest()
    if start is not None:
        log.info("resuming from %s", start)
    trainer = make_trainer(max_epochs=max_epochs, callbacks=[*callbacks, resume])
    try:
        trainer.fit(
            module, train_dataloaders=train, val_dataloaders=val, ckpt_path=start, weights_only=True
        )
    except SIGTERMException:
        raise Interrupted(
            f"by a signal at pretraining step {trainer.global_step}; {resume.path} "
            f"is saved: run the same command again to resume"
        ) from None
    except (pickle.UnpicklingError, EOFError) as err:  # only the resume point is unpickled
        if start is None:
            raise
        raise SslLabError(
            f"refused resume point {start}: not a plain checkpoint ("
            f"{str(err).strip().splitlines()[0]}); delete it to start over"
        ) from None
    return trainer, resume


@contextmanager
def stopped_by_signal(when: str) -> Iterator[None]:
    """Lightning's reaction to SIGTERM (an exception that would exit with status 0) becomes one
    line saying ``when`` the job stopped, and a non-zero status."""
    try:
        yield
    except SIGTERMException:
        raise Interrupted(f"by a signal {when}") from None


class StopWhenSignalled(pl.Callback):
    """Lightning acts on SIGTERM between training and validation batches only: a signal during
    prediction (feature extraction) or the last test batch would be noted and forgotten, and the
    job would carry on. Stop at the end of those loops too."""

    def _stop_if_signalled(self, trainer: pl.Trainer) -> None:
        if trainer.received_sigterm:
            raise SIGTERMException

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop_if_signalled(trainer)

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._stop_if_signalled(trainer)
