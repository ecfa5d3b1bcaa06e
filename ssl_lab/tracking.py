"""What a run tells its experiment trackers beyond the curves Lightning logs: the choices that
made it and the resolved config, the pretext pictures, the final summary, and (W&B) that the run
is finished, also when the job failed, so a sweep's next job starts a fresh W&B run."""

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
    "labelled_images",
    "pretrain_cache",
)


def choices(cfg: DictConfig) -> dict[str, Any]:
    """The choices that tell one job of a sweep from another, by the names the report and a W&B
    panel group by; metrics.json starts with them too."""
    return {
        "pretext": cfg.pretext.name,
        "downstream": cfg.downstream.name,
        "data": cfg.data.name,
        "backbone": cfg.backbone.name,
        "seed": cfg.seed,
        "labels_per_class": cfg.data.get("labels_per_class"),  # none for sentence pairs
        "label_fraction": cfg.data.get("label_fraction"),
        # detection data count labelled images; other data have no such key
        **({"labelled_images": cfg.data.labelled_images} if "labelled_images" in cfg.data else {}),
    }


def log_config(loggers: list[Logger], cfg: DictConfig) -> None:
    """The choices at the root of the tracker's config (a W&B panel groups by ``pretext``), the
    whole resolved config under ``cfg`` (``cfg.pretext.lr``): at the root its groups would clash
    with the choices' names."""
    params = {**choices(cfg), "cfg": OmegaConf.to_container(cfg, resolve=True)}
    for logger in loggers:
        logger.log_hyperparams(params)


def wandb_place(loggers: list[Logger]) -> dict[str, str]:
    """Where this job's W&B run lives (``wandb_project``, ``wandb_group``, ``wandb_entity`` when
    set), for metrics.json: ``ssl-lab-report --wandb`` puts the sweep's summary run beside it.
    Empty without a W&B logger. Call it on the global-zero process (others have no W&B run)."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            run = logger.experiment
            place = {"wandb_project": run.project, "wandb_group": run.group}
            return {**place, **({"wandb_entity": run.entity} if run.entity else {})}
    return {}


def log_picture(loggers: list[Logger], path: Path, phase: str = "pretrain") -> None:
    """The PNG at ``path`` as ``<phase>/<file stem>`` (``pretrain/pretext_rotation``,
    ``transfer/detection``)."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=f"{phase}/{path.stem}", images=[str(path)])
        elif isinstance(logger, TensorBoardLogger):
            from torchvision.io import read_image

            logger.experiment.add_image(f"{phase}/{path.stem}", read_image(str(path))[:3])


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
