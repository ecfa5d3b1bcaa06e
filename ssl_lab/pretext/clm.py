"""Next-token prediction (causal language modelling, GPT): predict the future from the past.

The backbone must be causal (``backbone.causal``, which ``pretext=clm`` sets): each position
then sees only the tokens before it, and the loss at position t never depends on later tokens.
Two more readings of the same idea are options of this task, and the backbone carries them out:

- from the recent past (``context=K``): each position attends to at most the K tokens before it;
- from the present, the past (``direction="backward"``): the backbone reads each text from its
  end, so the features at position t have seen tokens t..end, and predict token t-1.
"""

import torch
from torch import nn

from ssl_lab.data.tokenizer import Vocabulary
from ssl_lab.errors import SslLabError
from ssl_lab.metrics import IGNORE
from ssl_lab.pretext.task import PretextTask


class CausalLanguageModel(PretextTask):
    def __init__(
        self,
        feature_dim: int,
        vocab: Vocabulary,
        context: int | None = None,
        direction: str = "forward",
    ) -> None:
        super().__init__()
        if direction not in ("forward", "backward"):
            raise SslLabError(f"pretext.task.direction={direction}: choose from forward, backward")
        self.vocab, self.num_classes = vocab, vocab.size
        self.context, self.direction = context, direction
        self.head = nn.Identity()

    def make_batch(self, batch: tuple[torch.Tensor, ...]):
        """Inputs: the ids; targets: at every position but the last, the next token (forward),
        or at every position but the first, the previous one (backward); ``IGNORE`` where the
        target is padding, or (backward) where the position itself is. Every position is scored
        (padding is the few columns that length-grouped batches keep): picking out the real ones
        would make the GPU report their number to the host at every step."""
        ids = batch[0]
        pad = self.vocab.pad_id
        if self.direction == "backward":
            return ids, torch.where(ids[:, 1:] != pad, ids[:, :-1], IGNORE).flatten()
        following = ids[:, 1:]
        return ids, torch.where(following != pad, following, IGNORE).flatten()

    def forward(self, backbone: nn.Module, ids: torch.Tensor) -> torch.Tensor:
        if not getattr(backbone, "causal", False):
            raise SslLabError(
                "pretext=clm needs a causal backbone (backbone.causal=true): "
                "otherwise every position sees the token it must predict"
            )
        reads = (getattr(backbone, "context", None), getattr(backbone, "direction", "forward"))
        if reads != (self.context, self.direction):
            raise SslLabError(
                f"pretext.task.context={self.context}, direction={self.direction}: the backbone "
                f"reads with context={reads[0]}, direction={reads[1]} (backbone=transformer "
                "follows the task; other backbones read forward over the whole past only)"
            )
        features = backbone.forward_features(ids)
        features = features[:, 1:] if self.direction == "backward" else features[:, :-1]
        return backbone.lm_head(features.flatten(0, 1))[:, : self.vocab.size]
