"""Any local Hugging Face masked-LM or causal-LM directory as a text backbone (``transformers``
is an optional extra: ``pip install 'ssl_lab[hf]'``), so a real pretrained model goes through
the same transfer tasks, prompting and continued mlm/clm pretraining as ours. Nothing is
downloaded: the directory must hold the model and its tokenizer (``save_pretrained``)."""

from pathlib import Path

import torch
from torch import nn

from ssl_lab.backbones.transformer import POOLINGS, pool_tokens
from ssl_lab.data.tokenizer import hf_roles, load_hf_tokenizer
from ssl_lab.errors import SslLabError


def _transformers():
    try:
        import transformers
    except ImportError:
        raise SslLabError("backbone=hf needs transformers: pip install 'ssl_lab[hf]'") from None
    transformers.utils.logging.disable_progress_bar()  # runs log one line per event, no bars
    return transformers


class HuggingFaceBackbone(nn.Module):
    """``causal``: None takes the model as it is; True or False refuses a model that is not so
    (``pretext=clm`` sets True: a masked model would see the token it must predict)."""

    def __init__(self, path: str, pooling: str = "mean", causal: bool | None = None) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise SslLabError(f"backbone.pooling={pooling}: choose from {', '.join(POOLINGS)}")
        directory = Path(path).expanduser()
        if not (directory / "config.json").is_file():
            raise SslLabError(
                f"backbone.path={path}: not a Hugging Face model directory (no config.json)"
            )
        hf = _transformers()
        config = hf.AutoConfig.from_pretrained(str(directory), local_files_only=True)
        architectures = " ".join(config.architectures or [])
        self.causal = "CausalLM" in architectures or "LMHead" in architectures
        if causal is not None and causal != self.causal:
            kinds = ("masked", "causal") if causal else ("causal", "masked")
            raise SslLabError(
                f"backbone.path={path} is a {kinds[0]} language model "
                f"({architectures or config.model_type}), but the pretext needs a "
                f"{kinds[1]} one (backbone.causal={str(causal).lower()})"
            )
        tokenizer = load_hf_tokenizer(directory)  # pad as the data does: GPT-style with end-of-text
        pad = hf_roles(tokenizer)["pad"]
        if pad is None:
            raise SslLabError(
                f"backbone.path={path}: its tokenizer has no padding or end-of-text token"
            )
        self.pad_id = tokenizer.convert_tokens_to_ids(pad)
        auto = hf.AutoModelForCausalLM if self.causal else hf.AutoModelForMaskedLM
        try:
            self.model = auto.from_pretrained(str(directory), local_files_only=True)
        except (OSError, ValueError) as err:
            raise SslLabError(
                f"backbone.path={path}: transformers cannot load it as "
                f"{auto.__name__} ({str(err).strip().splitlines()[0]})"
            ) from None
        # float32 whatever the stored dtype (transformers 5 keeps it): the trainer's precision
        # decides; and in training mode, like any new module (from_pretrained sets eval mode)
        self.model.float().train()
        self.pooling = pooling
        self.out_dim = config.hidden_size
        if self._head() is None:
            raise SslLabError(
                f"backbone.path={path}: found no language-model head (cls or lm_head)"
            )

    def blocks(self) -> list[nn.Module]:
        """The token embeddings, then each layer: the ModuleList of the base model as long as
        the config's layer count (not, say, a longer list of a mixture-of-experts layer)."""
        base, depth = self.model.base_model, self.model.config.num_hidden_layers
        layers = max(
            (m for m in base.modules() if isinstance(m, nn.ModuleList)),
            key=lambda m: (len(m) == depth, len(m)),
        )
        return [base.get_input_embeddings(), *layers]

    def forward_features(self, ids: torch.Tensor) -> torch.Tensor:
        mask = (ids != self.pad_id).long()
        return self.model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return pool_tokens(self.forward_features(ids), ids, self.pad_id, self.pooling)

    def _head(self) -> nn.Module | None:
        """BERT keeps its LM head in ``cls``, RoBERTa and GPT-style models in ``lm_head``."""
        for name in ("cls", "lm_head"):
            head = getattr(self.model, name, None)
            if isinstance(head, nn.Module):
                return head
        return None

    def lm_head(self, features: torch.Tensor) -> torch.Tensor:
        return self._head()(features)

    def lm_logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm_head(self.forward_features(ids))
