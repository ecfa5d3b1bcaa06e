"""One run: pretrain (or load) a backbone -> hand it over -> transfer -> metrics.json.

Read top to bottom: ``run`` is the whole story; the helpers above it are its steps.
"""

import json
import logging
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ProgressBar
from torch import nn

from ssl_lab import tracking
from ssl_lab.atomic import build_once, write_json
from ssl_lab.backbones.checkpoint import (
    BACKBONE_FILE,
    load_backbone_weights,
    read_config,
    read_meta,
    save_backbone,
)
from ssl_lab.build import build, object_config
from ssl_lab.cache import READING_DEFAULTS, pretrain_key, pretrain_spec
from ssl_lab.config_check import check_config
from ssl_lab.data.labels import subset_digest
from ssl_lab.data.placement import PlaceData
from ssl_lab.data.texts import as_text
from ssl_lab.data.tokenizer import METADATA_KEY as TOKENIZER_KEY
from ssl_lab.data.tokenizer import load_tokenizer
from ssl_lab.downstream.task import DownstreamTask, checked
from ssl_lab.errors import SslLabError
from ssl_lab.monitor import BackboneSnapshots, KNNMonitor, TokenCounter
from ssl_lab.nonfinite import NonFiniteGuard
from ssl_lab.pictures import save_picture
from ssl_lab.progress import progress_callback
from ssl_lab.ranks import is_global_zero
from ssl_lab.resume import StopWhenSignalled, fit_resumably, resume_dir, stopped_by_signal

log = logging.getLogger("ssl_lab")


def check_compatible(cfg: DictConfig) -> None:
    """Refuse a crossing that cannot work, naming both choices, before anything is built."""
    data_modality = cfg.data.modality
    for group in ("backbone", "pretext", "downstream"):
        modality = cfg[group].get("modality", "any")
        if modality not in ("any", data_modality):
            raise SslLabError(
                f"{group}={cfg[group].name} works on {modality} data, "
                f"but data={cfg.data.name} is {data_modality}"
            )
    _check_language_model(cfg)
    _check_causal(cfg)
    if cfg.downstream.get("requires_boxes", False) and not cfg.data.get("boxes", False):
        raise SslLabError(
            f"downstream={cfg.downstream.name} needs boxes, but data={cfg.data.name} has none "
            "(use data=digit_canvas or data=boxes)"
        )
    _check_pairs(cfg)
    needs = cfg.downstream.get("requires_pretext")
    if needs is not None and (cfg.pretext.name != needs or cfg.backbone.checkpoint is not None):
        chosen = (
            "backbone.checkpoint"
            if cfg.backbone.checkpoint is not None
            else f"pretext={cfg.pretext.name}"
        )
        raise SslLabError(
            f"downstream={cfg.downstream.name} ignores the backbone: "
            f"run it with pretext={needs}, not {chosen}"
        )
    checkpoint = cfg.backbone.checkpoint
    if checkpoint is not None and not Path(checkpoint).expanduser().is_file():
        raise SslLabError(f"backbone.checkpoint: no such file: {checkpoint}")


def _check_language_model(cfg: DictConfig) -> None:
    """A task that reads the backbone's language-model head needs a backbone whose head was
    trained: by an mlm/clm pretext, a checkpoint of one, or a pretrained Hugging Face model.
    One that trains the head itself (``trains_language_model``: few-shot prompting) may start
    from random init, its reference."""
    needs = cfg.downstream.get("requires_language_model", False)
    if not needs or cfg.downstream.get("trains_language_model", False):
        return
    checkpoint = cfg.backbone.checkpoint
    if checkpoint is not None:
        made_by = read_meta(Path(checkpoint).expanduser()).get("language_model")
        if made_by is None:
            raise SslLabError(
                f"downstream={cfg.downstream.name} needs a language-model head, but "
                f"backbone.checkpoint={checkpoint} was not pretrained with mlm or clm"
            )
    elif cfg.pretext.get("language_model") is None and not cfg.backbone.get("pretrained", False):
        raise SslLabError(
            f"downstream={cfg.downstream.name} needs a language-model head, but "
            f"pretext={cfg.pretext.name} trains none (use pretext=mlm or clm)"
        )


def _check_pairs(cfg: DictConfig) -> None:
    """Sentence pairs (translation data) go to a task that translates, and only there."""
    pairs = "languages" in cfg.data
    if pairs == bool(cfg.downstream.get("requires_pairs", False)):
        if pairs and cfg.backbone.name != "transformer":
            raise SslLabError(
                f"downstream={cfg.downstream.name} builds its decoder from "
                f"backbone=transformer, not backbone={cfg.backbone.name}"
            )
        return
    if pairs:
        raise SslLabError(
            f"data={cfg.data.name} holds sentence pairs: transfer with downstream=translate, "
            f"not downstream={cfg.downstream.name}"
        )
    raise SslLabError(
        f"downstream={cfg.downstream.name} needs sentence pairs (data=zh_en, parallel_tsv), "
        f"but data={cfg.data.name} holds labelled examples"
    )


def _check_causal(cfg: DictConfig) -> None:
    """A checkpoint's weights were trained to read left to right (clm) or both ways (mlm): run
    them the other way and they score nonsense, silently. Refuse, naming the fix."""
    checkpoint = cfg.backbone.checkpoint
    if checkpoint is None or "causal" not in cfg.backbone:
        return
    config = read_config(Path(checkpoint).expanduser()) or {}
    stored = config.get("causal")
    if stored is not None and bool(stored) != bool(cfg.backbone.causal):
        made = "causal (pretext=clm)" if stored else "bidirectional"
        raise SslLabError(
            f"backbone.checkpoint={checkpoint} was pretrained {made}, but "
            f"backbone.causal={str(bool(cfg.backbone.causal)).lower()}: set "
            f"backbone.causal={str(bool(stored)).lower()}"
        )
    # how a causal model reads: files made before these settings read forward, the whole past
    for key, default in READING_DEFAULTS.items():
        if key not in cfg.backbone or stored is None:
            continue
        made, wanted = config.get(key, default), cfg.backbone[key]
        if made != wanted:
            made, wanted = ("null" if v is None else v for v in (made, wanted))
            raise SslLabError(
                f"backbone.checkpoint={checkpoint} was pretrained with {key}={made} "
                f"(pretext=clm), but backbone.{key}={wanted}: set backbone.{key}={made}"
            )


def per_device_batch_size(cfg: DictConfig) -> int:
    """``data.batch_size`` is the global batch: under DDP each of the processes takes its share,
    so a run computes the same gradient steps on 1 or N processes."""
    trainer = cfg.trainer
    devices = trainer.get("devices", 1)
    if "ddp" not in str(trainer.get("strategy", "")) or not isinstance(devices, int):
        return cfg.data.batch_size
    world = devices * int(trainer.get("num_nodes", 1))
    if cfg.data.batch_size % world:
        raise SslLabError(
            f"data.batch_size={cfg.data.batch_size} does not split evenly over "
            f"{world} processes (trainer.devices x trainer.num_nodes)"
        )
    return cfg.data.batch_size // world


def trainer_factory(
    cfg: DictConfig,
    loggers: list,
    root: Path,
    extra_callbacks: tuple[pl.Callback, ...] = (),
    *,
    phase: str | None = None,
    pad_id: int | None = None,
) -> Callable[..., pl.Trainer]:
    """Trainers for each phase of the run, all from ``cfg.trainer``, sharing the run's loggers
    (and ``extra_callbacks``).

    ``phase`` (``pretraining``, ``transfer``) names the work in its progress report: a bar in a
    terminal, one line per epoch in a log or a sweep (``progress.py``; ``pad_id``: text data's
    padding, so tokens are counted). Without a phase the trainers stay silent (benchmarks).

    ``root`` is each trainer's ``default_root_dir``, emptied first: under SLURM, Lightning saves a
    checkpoint there on SIGUSR1 and loads it into any later trainer that finds it, which would
    hand a half-trained state to the next phase. Resuming is ``resume.fit_resumably``'s job alone.
    """

    def make_trainer(
        max_epochs: int, logger: Any = None, callbacks: list[pl.Callback] | None = None
    ) -> pl.Trainer:
        shutil.rmtree(root, ignore_errors=True)
        shown = [] if phase is None else [progress_callback(phase, pad_id)]
        return instantiate(
            cfg.trainer,
            max_epochs=max_epochs,
            logger=(loggers or False) if logger is None else logger,
            callbacks=[*(callbacks or []), *extra_callbacks, StopWhenSignalled(), *shown],
            enable_progress_bar=any(isinstance(c, ProgressBar) for c in shown),
            default_root_dir=str(root),
        )

    return make_trainer


def _save_pretrained(
    cfg: DictConfig,
    backbone: nn.Module,
    data: pl.LightningDataModule,
    path: Path,
    epochs: int,
    tokens: int | None,
) -> None:
    """The hand-off file: weights, the config that built them, how they were made, and for text
    the tokenizer whose ids they were trained on."""
    text = as_text(data)
    save_backbone(
        backbone,
        path,
        object_config(cfg, "backbone"),
        {
            "pretext": cfg.pretext.name,
            "epochs": epochs,
            "data": cfg.data.name,
            "backbone": cfg.backbone.name,
            "seed": cfg.seed,
            "language_model": cfg.pretext.get("language_model"),
            # how a causal model reads (the backbone config says it too; this is for people)
            **{
                key: getattr(backbone, key)
                for key in READING_DEFAULTS
                if getattr(backbone, "causal", False) and hasattr(backbone, key)
            },
            **({"tokens": tokens} if tokens is not None else {}),
        },
        {TOKENIZER_KEY: text.tokenizer.to_json()} if text is not None else None,
    )


def pretrain(
    cfg: DictConfig,
    backbone: nn.Module,
    data: pl.LightningDataModule,
    make_trainer: Callable[..., pl.Trainer],
    out_dir: Path | None,
) -> dict[str, Any]:
    """Train ``backbone`` in place with the pretext task; write its weights, its final metrics and
    the task's picture of what it sees and predicts into ``out_dir`` (None: write nothing, as in
    the other processes of a DDP job); return the metrics."""
    text = as_text(data)
    vocab = {"vocab": text.tokenizer.vocab} if cfg.pretext.modality == "text" else {}
    task = instantiate(cfg.pretext.task, feature_dim=backbone.out_dim, **vocab)
    module = build(cfg, "pretext", backbone=backbone, task=task)
    monitor, callbacks = cfg.monitor, []
    # weights are the same either way, so the cache key ignores the monitor; one class (tree
    # crowns) has no accuracy to watch, and sentence pairs have no classes for it
    if monitor.knn and data.num_classes and data.num_classes > 1:
        callbacks.append(
            KNNMonitor(
                data.labelled_dataset(),
                data.splits["val"],
                data.num_classes,
                monitor.k,
                monitor.temperature,
                monitor.max_bank,
            )
        )
    counter = None
    if text is not None:  # how much it read, the curve's x
        counter = TokenCounter(text.tokenizer.ids["pad"])
        callbacks.append(counter)  # before the snapshots, which read its count
    snapshots = cfg.pretext.get("snapshot_epochs") or []
    kept = resume_dir(cfg) / "snapshots"  # outlives a kill, like the resume point
    if out_dir is not None and snapshots:
        callbacks.append(
            BackboneSnapshots(
                snapshots,
                lambda epoch: _save_pretrained(
                    cfg,
                    backbone,
                    data,
                    kept / f"epoch{epoch}.safetensors",
                    epoch,
                    counter.total if counter is not None else None,
                ),
            )
        )
    guard = NonFiniteGuard(cfg.nonfinite, "pretraining")
    # resumes where an interrupted run of this job stopped, if one did
    trainer, resume = fit_resumably(
        make_trainer,
        cfg.pretext.epochs,
        [*callbacks, guard],
        module,
        data.labelled_pretraining_dataloader()
        if task.uses_labels
        else data.unlabelled_dataloader(),
        data.val_dataloader(),
        resume_dir(cfg),
    )
    stats = {
        "pretext_" + key.removeprefix("pretrain/").removeprefix("train_"): value
        for key, value in resume.logged_metrics(trainer).items()
        if key.startswith("pretrain/")
    }
    stats["pretext_steps"] = trainer.global_step
    if counter is not None:
        stats["pretext_tokens"] = counter.total
    if cfg.nonfinite == "skip":
        stats["pretext_nonfinite_skipped"] = guard.skipped
    resumed = (
        {}
        if resume.resumed_from_step is None
        else {"pretrain_resumed_from_step": resume.resumed_from_step}
    )
    if out_dir is None:
        return {**stats, **resumed}
    module.eval()
    device = next(backbone.parameters()).device  # the host: Lightning moves the model back
    with torch.no_grad():
        batch = [t.to(device) for t in next(iter(data.val_dataloader()))]  # data.on_device
        rows = task.picture(backbone, batch)
    if rows:
        save_picture(
            rows,
            out_dir / f"pretext_{cfg.pretext.name}.png",
            f"{cfg.pretext.name} on {cfg.data.name} (validation images)",
        )
    if text is not None:
        text.tokenizer.save(out_dir)
    if kept.is_dir():
        shutil.copytree(kept, out_dir / "snapshots")
    _save_pretrained(
        cfg,
        backbone,
        data,
        out_dir / BACKBONE_FILE,
        cfg.pretext.epochs,
        counter.total if counter is not None else None,
    )
    write_json(out_dir / "pretext_metrics.json", stats)
    with open(out_dir / "pretrain_config.yaml", "w") as f:
        f.write(OmegaConf.to_yaml(OmegaConf.create(pretrain_spec(cfg))))
    return {**stats, **resumed}


def _load_pretrained(backbone: nn.Module, data: pl.LightningDataModule, path: Path) -> None:
    """Cached weights, and for text the tokenizer they were trained with: subword trainers do
    not promise the same ids twice, so the data is re-encoded if this run's tokenizer differs."""
    load_backbone_weights(backbone, path)
    text = as_text(data)
    if text is not None:
        stored = load_tokenizer(path, text.tokenizer.max_length)
        if stored.to_json() != text.tokenizer.to_json():
            text.use_tokenizer(stored)


def pretrained(
    cfg: DictConfig,
    backbone: nn.Module,
    data: pl.LightningDataModule,
    make_trainer: Callable[..., pl.Trainer],
    run_dir: Path,
) -> dict[str, Any]:
    """Pretrain ``backbone`` (resuming an interrupted pretraining of this job), or load the cached
    pretraining with the same key."""
    if cfg.paths.cache_dir is None:
        stats = pretrain(cfg, backbone, data, make_trainer, run_dir if is_global_zero() else None)
        if is_global_zero():
            shutil.rmtree(resume_dir(cfg), ignore_errors=True)
        return {**stats, "pretrain_cache": "disabled", "pretrain_dir": str(run_dir)}
    entry = Path(cfg.paths.cache_dir) / pretrain_key(cfg)
    if not is_global_zero():  # a DDP helper process: train alongside rank 0, never write or lock
        if not entry.is_dir():
            stats = pretrain(cfg, backbone, data, make_trainer, None)
            return {**stats, "pretrain_cache": "miss", "pretrain_dir": str(entry)}
        _load_pretrained(backbone, data, entry / BACKBONE_FILE)
        return {"pretrain_cache": "hit", "pretrain_dir": str(entry)}
    built: dict[str, Any] = {}
    hit = build_once(
        entry, lambda staging: built.update(pretrain(cfg, backbone, data, make_trainer, staging))
    )
    if hit:
        _load_pretrained(backbone, data, entry / BACKBONE_FILE)
    else:
        shutil.rmtree(resume_dir(cfg), ignore_errors=True)  # only once the entry is complete
    for picture in entry.glob("pretext_*.png"):
        shutil.copyfile(picture, run_dir / picture.name)
    stats = json.loads((entry / "pretext_metrics.json").read_text(encoding="utf-8"))
    resumed = {k: v for k, v in built.items() if k == "pretrain_resumed_from_step"}
    cache = "hit" if hit else "resumed" if resumed else "miss"
    return {**stats, **resumed, "pretrain_cache": cache, "pretrain_dir": str(entry)}


def run_info() -> dict[str, Any]:
    """What is needed to rerun this job: the command line, package versions, the git commit."""
    import importlib.metadata as md

    packages = [
        "ssl_lab",
        "torch",
        "torchvision",
        "pytorch-lightning",
        "hydra-core",
        "omegaconf",
        "torchmetrics",
    ]
    repo = Path(__file__).resolve().parent.parent
    git = (
        subprocess.run(
            ["git", "-C", str(repo), "describe", "--always", "--dirty", "--abbrev=40"],
            capture_output=True,
            text=True,
        )
        if shutil.which("git")
        else None
    )

    def version(name: str) -> str | None:  # None: run from a source tree (PYTHONPATH) instead
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    return {
        "command": shlex.join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "cwd": os.getcwd(),
        "python": sys.version.split()[0],
        "packages": {name: version(name) for name in packages},
        "git_commit": git.stdout.strip() if git is not None and git.returncode == 0 else None,
    }


# Facts of this execution, not results of the config and seed: they go to run_info.json, so the
# same command on the same seed writes the same metrics.json.
EXECUTION_KEYS = (
    "pretrain_dir",
    "pretrain_resumed_from_step",
    "pretrain_seconds",
    "transfer_seconds",
)


def run(cfg: DictConfig, callbacks: tuple[pl.Callback, ...] = ()) -> dict[str, Any]:
    """Run one pretrain -> transfer job; write its metrics (``metrics.json``, the same for the
    same config and seed) and the facts of this execution (``run_info.json``: command, versions,
    timings, where the weights are); return both together. ``callbacks`` join every trainer of
    the job (the clocks of ``benchmarks/gpu_check.py``)."""
    check_config(cfg)  # every key of the right type and in its range
    check_compatible(cfg)
    run_dir = Path(cfg.paths.run_dir)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    backbone = build(cfg, "backbone")  # first: one that cannot be built fails at once
    data = build(cfg, "data", batch_size=per_device_batch_size(cfg))
    data.setup()  # reads the data and picks the labelled subset: bad label counts fail here
    # before pretraining: a bad setting fails at once. A task that writes files of its own
    # (translate) declares run_dir: null and writes them into the run's directory.
    own_files = "run_dir" in cfg.downstream and cfg.downstream.run_dir is None
    downstream = build(cfg, "downstream", **({"run_dir": str(run_dir)} if own_files else {}))
    if not isinstance(downstream, DownstreamTask):
        raise SslLabError(
            f"downstream={cfg.downstream.name}: {cfg.downstream._target_} has no "
            "evaluate(backbone, data, make_trainer) (ssl_lab/downstream/task.py)"
        )
    info = run_info()  # written once nothing in the config or the data has refused the run
    if is_global_zero():
        write_json(run_dir / "run_info.json", info)
    if cfg.compile:  # in place: the state_dict keeps its keys for the hand-off and the cache
        backbone.compile(**({} if cfg.compile is True else {"backend": cfg.compile}))
    loggers = list(instantiate(cfg.logger).values()) if cfg.logger else []
    tracking.log_config(loggers, cfg)
    try:
        with stopped_by_signal(
            "during transfer, before any score was written: run the same command again"
        ):  # pretraining says when it stopped itself
            results = _pretrain_and_transfer(
                cfg, data, backbone, downstream, loggers, run_dir, callbacks
            )
    except BaseException:
        tracking.finish(loggers, None)
        raise
    metrics = {k: v for k, v in results.items() if k not in EXECUTION_KEYS}
    if is_global_zero():
        metrics.update(tracking.wandb_place(loggers))
        write_json(run_dir / "metrics.json", metrics)
        write_json(
            run_dir / "run_info.json",
            {**info, **{k: v for k, v in results.items() if k in EXECUTION_KEYS}},
        )
    tracking.finish(loggers, metrics)
    return results


def _pretrain_and_transfer(
    cfg: DictConfig,
    data: pl.LightningDataModule,
    backbone: nn.Module,
    downstream: DownstreamTask,
    loggers: list,
    run_dir: Path,
    callbacks: tuple[pl.Callback, ...],
) -> dict[str, Any]:
    text = as_text(data)
    pad_id = text.tokenizer.ids["pad"] if text is not None else None
    # data.on_device: the data moves when the first trainer knows its device
    callbacks = (PlaceData(data), *callbacks)
    make_trainer = trainer_factory(
        cfg, loggers, run_dir / "lightning", callbacks, phase="pretraining", pad_id=pad_id
    )
    started = time.perf_counter()
    metrics: dict[str, Any] = {
        **tracking.choices(cfg),
        "n_labels": data.n_labels,
        # none: no pretraining, whatever epochs a preset sets for the pretext tasks it sweeps
        "pretext_epochs": cfg.pretext.epochs if cfg.pretext.get("task") is not None else 0,
        "labelled_subset": subset_digest(data.labelled_indices),  # which examples: seed's choice
        **{
            key: getattr(data, key)
            for key in (
                "skipped_images",
                "skipped_texts",
                "background_images",
                "dropped_boxes",
                "pairs_cut",
            )
            if hasattr(data, key)
        },
        "downstream_epochs": cfg.downstream.get("epochs"),
    }
    if text is not None:
        metrics.update(
            test_overlap_found=text.test_overlap_found,
            test_overlap_removed=text.test_overlap_removed,
            train_test_overlap_removed=text.train_test_overlap_removed,
        )
    if cfg.backbone.checkpoint is not None:
        meta = load_backbone_weights(backbone, cfg.backbone.checkpoint)
        metrics.update(
            pretext=meta.get("pretext", "external"),
            pretext_epochs=meta.get("epochs"),
            backbone_checkpoint=str(cfg.backbone.checkpoint),
            pretrain_cache="external",
            **({"pretext_tokens": meta["tokens"]} if "tokens" in meta else {}),
        )
        log.info("loaded backbone weights from %s", cfg.backbone.checkpoint)
    elif cfg.pretext.task is not None:
        log.info("pretext: %s (%d epochs)", cfg.pretext.name, cfg.pretext.epochs)
        metrics.update(pretrained(cfg, backbone, data, make_trainer, run_dir))
        log.info("pretraining: %s (%s)", metrics["pretrain_cache"], metrics["pretrain_dir"])
        for picture in run_dir.glob("pretext_*.png"):
            tracking.log_picture(loggers, picture)
    else:
        metrics["pretrain_cache"] = "none"
    metrics["pretrain_seconds"] = round(time.perf_counter() - started, 2)

    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    log.info("transfer: %s on %d labelled examples", cfg.downstream.name, data.n_labels)
    transfer_started = time.perf_counter()
    guard = NonFiniteGuard(cfg.nonfinite, "transfer")
    make_trainer = trainer_factory(
        cfg, loggers, run_dir / "lightning", (guard, *callbacks), phase="transfer", pad_id=pad_id
    )
    metrics.update(checked(cfg.downstream.name, downstream.evaluate(backbone, data, make_trainer)))
    draw = getattr(downstream, "save_pictures", None)  # a task's own pictures (detection.png)
    if draw is not None and is_global_zero():
        for picture in draw(run_dir):
            tracking.log_picture(loggers, picture, phase="transfer")
    if cfg.nonfinite == "skip":
        metrics["transfer_nonfinite_skipped"] = guard.skipped
    metrics["transfer_seconds"] = round(time.perf_counter() - transfer_started, 2)
    return metrics
