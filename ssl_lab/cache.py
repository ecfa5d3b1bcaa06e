"""The pretraining cache: a directory per key, built once, safe when sweep jobs race for it.

The key is a hash of exactly the config that determines the pretrained weights (data and its
preprocessing, backbone, pretext task and its optimisation, the trainer settings that change the
math, seed), never the downstream choices or the label budget, so a sweep of 4 pretext x 5
downstream tasks pretrains 4 times.
"""

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from filelock import FileLock
from omegaconf import DictConfig, OmegaConf

# Settings that change what a run shows or which examples keep labels, not the pretrained weights.
_DATA_KEYS_IGNORED = {"labels_per_class", "label_fraction", "fixed_epoch_length", "num_workers",
                      "seed"}
_TRAINER_KEYS_IGNORED = {"enable_checkpointing", "enable_progress_bar", "enable_model_summary",
                         "log_every_n_steps"}


def pretrain_spec(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config that determines the pretrained weights."""
    def plain(node: DictConfig, ignored: set[str] = frozenset()) -> dict[str, Any]:
        return {k: v for k, v in OmegaConf.to_container(node, resolve=True).items()
                if k not in ignored}

    return {"data": plain(cfg.data, _DATA_KEYS_IGNORED), "backbone": plain(cfg.backbone.net),
            "pretext": plain(cfg.pretext), "trainer": plain(cfg.trainer, _TRAINER_KEYS_IGNORED),
            "seed": cfg.seed}


def pretrain_key(cfg: DictConfig) -> str:
    spec = json.dumps(pretrain_spec(cfg), sort_keys=True, default=str)
    return f"{cfg.pretext.name}-{hashlib.sha256(spec.encode()).hexdigest()[:16]}"


def build_once(entry: Path, build: Callable[[Path], None]) -> bool:
    """Make sure directory ``entry`` exists, complete; return True if it already did (a hit).

    ``build`` fills a private staging directory, which is renamed onto ``entry`` only when it is
    complete, so readers never see half an entry. A file lock makes racing jobs wait for the one
    that builds, then reuse its result.
    """
    entry.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(entry) + ".lock"):
        if entry.is_dir():
            return True
        staging = entry.with_name(f".{entry.name}.{os.getpid()}.staging")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            build(staging)
            os.rename(staging, entry)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return False
