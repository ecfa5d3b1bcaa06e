"""Optimiser and schedule from config, shared by the pretext and the transfer modules."""

from collections.abc import Callable, Iterable
from typing import Any

import torch


def configure_optimizers(
    param_groups: Iterable[dict[str, Any]],
    lr: float,
    optimizer: Callable[..., torch.optim.Optimizer],
    scheduler: Callable[..., Any] | None = None,
) -> dict[str, Any]:
    """What a LightningModule's ``configure_optimizers`` returns, built from two partials that
    Hydra made (``_partial_: true``). A group's ``lr_scale`` multiplies the base ``lr``."""
    groups = [
        {"params": g["params"], "lr": lr * g.get("lr_scale", 1.0)}
        for g in param_groups
        if g["params"]
    ]
    opt = optimizer(groups, lr=lr)
    if scheduler is None:
        return {"optimizer": opt}
    return {"optimizer": opt, "lr_scheduler": {"scheduler": scheduler(opt), "interval": "epoch"}}
