"""Masked language modelling (BERT, Devlin et al. 2019): hide some tokens, predict them.

``mask_tokens`` is the corruption, batched on the tensors' device: select ``probability`` of the
tokens that are neither special nor padding; of those, 80% become [MASK], 10% a random
non-special token and 10% stay as they are; labels are the original ids at selected positions
and -100 (ignored) everywhere else.
"""

import math
from collections.abc import Sequence

import torch
from torch import nn

from ssl_lab.data.tokenizer import Vocabulary
from ssl_lab.errors import SslLabError
from ssl_lab.metrics import IGNORE
from ssl_lab.pretext.task import PretextTask

__all__ = ["IGNORE", "MaskedLanguageModel", "capacity", "mask_tokens", "random_pool"]


def random_pool(
    vocab_size: int, excluded: Sequence[int], device: torch.device | str = "cpu"
) -> torch.Tensor:
    """The ids the random branch may draw: every id below ``vocab_size`` except ``excluded``."""
    allowed = torch.ones(vocab_size, dtype=torch.bool)
    allowed[torch.tensor(list(excluded), dtype=torch.long)] = False
    return allowed.nonzero().squeeze(1).to(device)


def capacity(tokens: int, probability: float) -> int:
    """How many of a batch's ``tokens`` positions are scored: the expected selection plus eight
    standard deviations (whole words spread it a little more). Fixed by the batch's shape, so no
    step waits for the GPU to count its selection; a batch selects more about never, and then
    the surplus is masked but not scored."""
    spread = math.sqrt(tokens * probability * (1 - probability))
    return min(tokens, math.ceil(probability * tokens + 8 * spread) + 8)


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
    pool: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels) for masked language modelling; ``input_ids`` is left untouched.

    ``special_token_ids`` (and ``mask_token_id``) are never drawn by the random branch.
    ``word_ids`` (B, L), word index of each token (at most L), selects whole words: all pieces
    of a selected word are selected (whole-word masking), each then takes its own 80/10/10
    branch. ``pool``: ``random_pool`` of those ids, on the device, if the caller keeps one.
    """
    device, shape = input_ids.device, input_ids.shape
    if word_ids is None:
        selected = torch.rand(shape, generator=generator, device=device) < probability
    else:
        per_word = (
            torch.rand((shape[0], shape[1] + 1), generator=generator, device=device) < probability
        )
        selected = per_word.gather(1, word_ids)
    selected &= ~special_tokens_mask.bool()
    labels = torch.where(selected, input_ids, IGNORE)
    branch = torch.rand(shape, generator=generator, device=device)
    if pool is None:
        pool = random_pool(vocab_size, [*special_token_ids, mask_token_id], device)
    random_ids = pool[torch.randint(len(pool), shape, generator=generator, device=device)]
    inputs = torch.where(selected & (branch < 0.8), mask_token_id, input_ids)
    inputs = torch.where(selected & (branch >= 0.8) & (branch < 0.9), random_ids, inputs)
    return inputs, labels


class MaskedLanguageModel(PretextTask):
    """The head is the backbone's own LM head (``lm_head``): it travels with the backbone, so
    prompting can use it after transfer. Scores are computed at the selected positions only,
    gathered into a block of fixed size (``capacity``): a block as large as the selection would
    make the GPU report its size to the host at every step."""

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
        self.register_buffer(
            "pool", random_pool(vocab.size, [*vocab.special_ids, vocab.mask_id]), persistent=False
        )

    def word_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """Index of the word each token belongs to: a new word starts at every piece that does not
        continue the one before."""
        return (~torch.isin(ids, self.continuation_ids)).long().cumsum(1)

    def make_batch(self, batch: tuple[torch.Tensor, ...]):
        """Inputs: the corrupted ids and the flat positions to score, selected ones first (in
        order), then unselected ones filling the block; targets: the original id at each
        selected position, ``IGNORE`` at the filling."""
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
            pool=self.pool,
        )
        selected = labels != IGNORE
        # a batch of very short texts may select nothing: then score its first real token
        first = (~special).cumsum(1).eq(1) & ~special
        first[1:] = False
        selected = (selected | (first & ~selected.any())).flatten()
        block = capacity(selected.numel(), self.probability)
        positions = torch.argsort((~selected).to(torch.uint8), stable=True)[:block]
        targets = torch.where(selected[positions], ids.flatten()[positions], IGNORE)
        return (inputs, positions), targets

    def forward(
        self, backbone: nn.Module, inputs: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        ids, positions = inputs
        features = backbone.forward_features(ids).flatten(0, 1).index_select(0, positions)
        # scores of the tokenizer's tokens (the embedding table may have spare rows)
        return backbone.lm_head(features)[:, : self.vocab.size]
