"""One run: pretrain (or load) a backbone -> hand it over -> transfer -> metrics.json.

Read top to bottom: ``run`` is the whole story; the helpers above it are its steps.
"""

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ssl_lab.atomic import write_json
from ssl_lab.backbones.checkpoint import load_backbone_weights, save_backbone
from ssl_lab.errors import SslLabError
from ssl_lab.pictures import save_picture
from ssl_lab.pretext.module import PretextModule

log = logging.getLogger("ssl_lab")


def check_compatible(cfg: DictConfig) -> None:
    """Refuse a crossing that cannot work, naming both choices, before anything is built."""
    data_modality = cfg.data.modality
    for group in ("pretext", "downstream"):
        modality = cfg[group].modality
        if modality not in ("any", data_modality):
            raise SslLabError(f"{group}={cfg[group].name} works on {modality} data, "
                              f"but data={cfg.data.name} is {data_modality}")
    checkpoint = cfg.backbone.checkpoint
    if checkpoint is not None and not Path(checkpoint).expanduser().is_file():
        raise SslLabError(f"backbone.checkpoint: no such file: {checkpoint}")


def trainer_factory(cfg: DictConfig, loggers: list) -> Callable[..., pl.Trainer]:
    """Trainers for each phase of the run, all from ``cfg.trainer``, sharing the run's loggers."""
    def make_trainer(max_epochs: int, logger: Any = None) -> pl.Trainer:
        return instantiate(cfg.trainer, max_epochs=max_epochs,
                           logger=(loggers or False) if logger is None else logger)
    return make_trainer


def pretrain(cfg: DictConfig, backbone: nn.Module, data: pl.LightningDataModule,
             make_trainer: Callable[..., pl.Trainer], run_dir: Path) -> dict[str, float]:
    """Train ``backbone`` in place with the pretext task, save the task's picture of what it sees
    and predicts, and return the final pretext metrics."""
    task = instantiate(cfg.pretext.task, feature_dim=backbone.out_dim)
    module = PretextModule(backbone, task, cfg.pretext.lr, instantiate(cfg.pretext.optimizer),
                           instantiate(cfg.pretext.scheduler))
    trainer = make_trainer(max_epochs=cfg.pretext.epochs)
    trainer.fit(module, train_dataloaders=data.unlabelled_dataloader(),
                val_dataloaders=data.val_dataloader())
    module.eval()
    with torch.no_grad():
        rows = task.picture(backbone, next(iter(data.val_dataloader())))
    if rows:
        save_picture(rows, run_dir / f"pretext_{cfg.pretext.name}.png",
                     f"{cfg.pretext.name} on {cfg.data.name} (validation images)")
    return {key.replace("pretext/train_", "pretext_").replace("/", "_"): float(value)
            for key, value in trainer.callback_metrics.items() if key.startswith("pretext/")}


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run one pretrain -> transfer job; write and return its metrics."""
    check_compatible(cfg)
    run_dir = Path(cfg.paths.run_dir)
    started = time.perf_counter()

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    data = instantiate(cfg.data)
    data.setup()  # reads the data and picks the labelled subset: bad label counts fail here
    backbone = instantiate(cfg.backbone.net)
    loggers = list(instantiate(cfg.logger).values()) if cfg.logger else []
    make_trainer = trainer_factory(cfg, loggers)

    metrics: dict[str, Any] = {
        "pretext": cfg.pretext.name, "downstream": cfg.downstream.name, "data": cfg.data.name,
        "backbone": cfg.backbone.name, "seed": cfg.seed,
        "labels_per_class": cfg.data.labels_per_class, "label_fraction": cfg.data.label_fraction,
        "n_labels": data.n_labels, "pretext_epochs": cfg.pretext.epochs,
        "downstream_epochs": cfg.downstream.get("epochs"),
    }
    if cfg.backbone.checkpoint is not None:
        meta = load_backbone_weights(backbone, cfg.backbone.checkpoint)
        metrics.update(pretext=meta.get("pretext", "external"), pretext_epochs=meta.get("epochs"),
                       backbone_checkpoint=str(cfg.backbone.checkpoint))
        log.info("loaded backbone weights from %s", cfg.backbone.checkpoint)
    elif cfg.pretext.task is not None:
        log.info("pretraining %s with %s for %d epochs", cfg.backbone.name, cfg.pretext.name,
                 cfg.pretext.epochs)
        metrics.update(pretrain(cfg, backbone, data, make_trainer, run_dir))
        save_backbone(backbone, run_dir / "backbone.safetensors",
                      OmegaConf.to_container(cfg.backbone.net, resolve=True),
                      {"pretext": cfg.pretext.name, "epochs": cfg.pretext.epochs,
                       "data": cfg.data.name, "backbone": cfg.backbone.name, "seed": cfg.seed})
    metrics["pretrain_seconds"] = round(time.perf_counter() - started, 2)

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    downstream = instantiate(cfg.downstream)
    log.info("transfer: %s on %d labelled examples", cfg.downstream.name, data.n_labels)
    transfer_started = time.perf_counter()
    metrics.update(downstream.evaluate(backbone, data, make_trainer))
    metrics["transfer_seconds"] = round(time.perf_counter() - transfer_started, 2)

    write_json(run_dir / "metrics.json", metrics)
    return metrics
