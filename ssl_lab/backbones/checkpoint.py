"""The hand-off between pretraining and transfer: backbone weights in one safetensors file.

The file holds the backbone's ``state_dict`` and, as string metadata, the config that built the
backbone and facts about how it was made (pretext, data, seed). Pretext and downstream code never
meet; this file is all that passes between them. Loading never unpickles code: safetensors files
hold only tensors, and any other file is read with ``torch.load(weights_only=True)``.
"""

import json
import pickle
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file
from torch import nn

from ssl_lab.atomic import atomic_path
from ssl_lab.errors import SslLabError

BACKBONE_FILE = "backbone.safetensors"  # its name in a pretraining's directory
_CONFIG_KEY = "ssl_lab.backbone"
_META_KEY = "ssl_lab.meta"


def save_backbone(
    backbone: nn.Module,
    path: Path,
    config: dict[str, Any],
    meta: dict[str, Any],
    extra: dict[str, str] | None = None,
) -> None:
    """Write atomically: a reader never sees a half-written file under ``path``. ``extra``:
    more string metadata that must travel with the weights (a text backbone's tokenizer).
    Tensors are copied: safetensors refuses tied weights that share memory (HF LM heads)."""
    state = {
        k: v.detach().cpu().clone(memory_format=torch.contiguous_format)
        for k, v in backbone.state_dict().items()
    }
    with atomic_path(path) as tmp:
        save_file(
            state,
            str(tmp),
            metadata={
                _CONFIG_KEY: json.dumps(config),
                _META_KEY: json.dumps(meta),
                **(extra or {}),
            },
        )


def _metadata(path: Path) -> dict[str, str]:
    if Path(path).suffix != ".safetensors":
        return {}
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except (SafetensorError, OSError) as err:
        raise SslLabError(
            f"backbone.checkpoint: {path} is not a readable safetensors file ({err})"
        ) from None


def read_meta(path: Path) -> dict[str, Any]:
    """The facts stored beside the weights (``{}`` for files that are not ours)."""
    return json.loads(_metadata(path).get(_META_KEY, "{}"))


def read_config(path: Path) -> dict[str, Any] | None:
    """The config that built the stored backbone (None for files that are not ours)."""
    stored = _metadata(path).get(_CONFIG_KEY)
    return json.loads(stored) if stored is not None else None


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise SslLabError(
                f"backbone.checkpoint: {path} is not a readable safetensors file ({err})"
            ) from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SslLabError(
            f"backbone.checkpoint: refused {path}: not a plain tensor checkpoint "
            f"(weights-only load failed: {first})"
        ) from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]  # a Lightning checkpoint
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise SslLabError(f"backbone.checkpoint: {path} does not hold a state_dict of tensors")
    if any(k.startswith("backbone.") for k in obj):
        obj = {k[len("backbone.") :]: v for k, v in obj.items() if k.startswith("backbone.")}
    return obj


def load_backbone_weights(backbone: nn.Module, path: str | Path) -> dict[str, Any]:
    """Load weights into ``backbone`` (built from the current config); return the stored facts.

    Any mismatch of keys or shapes is refused with one line naming them, so a checkpoint for another
    backbone never loads half-way.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise SslLabError(f"backbone.checkpoint: no such file: {path}")
    state = _read_state(path)
    own = backbone.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and state[k].shape != own[k].shape
    ]
    if missing or unexpected or wrong:
        parts = [
            f"{label}: {', '.join(items[:3])}" + (" ..." if len(items) > 3 else "")
            for label, items in (
                ("shape mismatch", wrong),
                ("missing keys", missing),
                ("unexpected keys", unexpected),
            )
            if items
        ]
        made_for = read_meta(path).get("backbone")
        hint = f" (it was saved for backbone={made_for})" if made_for else ""
        raise SslLabError(
            f"backbone.checkpoint: {path} does not fit this backbone{hint}: " + "; ".join(parts)
        )
    backbone.load_state_dict(state)
    return read_meta(path)
