"""A small Transformer encoder over token ids (BERT-style; ``causal=True`` makes it GPT-style).

A causal backbone reads in one of the three ways of predicting a hidden part of a sequence:
from the whole past (the default), from the recent past (``context=K``: a banded mask, each
position attends to itself and the K tokens before it; stacked layers reach back depth x K), or
from the present back to the past (``direction="backward"``: the real tokens of each row are
reversed before the layers and the features put back in place, so the features at position t
have seen tokens t..end). The backbone owns the reading, so a transfer runs it the way it was
pretrained.

Besides the backbone contract (``forward`` -> pooled features, ``forward_features`` -> one
feature per token, ``blocks()``), a text backbone carries its language-model head
(``lm_logits``): prompting reads it after transfer, so it must travel in the hand-off file with
the encoder. Its output weights are tied to the token embeddings, as in BERT and GPT-2.
"""

import torch
from torch import nn

from ssl_lab.backbones.schema import DIRECTIONS, POOLINGS
from ssl_lab.errors import SslLabError


def banded_causal_mask(
    length: int, context: int | None, device: torch.device | None = None
) -> torch.Tensor:
    """(L, L) float mask, 0 where query i may attend to key j, -inf elsewhere: j <= i, and with
    ``context`` also j >= i - context (None: the whole past)."""
    i = torch.arange(length, device=device).unsqueeze(1)
    j = torch.arange(length, device=device).unsqueeze(0)
    allowed = j <= i
    if context is not None:
        allowed &= j >= i - context
    return torch.zeros(length, length, device=device).masked_fill(~allowed, float("-inf"))


def reverse_real_tokens(ids: torch.Tensor, pad_id: int) -> torch.Tensor:
    """(B, L) index that reverses each row's real tokens in place, padding (at the right) kept
    where it is: ``x.gather(1, index)`` reverses, and applied twice gives ``x`` back."""
    positions = torch.arange(ids.shape[1], device=ids.device).unsqueeze(0)
    lengths = (ids != pad_id).sum(1, keepdim=True)
    return torch.where(positions < lengths, lengths - 1 - positions, positions)


def pool_tokens(
    features: torch.Tensor, ids: torch.Tensor, pad_id: int, pooling: str
) -> torch.Tensor:
    """(B, L, D) token features -> (B, D): the first token's ([CLS]), the last real token's (all
    that a causal model has seen), or the mean over real (non-padding) tokens."""
    if pooling == "cls":
        return features[:, 0]
    real = ids != pad_id
    if pooling == "last":
        return features[torch.arange(len(ids), device=ids.device), real.long().cumsum(1).argmax(1)]
    weights = real.unsqueeze(-1).to(features.dtype)
    return (features * weights).sum(1) / weights.sum(1).clamp_min(1.0)


class TextTransformer(nn.Module):
    def __init__(
        self,
        vocab_size: int,
        max_length: int = 128,
        width: int = 256,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: int = 4,
        dropout: float = 0.0,
        causal: bool = False,
        pooling: str = "mean",
        pad_id: int = 0,
        context: int | None = None,
        direction: str = "forward",
    ) -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise SslLabError(f"backbone.pooling={pooling}: choose from {', '.join(POOLINGS)}")
        if direction not in DIRECTIONS:
            raise SslLabError(
                f"backbone.direction={direction}: choose from {', '.join(DIRECTIONS)}"
            )
        if not causal and (context is not None or direction != "forward"):
            raise SslLabError(
                f"backbone.context={context}, backbone.direction={direction}: a reading of a "
                "causal model, but backbone.causal=false"
            )
        if context is not None and context < 1:
            raise SslLabError(f"backbone.context={context}: at least 1 (null: the whole past)")
        self.context, self.direction = context, direction
        self.causal, self.pooling, self.pad_id, self.max_length = (
            causal,
            pooling,
            pad_id,
            max_length,
        )
        self.out_dim = width
        self.tokens = nn.Embedding(vocab_size, width)
        self.positions = nn.Embedding(max_length, width)
        self.embedding_norm = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                width,
                heads,
                mlp_ratio * width,
                dropout,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(width)
        self.lm_transform = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.LayerNorm(width))
        self.lm_bias = nn.Parameter(torch.zeros(vocab_size))
        nn.init.normal_(self.tokens.weight, std=0.02)
        nn.init.normal_(self.positions.weight, std=0.02)

    def blocks(self) -> list[nn.Module]:
        """Input to output: the embeddings, each layer, the final norm (the LM head is in none:
        classification does not use it)."""
        embeddings = nn.ModuleList([self.tokens, self.positions, self.embedding_norm])
        return [embeddings, *self.layers, self.norm]

    def forward_features(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, L) token ids -> (B, L, width)."""
        length = ids.shape[1]
        if length > self.max_length:
            raise ValueError(f"{length} tokens, more than max_length={self.max_length}")
        order = None
        if self.direction == "backward":
            order = reverse_real_tokens(ids, self.pad_id)
            ids = ids.gather(1, order)
        positions = torch.arange(length, device=ids.device)
        x = self.dropout(self.embedding_norm(self.tokens(ids) + self.positions(positions)))
        if self.context is not None:
            # Padding sits right of every real token, so a causal row never reaches it; a
            # padding mask too would leave padding rows beyond the band with nothing to attend
            # to (NaN, which then leaks through the zero weights of the next layer).
            mask = banded_causal_mask(length, self.context, ids.device).to(x.dtype)
            for layer in self.layers:
                x = layer(x, src_mask=mask)
        else:
            padding = torch.zeros(ids.shape, dtype=x.dtype, device=ids.device).masked_fill_(
                ids == self.pad_id, float("-inf")
            )
            mask = (
                nn.Transformer.generate_square_subsequent_mask(
                    length, device=ids.device, dtype=x.dtype
                )
                if self.causal
                else None
            )
            for layer in self.layers:
                x = layer(x, src_mask=mask, src_key_padding_mask=padding, is_causal=self.causal)
        x = self.norm(x)
        if order is not None:  # features back at the positions of their tokens
            x = x.gather(1, order.unsqueeze(-1).expand_as(x))
        return x

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        features = self.forward_features(ids)
        if self.pooling == "last" and self.direction == "backward":
            return features[:, 0]  # read backward, the first token is the one that saw all
        return pool_tokens(features, ids, self.pad_id, self.pooling)

    def lm_head(self, features: torch.Tensor) -> torch.Tensor:
        """(..., width) token features -> (..., vocab) scores of the token at (masked LM) or after
        (causal LM) each position. Pretext tasks call it on the positions they score only."""
        return self.lm_transform(features) @ self.tokens.weight.T + self.lm_bias

    def lm_logits(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, L) token ids -> (B, L, vocab)."""
        return self.lm_head(self.forward_features(ids))
