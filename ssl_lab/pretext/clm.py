"""Next-token prediction (causal language modelling, GPT): predict the future from the past.

The backbone must be causal (``backbone.causal``, which ``pretext=clm`` sets): each position
then sees only the tokens before it, and the loss at position t never depends on later tokens.
"""

import torch
from torch import nn

from ssl_lab.data.tokenizer import Vocabulary
from ssl_lab.errors import SslLabError
from ssl_lab.metrics import IGNORE
from ssl_lab.pretext.task import PretextTask


class CausalLanguageModel(PretextTask):
    def __init__(self, feature_dim: int, vocab: Vocabulary) -> None:
        super().__init__()
        self.vocab, self.num_classes = vocab, vocab.size
        self.head = nn.Identity()

    def make_batch(self, batch: tuple[torch.Tensor, ...]):
        """Inputs: the ids; targets: the next token at every position but the last, ``IGNORE``
        where that is padding. Every position is scored (padding is the few columns that
        length-grouped batches keep): picking out the real ones would make the GPU report their
        number to the host at every step."""
        ids = batch[0]
        following = ids[:, 1:]
        return ids, torch.where(following != self.vocab.pad_id, following, IGNORE).flatten()

    def forward(self, backbone: nn.Module, ids: torch.Tensor) -> torch.Tensor:
        if not getattr(backbone, "causal", False):
            raise SslLabError(
                "pretext=clm needs a causal backbone (backbone.causal=true): "
                "otherwise every position sees the token it must predict"
            )
        features = backbone.forward_features(ids)[:, :-1].flatten(0, 1)
        return backbone.lm_head(features)[:, : self.vocab.size]  # the tokenizer's tokens only
