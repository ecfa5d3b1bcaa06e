"""What every downstream task is: an evaluation of the handed-over backbone on the data that ends
in flat metrics, one of them the headline ``score`` the report's table is made of."""

from collections.abc import Callable
from numbers import Real
from typing import Any, Protocol, runtime_checkable

import pytorch_lightning as pl
from torch import nn

from ssl_lab.errors import SslLabError

MakeTrainer = Callable[..., pl.Trainer]


@runtime_checkable
class DownstreamTask(Protocol):
    """Tasks declare it (``class LinearProbe(DownstreamTask)``); a class of the user's own with
    the same ``evaluate`` works too. The pipeline checks the metrics it returns (``checked``)."""

    def evaluate(
        self, backbone: nn.Module, data: pl.LightningDataModule, make_trainer: MakeTrainer
    ) -> dict[str, Any]:
        """Flat metrics for metrics.json: at least ``score`` (a number, higher is better) and
        ``score_name`` (what it measures, e.g. ``test/acc``). Trainers come from
        ``make_trainer(max_epochs=..., logger=..., callbacks=...)``: they carry the run's
        trainer config, loggers and callbacks."""
        ...


def checked(name: str, metrics: Any) -> dict[str, Any]:
    """``metrics`` if they keep the contract, else one line naming the task and the breach."""
    if not isinstance(metrics, dict):
        raise SslLabError(
            f"downstream={name}: evaluate returned {type(metrics).__name__}, not a dict of "
            "metrics (ssl_lab/downstream/task.py)"
        )
    score, score_name = metrics.get("score"), metrics.get("score_name")
    if not isinstance(score, Real) or isinstance(score, bool) or not isinstance(score_name, str):
        raise SslLabError(
            f"downstream={name}: evaluate returned score={score!r}, score_name={score_name!r}; "
            "it must return a number (higher is better) and its name (ssl_lab/downstream/task.py)"
        )
    return metrics
