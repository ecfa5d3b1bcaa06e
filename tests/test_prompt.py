"""Prompting's pieces, by hand: how a pattern is filled and cut, which position decides, and
content-free calibration. The end-to-end runs (test_text_end_to_end.py) only see accuracies."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ssl_lab.data.tokenizer import train_tokenizer
from ssl_lab.downstream.prompt import PromptModule, fill_pattern, raw_and_calibrated_accuracy
from ssl_lab.errors import SslLabError

BEFORE = "{text}。总之很[MASK]。"  # the gap after the text: masked and causal models
AFTER = "总之很[MASK]。{text}"  # the gap before the text: masked models only


def tokenizer(max_length: int = 32):
    """One token per character of a few reviews' characters."""
    return train_tokenizer("char", ["好书，总之很好。", "我觉得差"], 100, max_length)


def tokens(tok, ids: torch.Tensor) -> list[str]:
    return [tok.token(int(i)) for i in ids if int(i) != tok.ids["pad"]]


def test_the_text_goes_where_the_pattern_says_between_cls_and_sep():
    tok = tokenizer()
    ids, positions = fill_pattern(tok, ["好书", "差"], BEFORE, causal=False)
    assert tokens(tok, ids[0]) == [
        "[CLS]",
        "好",
        "书",
        "。",
        "总",
        "之",
        "很",
        "[MASK]",
        "。",
        "[SEP]",
    ]
    assert tokens(tok, ids[1]) == ["[CLS]", "差", "。", "总", "之", "很", "[MASK]", "。", "[SEP]"]
    assert ids.shape == (2, 10) and ids[1, -1] == tok.ids["pad"]  # padded to the longest row
    ids, _ = fill_pattern(tok, ["好书"], AFTER, causal=False)
    assert tokens(tok, ids[0]) == ["[CLS]", "总", "之", "很", "[MASK]", "。", "好", "书", "[SEP]"]


def test_a_long_text_is_cut_never_the_pattern():
    tok = tokenizer(max_length=10)  # [CLS] + 6 pattern tokens + [SEP] leave room for 2
    ids, positions = fill_pattern(tok, ["好书好书好书"], BEFORE, causal=False)
    assert tokens(tok, ids[0]) == [
        "[CLS]",
        "好",
        "书",
        "。",
        "总",
        "之",
        "很",
        "[MASK]",
        "。",
        "[SEP]",
    ]
    ids, _ = fill_pattern(tok, ["好书好书好书"], AFTER, causal=False)  # 5 pattern tokens: room 3
    assert tokens(tok, ids[0]) == [
        "[CLS]",
        "总",
        "之",
        "很",
        "[MASK]",
        "。",
        "好",
        "书",
        "好",
        "[SEP]",
    ]
    # a causal model reads no [SEP] and nothing after the gap: more room for the text
    ids, _ = fill_pattern(tok, ["好书好书好书"], BEFORE, causal=True)
    assert tokens(tok, ids[0]) == ["[CLS]", "好", "书", "好", "书", "好", "。", "总", "之", "很"]
    with pytest.raises(SslLabError, match="downstream.patterns: .* leaves no room for the text"):
        fill_pattern(tokenizer(max_length=8), ["好"], BEFORE, causal=False)


def test_the_decisive_position_is_the_mask_or_for_a_causal_model_the_token_before_the_gap():
    tok = tokenizer()
    ids, positions = fill_pattern(tok, ["好书", "差"], BEFORE, causal=False)
    assert positions.tolist() == [7, 6]
    assert all(ids[i, p] == tok.ids["mask"] for i, p in enumerate(positions))
    ids, positions = fill_pattern(tok, ["好书", "差"], AFTER, causal=False)
    assert positions.tolist() == [4, 4]
    ids, positions = fill_pattern(tok, ["好书", "差"], BEFORE, causal=True)
    assert tokens(tok, ids[1]) == ["[CLS]", "差", "。", "总", "之", "很"]
    assert positions.tolist() == [6, 5]  # each row's last token: 很, whose next token is scored


class OneHotModel(nn.Module):
    """A 'language model' whose scores at a position are the one-hot of the token there."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.vocab_size, self.lm_head = vocab_size, nn.Identity()

    def forward_features(self, ids: torch.Tensor) -> torch.Tensor:
        return F.one_hot(ids, self.vocab_size).float()


def test_the_verbalizers_are_scored_at_the_decisive_position():
    tok = tokenizer()
    verbalizers = [
        tok.tokenizer.token_to_id("很"),
        tok.ids["mask"],
        tok.tokenizer.token_to_id("差"),
    ]
    module = PromptModule(OneHotModel(tok.vocab_size), verbalizers, 1e-3, torch.optim.SGD)
    for causal, expected in ((False, [0.0, 1.0, 0.0]), (True, [1.0, 0.0, 0.0])):
        ids, positions = fill_pattern(tok, ["好书", "差"], BEFORE, causal)
        assert module.scores(ids, positions).tolist() == [expected, expected]


def test_calibration_subtracts_the_content_free_log_probabilities():
    # log-softmax shifts a row by a constant, so calibrated predictions are the argmax of
    # (scores - content-free scores): with 2 classes, whether the row's margin s0 - s1 beats the
    # content-free margin, 2.0 here.
    scores = torch.tensor(
        [
            [2.0, 0.0],  # the pattern around an empty text: the model prefers word 0 anyway
            [1.0, 0.0],  # margin 1.0: raw 0, calibrated 1 (label 1: calibration fixes it)
            [3.0, 0.0],  # margin 3.0: raw 0, calibrated 0 (label 0: right both ways)
            [0.5, 0.0],  # margin 0.5: raw 0, calibrated 1 (label 1: calibration fixes it)
            [2.5, 0.0],  # margin 2.5: raw 0, calibrated 0 (label 1: wrong both ways)
        ]
    )
    labels = torch.tensor([-1, 1, 0, 1, 1])
    assert raw_and_calibrated_accuracy(scores, labels) == (0.25, 0.75)
    # three classes: content-free [1, 0, -1]; the row [1.2, 0.5, -1] less it is [0.2, 0.5, 0]
    three = torch.tensor([[1.0, 0.0, -1.0], [1.2, 0.5, -1.0]])
    assert raw_and_calibrated_accuracy(three, torch.tensor([-1, 1])) == (0.0, 1.0)
