"""The exact statistics of BERT's corruption, on more than 100k tokens."""

import pytest
import torch

from ssl_lab.data.tokenizer import Vocabulary
from ssl_lab.pretext.mlm import IGNORE, MaskedLanguageModel, capacity, mask_tokens

VOCAB, MASK, SPECIAL = 1000, 4, (0, 1, 2, 3, 4)


def _batch(rows: int = 2000, length: int = 128, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Ids like a padded text batch: [CLS] tokens [SEP] [PAD]..., lengths 20..128."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (rows, length), generator=g)
    lengths = torch.randint(20, length + 1, (rows,), generator=g)
    positions = torch.arange(length)
    ids[positions >= lengths[:, None]] = 0
    ids[:, 0] = 2
    ids[torch.arange(rows), lengths - 1] = 3
    return ids, torch.isin(ids, torch.tensor(SPECIAL))


def _scored(ids: torch.Tensor, positions: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Which tokens of ``ids`` a task's block of ``positions`` scores (the others fill it)."""
    scored = torch.zeros(ids.numel(), dtype=torch.bool)
    scored[positions[targets != IGNORE]] = True
    return scored.view_as(ids)


def test_the_task_scores_every_selected_token_in_a_block_fixed_by_the_batch_shape():
    ids, special = _batch(rows=64)
    task = MaskedLanguageModel(8, Vocabulary(VOCAB, 0, MASK, SPECIAL))
    sizes = set()
    for seed in range(5):
        torch.manual_seed(seed)
        (inputs, positions), targets = task.make_batch((ids, None))
        selected = (inputs != ids) | _scored(ids, positions, targets)
        # every corrupted token is scored, with its original id, in order
        assert torch.equal(targets[targets != IGNORE], ids[_scored(ids, positions, targets)])
        assert not (selected & ~_scored(ids, positions, targets)).any()
        assert abs((targets != IGNORE).sum() / (~special).sum() - 0.15) < 0.02
        sizes.add(len(positions))
    assert sizes == {capacity(ids.numel(), 0.15)} and len(positions) < ids.numel() / 4


def test_a_batch_that_selects_nothing_scores_its_first_real_token():
    ids = torch.tensor([[2, 7, 3, 0], [2, 3, 0, 0]])  # [CLS] t [SEP], [CLS] [SEP]
    task = MaskedLanguageModel(8, Vocabulary(VOCAB, 0, MASK, SPECIAL), probability=0.0)
    (inputs, positions), targets = task.make_batch((ids, None))
    assert torch.equal(inputs, ids) and targets[targets != IGNORE].tolist() == [7]
    assert positions[targets != IGNORE].tolist() == [1]


def test_mask_tokens_selects_15_percent_and_splits_80_10_10():
    ids, special = _batch()
    assert (~special).sum() > 100_000
    inputs, labels = mask_tokens(
        ids,
        special,
        VOCAB,
        MASK,
        generator=torch.Generator().manual_seed(1),
        special_token_ids=SPECIAL,
    )
    selected = labels != IGNORE
    rate = selected.sum() / (~special).sum()
    assert abs(rate - 0.15) < 0.005
    masked = (inputs == MASK) & selected
    kept = (inputs == ids) & selected
    replaced = selected & ~masked & ~kept
    n = selected.sum()
    assert abs(masked.sum() / n - 0.8) < 0.01
    assert abs(kept.sum() / n - 0.1) < 0.01  # a random draw equal to the original: 1 in 995
    assert abs(replaced.sum() / n - 0.1) < 0.01
    assert not (selected & special).any()  # never a special or pad token
    assert not torch.isin(inputs[replaced], torch.tensor(SPECIAL)).any()  # random: non-special
    assert torch.equal(labels[selected], ids[selected])  # labels: the originals ...
    assert (labels[~selected] == IGNORE).all()  # ... and -100 everywhere else
    assert torch.equal(inputs[~selected], ids[~selected])  # unselected tokens untouched


def test_mask_tokens_is_reproducible_with_a_generator_and_leaves_its_input_alone():
    ids, special = _batch(rows=50)
    before = ids.clone()
    a = mask_tokens(ids, special, VOCAB, MASK, generator=torch.Generator().manual_seed(3))
    b = mask_tokens(ids, special, VOCAB, MASK, generator=torch.Generator().manual_seed(3))
    c = mask_tokens(ids, special, VOCAB, MASK, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])
    assert torch.equal(ids, before)


def test_whole_word_masking_selects_every_piece_of_a_word_or_none():
    ids, special = _batch(rows=400)
    continuation = torch.arange(500, VOCAB)  # pretend ids >= 500 are "##" pieces
    task = MaskedLanguageModel(
        8, Vocabulary(VOCAB, 0, MASK, SPECIAL, tuple(continuation.tolist())), whole_word=True
    )
    words = task.word_ids(ids)
    torch.manual_seed(0)
    (inputs, positions), targets = task.make_batch((ids, None))
    selected = _scored(ids, positions, targets)
    for row in range(len(ids)):
        for word in words[row][selected[row]].unique():
            members = (words[row] == word) & ~special[row]
            assert selected[row][members].all()
    assert abs(selected.sum() / (~special).sum() - 0.15) < 0.03  # per word: about 15% of tokens
    assert torch.equal(targets[targets != IGNORE], ids[selected])


def test_mask_rates_match_hugging_face_data_collator():
    pytest.importorskip("transformers")
    from tokenizers import Tokenizer, models
    from transformers import DataCollatorForLanguageModeling, PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])}
    vocab.update({f"t{i}": i for i in range(5, VOCAB)})
    hf = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel(vocab, "[UNK]")),
        pad_token="[PAD]",
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )
    ids, special = _batch()
    torch.manual_seed(5)
    collated = DataCollatorForLanguageModeling(hf, mlm_probability=0.15)(
        [{"input_ids": row} for row in ids.tolist()]
    )
    ours = mask_tokens(
        ids,
        special,
        VOCAB,
        MASK,
        generator=torch.Generator().manual_seed(5),
        special_token_ids=SPECIAL,
    )
    for inputs, labels in ((collated["input_ids"], collated["labels"]), ours):
        selected = labels != IGNORE
        n = selected.sum()
        assert abs(n / (~special).sum() - 0.15) < 0.005
        assert abs(((inputs == MASK) & selected).sum() / n - 0.8) < 0.01
        assert abs(((inputs == ids) & selected).sum() / n - 0.1) < 0.01
