"""The pretraining cache key. Entries are directories built by ``atomic.build_once``, so sweep
jobs that race for one key train once.

The key is a hash of exactly the config that determines the pretrained weights (data and its
preprocessing, backbone, pretext task and its optimisation, the trainer settings that change the
math, seed), never the downstream choices or the label budget, so a sweep of 4 pretext x 5
downstream tasks pretrains 4 times.
"""

import hashlib
import json
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ssl_lab.build import object_config

# Settings that change what a run shows or which examples keep labels, not the pretrained weights.
_DATA_KEYS_IGNORED = {
    "labels_per_class",
    "label_fraction",
    "labelled_images",
    "fixed_epoch_length",
    "num_workers",
    "on_device",
    "seed",
    "augment",
    "prompt",
    "train_pairs",  # translation: which pairs the transfer trains on, and in which direction;
    "direction",  # pretraining reads both sides alike
}
READING_DEFAULTS = {"context": None, "direction": "forward"}
_TRAINER_KEYS_IGNORED = {
    "enable_checkpointing",
    "enable_progress_bar",
    "enable_model_summary",
    "log_every_n_steps",
}


def pretrain_spec(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config that determines the pretrained weights."""

    def plain(node: DictConfig, ignored: set[str] = frozenset()) -> dict[str, Any]:
        return {
            k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k not in ignored
        }

    spec = {
        "data": plain(cfg.data, _DATA_KEYS_IGNORED),
        "backbone": object_config(cfg, "backbone"),
        "pretext": plain(cfg.pretext),
        "trainer": plain(cfg.trainer, _TRAINER_KEYS_IGNORED),
        "seed": cfg.seed,
    }
    # how a causal model reads (pretext=clm's context and direction, which the backbone follows):
    # left out at their defaults, so every entry made before these settings keeps its key
    for node in (spec["backbone"], spec["pretext"].get("task") or {}):
        for key, default in READING_DEFAULTS.items():
            if key in node and node[key] == default:
                del node[key]
    if spec["pretext"].get("snapshot_epochs", 0) is None:
        # the schema's default: left out, so every entry made before the schema keeps its key
        del spec["pretext"]["snapshot_epochs"]
    # nonfinite=skip can change the weights; a run that stops at a NaN makes no entry at all, so
    # the default leaves the key (and every existing entry) as it was
    if cfg.nonfinite != "stop":
        spec["nonfinite"] = cfg.nonfinite
    return spec


def spec_key(spec: dict[str, Any]) -> str:
    """The entry name of a spec (also of one read back from an entry's pretrain_config.yaml)."""
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()
    return f"{spec['pretext']['name']}-{digest[:16]}"


def pretrain_key(cfg: DictConfig) -> str:
    return spec_key(pretrain_spec(cfg))
