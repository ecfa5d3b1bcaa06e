"""Masked language modelling (BERT, Devlin et al. 2019): hide some tokens, predict them.

``mask_tokens`` is the corruption, batched on the tensors' device: select ``probability`` of the
tokens that are neither special nor padding; of those, 80% become [MASK], 10% a random
non-special token and 10% stay as they are; labels are the original ids at selected positions
and -100 (ignored) everywhere else.
"""

from collections.abc import Sequence

import torch
from torch import nn

from ssl_lab.data.tokenizer import Vocabulary
from ssl_lab.errors import SslLabError
from ssl_lab.pretext.task import PretextTask

IGNORE = -100


def mask_tokens(
    input_ids: torch.Tensor,
    special_tokens_mask: torch.Tensor,
    vocab_size: int,
    mask_token_id: int,
    probability: float = 0.15,
    generator: torch.Generator | None = None,
    *,
    special_token_ids: Sequence[int] = (),
    word_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels) for masked language modelling; ``input_ids`` is left untouched.

    ``special_token_ids`` (and ``mask_token_id``) are never drawn by the random branch.
    ``word_ids`` (B, L), word index of each token, selects whole words: all pieces of a selected
    word are selected (whole-word masking), each then takes its own 80/10/10 branch.
    """
    device, shape = input_ids.device, input_ids.shape
    if word_ids is None:
        selected = torch.rand(shape, generator=generator, device=device) < probability
    else:
        per_word = (
            torch.rand((shape[0], int(word_ids.max()) + 1), generator=generator, device=device)
            < probability
        )
        selected = per_word.gather(1, word_ids)
    selected &= ~special_tokens_mask.bool()
    labels = torch.where(selected, input_ids, IGNORE)
    branch = torch.rand(shape, generator=generator, device=device)
    allowed = torch.ones(vocab_size, dtype=torch.bool, device=device)
    allowed[torch.tensor([*special_token_ids, mask_token_id], dtype=torch.long, device=device)] = (
        False
    )
    pool = allowed.nonzero().squeeze(1)
    random_ids = pool[torch.randint(len(pool), shape, generator=generator, device=device)]
    inputs = torch.where(selected & (branch < 0.8), mask_token_id, input_ids)
    inputs = torch.where(selected & (branch >= 0.8) & (branch < 0.9), random_ids, inputs)
    return inputs, labels


class MaskedLanguageModel(PretextTask):
    """The head is the backbone's own LM head (``lm_head``): it travels with the backbone, so
    prompting can use it after transfer. Scores are computed at the selected positions only."""

    def __init__(
        self,
        feature_dim: int,
        vocab: Vocabulary,
        probability: float = 0.15,
        whole_word: bool = False,
    ) -> None:
        super().__init__()
        if vocab.mask_id < 0:
            raise SslLabError(
                "pretext=mlm needs a tokenizer with a mask token (GPT-style "
                "tokenizers have none: train a causal model with pretext=clm)"
            )
        if whole_word and not vocab.continuation_ids:
            raise SslLabError(
                "pretext.task.whole_word=true needs a WordPiece tokenizer (its '##' pieces "
                "mark words): set backbone.tokenizer.kind=wordpiece"
            )
        self.vocab, self.probability, self.whole_word = vocab, probability, whole_word
        self.num_classes = vocab.size
        self.head = nn.Identity()
        self.register_buffer("special_ids", torch.tensor(vocab.special_ids), persistent=False)
        self.register_buffer(
            "continuation_ids",
            torch.tensor(vocab.continuation_ids, dtype=torch.long),
            persistent=False,
        )

    def word_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Index of the word each token belongs to: a new word starts at every piece that does not
        continue the one before."""
        return (~torch.isin(ids, self.continuation_ids)).long().cumsum(1)

    def make_batch(self, batch: tuple[torch.Tensor, ...]):
        ids = batch[0]
        special = torch.isin(ids, self.special_ids)
        inputs, labels = mask_tokens(
            ids,
            special,
            self.vocab.size,
            self.vocab.mask_id,
            self.probability,
            special_token_ids=self.vocab.special_ids,
            word_ids=self.word_ids(ids) if self.whole_word else None,
        )
        selected = labels != IGNORE
        if not selected.any():  # a batch of very short texts: score one token rather than none
            selected = (~special).cumsum(1).eq(1) & ~special
            selected[1:] = False
        return (inputs, selected), ids[selected]

    def forward(
        self, backbone: nn.Module, inputs: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        ids, selected = inputs
        # scores of the tokenizer's tokens (the embedding table may have spare rows)
        return backbone.lm_head(backbone.forward_features(ids)[selected])[:, : self.vocab.size]
