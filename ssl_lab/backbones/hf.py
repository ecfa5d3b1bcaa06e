"""Any local Hugging Face masked-LM or causal-LM directory as a text backbone (``transformers``
is an optional extra: ``pip install 'ssl_lab[hf]'``), so a real pretrained model goes through
the same transfer tasks, prompting and continued mlm/clm pretraining as ours. Nothing is
downloaded: the directory must hold the model and its tokenizer (``save_pretrained``)."""

from pathlib import Path

import torch
from torch import nn

from ssl_lab.backbones.transformer import POOLINGS, pool_tokens
from ssl_lab.errors import SslLabError


def _transformers():
    try:
        import transformers
    except ImportError:
        raise SslLabError("backbone=hf needs transformers: pip install 'ssl_lab[hf]'") from None
    return transformers


class HuggingFaceBackbone(nn.Module):
    def __init__(self, path: str, pooling: str = "mean") -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise SslLabError(f"backbone.net.pooling={pooling}: choose from {', '.join(POOLINGS)}")
        directory = Path(path).expanduser()
        if not (directory / "config.json").is_file():
            raise SslLabError(f"backbone.path={path}: not a Hugging Face model directory "
                              "(no config.json)")
        hf = _transformers()
        config = hf.AutoConfig.from_pretrained(str(directory), local_files_only=True)
        architectures = " ".join(config.architectures or [])
        self.causal = "CausalLM" in architectures or "LMHead" in architectures
        auto = hf.AutoModelForCausalLM if self.causal else hf.AutoModelForMaskedLM
        self.model = auto.from_pretrained(str(directory), local_files_only=True)
        self.pooling = pooling
        self.pad_id = config.pad_token_id if config.pad_token_id is not None else config.eos_token_id
        self.out_dim = config.hidden_size
        if self._head() is None:
            raise SslLabError(f"backbone.path={path}: found no language-model head (cls or lm_head)")

    def blocks(self) -> list[nn.Module]:
        """The token embeddings, then each layer (the longest ModuleList of the base model)."""
        base = self.model.base_model
        layers = max((m for m in base.modules() if isinstance(m, nn.ModuleList)), key=len)
        return [base.get_input_embeddings(), *layers]

    def forward_features(self, ids: torch.Tensor) -> torch.Tensor:
        mask = (ids != self.pad_id).long()
        return self.model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return pool_tokens(self.forward_features(ids), ids, self.pad_id, self.pooling)

    def _head(self) -> nn.Module | None:
        """BERT keeps its LM head in ``cls``, RoBERTa and GPT-style models in ``lm_head``."""
        return getattr(self.model, "cls", None) or getattr(self.model, "lm_head", None)

    def lm_head(self, features: torch.Tensor) -> torch.Tensor:
        return self._head()(features)

    def lm_logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.forward_features(ids))
