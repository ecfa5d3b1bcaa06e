"""Next-token prediction: the loss at position t depends only on tokens up to t."""

import pytest
import torch
import torch.nn.functional as F

from ssl_lab.backbones.transformer import TextTransformer
from ssl_lab.data.tokenizer import Vocabulary
from ssl_lab.errors import SslLabError
from ssl_lab.metrics import IGNORE
from ssl_lab.pretext.clm import CausalLanguageModel

VOCAB = Vocabulary(size=50, pad_id=0, mask_id=4, special_ids=(0, 1, 2, 3, 4))


def _position_losses(backbone: TextTransformer, ids: torch.Tensor) -> torch.Tensor:
    logits = backbone.lm_logits(ids)[:, :-1]
    return F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")


@pytest.mark.parametrize("causal", [True, False])
def test_loss_before_t_ignores_tokens_after_t_only_when_causal(causal):
    torch.manual_seed(0)
    backbone = TextTransformer(
        VOCAB.size, max_length=16, width=32, depth=2, heads=2, causal=causal
    ).eval()
    ids = torch.randint(5, VOCAB.size, (3, 12))
    changed = ids.clone()
    changed[:, 8] = (ids[:, 8] + 7) % (VOCAB.size - 5) + 5  # perturb token 8
    before, after = _position_losses(backbone, ids), _position_losses(backbone, changed)
    # position t predicts token t+1: positions 0..6 see only tokens 0..6 (< 8)
    same = torch.allclose(before[:, :7], after[:, :7], atol=1e-6)
    assert same == causal
    assert not torch.allclose(before[:, 8:], after[:, 8:])  # later positions do see it


def test_clm_scores_every_real_next_token_and_refuses_a_bidirectional_backbone():
    task = CausalLanguageModel(32, VOCAB)
    ids = torch.tensor([[2, 7, 8, 9, 3, 0, 0], [2, 10, 11, 3, 0, 0, 0]])
    inputs, targets = task.make_batch((ids, torch.zeros(2)))
    scored = targets != IGNORE
    assert targets[scored].tolist() == [7, 8, 9, 3, 10, 11, 3]  # padding is never a target
    causal = TextTransformer(VOCAB.size, max_length=8, width=32, depth=1, heads=2, causal=True)
    scores = task(causal, inputs)
    assert scores.shape == (12, VOCAB.size)  # every position with a next one: one block
    expected = causal.lm_logits(ids)[:, :-1].flatten(0, 1)[scored][:, : VOCAB.size]
    assert torch.allclose(scores[scored], expected, atol=1e-6)
    with pytest.raises(SslLabError, match="causal backbone"):
        task(TextTransformer(VOCAB.size, max_length=8, width=32, depth=1, heads=2), inputs)
