"""What a run tells its experiment trackers beyond the curves Lightning logs: the resolved config
as flat keys, the pretext pictures, the final summary, and (W&B) that the run is finished, also
when the job failed, so a sweep's next job starts a fresh W&B run."""

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import Logger, TensorBoardLogger, WandbLogger

SUMMARY_KEYS = (
    "score",
    "score_name",
    "n_labels",
    "pretext",
    "downstream",
    "data",
    "backbone",
    "seed",
    "labels_per_class",
    "label_fraction",
    "pretrain_cache",
)


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {
            prefix: tree if isinstance(tree, (int, float, str, bool, type(None))) else str(tree)
        }
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def log_config(loggers: list[Logger], cfg: DictConfig) -> None:
    flat = _flatten(OmegaConf.to_container(cfg, resolve=True))
    for logger in loggers:
        logger.log_hyperparams(flat)


def log_picture(loggers: list[Logger], path: Path) -> None:
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=f"pretrain/{path.stem}", images=[str(path)])
        elif isinstance(logger, TensorBoardLogger):
            from torchvision.io import read_image

            logger.experiment.add_image(f"pretrain/{path.stem}", read_image(str(path))[:3])


def finish(loggers: list[Logger], metrics: dict[str, Any] | None) -> None:
    """Write the summary (``metrics`` is None when the job failed) and close W&B runs."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            if metrics is not None:
                logger.experiment.summary.update(
                    {k: metrics[k] for k in SUMMARY_KEYS if k in metrics}
                )
            logger.experiment.finish(exit_code=0 if metrics is not None else 1)
        elif metrics is not None:
            logger.log_metrics({"score": float(metrics["score"])})
            logger.save()
