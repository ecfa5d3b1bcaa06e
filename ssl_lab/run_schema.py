"""The schema of what the pipeline itself reads: the top-level keys (``seed``, ``nonfinite``,
``compile``, ``monitor``), ``trainer``, ``logger`` and ``paths``."""

import re
from dataclasses import dataclass
from typing import Any

from omegaconf import ListConfig

from ssl_lab.schema import schema, setting

ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps", "tpu")
# Lightning's precisions (lightning_fabric.plugins.precision.precision), aliases included
PRECISIONS = (
    "64-true",
    "32-true",
    "16-true",
    "16-mixed",
    "bf16-true",
    "bf16-mixed",
    "64",
    "32",
    "16",
)
PRECISIONS += ("bf16", "transformer-engine", "transformer-engine-float16")


def _devices(value: Any) -> bool:
    if isinstance(value, (list, ListConfig)):
        return bool(value) and all(isinstance(i, int) and i >= 0 for i in value)
    if isinstance(value, str):
        return value == "auto" or re.fullmatch(r"-1|\d+(,\d+)*,?", value) is not None
    return isinstance(value, int) and not isinstance(value, bool) and (value == -1 or value >= 1)


def _compile(value: Any) -> bool:
    return isinstance(value, bool) or (isinstance(value, str) and value.strip() != "")


@schema("monitor")
@dataclass
class MonitorConfig:
    """Online kNN accuracy of the backbone during pretraining (pretrain/knn_acc)."""

    knn: bool = setting("measure it (bank: the labelled train subset; queries: the val split)")
    k: int = setting("neighbours that vote", ge=1)
    temperature: float = setting("each neighbour votes exp(cosine similarity / temperature)", gt=0)
    max_bank: int = setting(
        "at most this many bank examples (features recomputed every epoch)", ge=1
    )


@schema("root", base_for="")
@dataclass
class RootConfig:
    """The top-level keys. The root has no schema of its own in the composition (a user's own
    config group adds a key there), so ``check_config`` types these."""

    seed: int = setting("seeds everything; picks the labelled subset", ge=0, le=2**32 - 1)
    nonfinite: str = setting(
        "a NaN or infinite training loss: stop (naming the step) or skip the batch (counted)",
        choices=("stop", "skip"),
    )
    compile: Any = setting(
        "torch.compile the backbone's forward (GPU runs); a string names the backend",
        accepts="true, false or a torch.compile backend name (inductor, aot_eager, ...)",
        check=_compile,
    )
    monitor: MonitorConfig = setting("online kNN accuracy during pretraining")


def _batches(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 0
    return isinstance(value, float) and 0 <= value <= 1


@schema("trainer/base", base_for="trainer")
@dataclass
class TrainerConfig:
    """Lightning Trainer arguments: those that the trainer choices and the presets set. The
    trainer YAMLs name no schema, so that any other Trainer argument can be added
    (``+trainer.gradient_clip_val=1``); ``check_config`` checks these against it. ``max_epochs``
    comes from the pretext or the downstream task."""

    _target_: str = setting("the Trainer class")
    accelerator: str = setting("the device kind", choices=ACCELERATORS)
    devices: Any = setting(
        "devices per node",
        accepts="a count >= 1, -1 (all), auto, or a list of device ids",
        check=_devices,
    )
    num_nodes: int = setting("machines (data.batch_size is split over all processes)", ge=1)
    strategy: str = setting("Lightning's strategy (ddp: data-parallel)")
    sync_batchnorm: bool = setting("batch-norm statistics over all processes (GPUs only)")
    precision: str = setting("Lightning's precision", choices=PRECISIONS)
    deterministic: Any = setting(
        "deterministic algorithms (slower)",
        accepts="true, false or warn",
        check=lambda v: v in (True, False, "warn"),
    )
    enable_checkpointing: bool = setting("Lightning's own checkpoints (resume points are ours)")
    enable_progress_bar: bool = setting("the progress bar")
    enable_model_summary: bool = setting("the model summary at the start")
    log_every_n_steps: int = setting("log training curves every this many steps", ge=1)
    limit_train_batches: Any = setting(
        "train on this many batches (or this fraction) per epoch",
        accepts="an integer >= 0 or a fraction in [0, 1]",
        check=_batches,
    )
    limit_val_batches: Any = setting(
        "validate on this many batches (or fraction)",
        accepts="an integer >= 0 or a fraction in [0, 1]",
        check=_batches,
    )
    limit_test_batches: Any = setting(
        "test on this many batches (or fraction)",
        accepts="an integer >= 0 or a fraction in [0, 1]",
        check=_batches,
    )
    num_sanity_val_steps: int = setting("validation batches run before training", ge=-1)


@schema("paths/base", base_for="paths")
@dataclass
class PathsConfig:
    output_dir: str = setting("where runs write (relative: to the directory ssl-lab starts in)")
    data_dir: str = setting("datasets (SSL_LAB_DATA, or data/)")
    run_dir: str = setting("this run's own directory (Hydra's run or sweep subdirectory)")
    cache_dir: str | None = setting(
        "pretrained backbones, keyed by their configs' hash; null: no cache"
    )


@schema("logger/csv")
@dataclass
class CSVLoggerConfig:
    _target_: str = setting("Lightning's CSVLogger")
    save_dir: str = setting("its directory")
    name: str = setting("subdirectory for the curves")
    version: str = setting("version subdirectory (empty: none)", empty=True)


@schema("logger/tensorboard")
@dataclass
class TensorBoardLoggerConfig(CSVLoggerConfig):
    default_hp_metric: bool = setting("log TensorBoard's hp_metric placeholder")


@schema("logger/wandb")
@dataclass
class WandbLoggerConfig:
    _target_: str = setting("Lightning's WandbLogger")
    project: str = setting("the W&B project")
    name: str = setting("the W&B run's name")
    save_dir: str = setting("where its files go")
    mode: str = setting(
        "online, offline (wandb sync later) or disabled", choices=("online", "offline", "disabled")
    )
    id: str | None = setting("the W&B run id (a hash of the job: a rerun resumes it); null: new")
    resume: str | None = setting("W&B's resume mode", choices=("allow", "must", "never", "auto"))
    group: str = setting("the sweep's group")
    job_type: str = setting("the W&B job type (the downstream task)")
    tags: list[str] = setting("tags of the run", empty=True)
