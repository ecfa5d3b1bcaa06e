"""What a pretrained text backbone predicts: the likeliest tokens for each [MASK] of a sentence
(masked LM), or a continuation of a prompt (causal LM). Used by ``ssl-lab-predict``.

The backbone file carries everything: its weights, the config that built it and its tokenizer.
The config's ``_target_`` is only followed into ``ssl_lab.backbones``: a crafted file cannot make
this import and call anything else.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from hydra.utils import instantiate
from torch import nn

from ssl_lab.backbones.checkpoint import (
    BACKBONE_FILE,
    load_backbone_weights,
    read_config,
    read_meta,
)
from ssl_lab.data.tokenizer import TextTokenizer, load_tokenizer
from ssl_lab.errors import SslLabError


@dataclass
class Candidate:
    token: str
    probability: float


def find_backbone(path: str | Path) -> Path:
    """A backbone file, or the run directory or cache entry that holds (or names) one."""
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if (path / BACKBONE_FILE).is_file():
        return path / BACKBONE_FILE
    info = path / "run_info.json"
    if info.is_file():
        entry = json.loads(info.read_text(encoding="utf-8")).get("pretrain_dir")
        if entry and (Path(entry) / BACKBONE_FILE).is_file():
            return Path(entry) / BACKBONE_FILE
    raise SslLabError(
        f"no backbone at {path}: give a {BACKBONE_FILE}, a cache entry, or a run "
        "directory of a text pretraining"
    )


def load_text_backbone(path: str | Path) -> tuple[nn.Module, TextTokenizer, dict]:
    """(backbone in eval mode, its tokenizer, the facts stored with it)."""
    path = find_backbone(path)
    config = read_config(path)
    if config is None:
        raise SslLabError(f"{path} does not say which backbone it holds (not saved by ssl-lab)")
    target = str(config.get("_target_", ""))
    if not target.startswith("ssl_lab.backbones."):
        raise SslLabError(f"{path}: refused backbone target '{target}' (not in ssl_lab.backbones)")
    tokenizer = load_tokenizer(path, int(config.get("max_length", 512)))
    backbone = instantiate(config)
    load_backbone_weights(backbone, path)
    return backbone.eval(), tokenizer, read_meta(path)


@torch.no_grad()
def fill_masks(
    backbone: nn.Module, tokenizer: TextTokenizer, text: str, top_k: int = 5
) -> list[list[Candidate]]:
    """For each [MASK] of ``text``, in order, the ``top_k`` likeliest ordinary tokens (special
    tokens never fill a gap) with their probabilities under the model."""
    ids = tokenizer.encode([text])
    positions = (ids[0] == tokenizer.ids["mask"]).nonzero().flatten()
    if len(positions) == 0:
        raise SslLabError(f"no {tokenizer.roles['mask']} in: {text}")
    logits = backbone.lm_logits(ids)[0, positions, : tokenizer.vocab_size].float()
    probabilities = logits.softmax(-1)
    probabilities[:, list(tokenizer.vocab.special_ids)] = 0.0
    best = probabilities.topk(min(top_k, tokenizer.vocab_size), dim=-1)
    return [
        [Candidate(tokenizer.token(int(i)), float(p)) for p, i in zip(values, indices)]
        for values, indices in zip(best.values, best.indices)
    ]


@torch.no_grad()
def continue_text(
    backbone: nn.Module,
    tokenizer: TextTokenizer,
    prompt: str,
    max_new_tokens: int = 20,
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
) -> str:
    """``prompt`` continued token by token: greedy (``temperature`` 0) or sampled; stops at the
    end-of-text token or the model's length limit."""
    ids = tokenizer.encode([prompt])[0].tolist()
    stop = {tokenizer.ids.get("sep"), tokenizer.ids["pad"]} - {None}
    while ids and ids[-1] in stop:
        ids.pop()  # the prompt goes on: drop its end-of-text token
    start = len(ids)
    limit = getattr(backbone, "max_length", tokenizer.max_length)
    for _ in range(max_new_tokens):
        if len(ids) >= limit:
            break
        logits = backbone.lm_logits(torch.tensor([ids]))[0, -1, : tokenizer.vocab_size].float()
        logits[[i for i in tokenizer.vocab.special_ids if i not in stop]] = float("-inf")
        if temperature > 0:
            token = int(
                torch.multinomial((logits / temperature).softmax(-1), 1, generator=generator)
            )
        else:
            token = int(logits.argmax())
        if token in stop:
            break
        ids.append(token)
    return tokenizer.decode(ids[start:])
