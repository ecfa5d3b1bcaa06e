"""The short table a run prints at its end."""

from typing import Any

from rich.console import Console
from rich.table import Table

_SHOWN = [
    "pretext",
    "downstream",
    "data",
    "backbone",
    "seed",
    "n_labels",
    "pretext_loss",
    "score_name",
    "score",
    "pretrain_seconds",
    "transfer_seconds",
]


def print_summary(metrics: dict[str, Any]) -> None:
    table = Table(title="ssl-lab result", show_header=False)
    for key in _SHOWN:
        if key in metrics:
            value = metrics[key]
            table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    Console().print(table)
