"""Objects from config groups.

One convention for every group: its root is the object it builds (``_target_`` at the root, the
constructor's arguments beside it). A few keys at the root are the framework's own facts about
the choice (its ``name``, ``modality``, how long a pretext trains, where a checkpoint is) and are
read by the pipeline, never passed to the constructor: ``PIPELINE_KEYS`` lists them per group.
"""

from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

PIPELINE_KEYS: dict[str, tuple[str, ...]] = {
    "data": ("boxes",),
    "backbone": ("name", "modality", "checkpoint", "tokenizer", "pretrained"),
    "pretext": ("name", "modality", "epochs", "language_model", "causal", "snapshot_epochs"),
    "downstream": (
        "name",
        "modality",
        "requires_pretext",
        "requires_language_model",
        "trains_language_model",
        "requires_boxes",
        "requires_pairs",
    ),
}


def object_config(cfg: DictConfig, group: str) -> dict[str, Any]:
    """The resolved constructor config of ``cfg.<group>``: ``_target_`` and its arguments."""
    node = OmegaConf.to_container(cfg[group], resolve=True)
    return {k: v for k, v in node.items() if k not in PIPELINE_KEYS[group]}


def build(cfg: DictConfig, group: str, **kwargs: Any) -> Any:
    """The object of ``cfg.<group>``; ``kwargs`` are arguments only the pipeline has (the
    backbone, a batch size per process) and replace any config key of the same name."""
    spec = {k: v for k, v in object_config(cfg, group).items() if k not in kwargs}
    return instantiate(spec, **kwargs)
