"""Next-token prediction (causal language modelling, GPT): predict the future from the past.

The backbone must be causal (``backbone.causal``, which ``pretext=clm`` sets): each position
then sees only the tokens before it, and the loss at position t never depends on later tokens.
"""

import torch
from torch import nn

from ssl_lab.data.tokenizer import Vocabulary
from ssl_lab.errors import SslLabError
from ssl_lab.pretext.task import PretextTask


class CausalLanguageModel(PretextTask):
    def __init__(self, feature_dim: int, vocab: Vocabulary) -> None:
        super().__init__()
        self.vocab, self.num_classes = vocab, vocab.size
        self.head = nn.Identity()

    def make_batch(self, batch: tuple[torch.Tensor, ...]):
        """Inputs: the ids and which positions have a real next token; targets: those tokens."""
        ids = batch[0]
        scored = ids[:, 1:] != self.vocab.pad_id
        return (ids, scored), ids[:, 1:][scored]

    def forward(
        self, backbone: nn.Module, inputs: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        if not getattr(backbone, "causal", False):
            raise SslLabError(
                "pretext=clm needs a causal backbone (backbone.causal=true): "
                "otherwise every position sees the token it must predict"
            )
        ids, scored = inputs
        features = backbone.forward_features(ids)[:, :-1][scored]
        return backbone.lm_head(features)[:, : self.vocab.size]  # the tokenizer's tokens only
