"""Translation warm-started from a text backbone: the decoder reads causally and attends to the
source, beam search agrees with greedy and with the model's own scores, a tiny model learns, and
data=zh_en downstream=translate runs end to end through the real config and ssl-lab-predict."""

import json
import os
from pathlib import Path

import pytest
import torch
from conftest import run_in_process

from ssl_lab.backbones.transformer import TextTransformer
from ssl_lab.downstream.translate import (
    TranslationModule,
    Translator,
    beam_search,
    bleu_tokenizer,
    corpus_scores,
    decoder_order,
    detokenize,
)
from ssl_lab.errors import SslLabError
from ssl_lab.pipeline import check_compatible

VOCAB, PAD, CLS, SEP = 40, 0, 2, 3
BANNED = [0, 1, 2, 4]  # pad, unk, cls, mask: everything special but the stop token
REPO = Path(__file__).resolve().parents[1]
SHARED = next(
    (
        p
        for p in (
            Path(os.environ.get("SSL_LAB_DATA", "/nonexistent")),
            REPO.parent / "shared" / "data",
            REPO.parents[1] / "shared" / "data",
        )
        if (p / "zh_en_sentences.tsv").is_file()
    ),
    None,
)


def _translator(seed: int = 0, **kwargs) -> Translator:
    torch.manual_seed(seed)
    backbone = TextTransformer(VOCAB, max_length=16, width=32, depth=2, heads=2, **kwargs)
    return Translator(backbone).eval()


def _sources(n: int = 3) -> torch.Tensor:
    torch.manual_seed(1)
    ids = torch.randint(5, VOCAB, (n, 7))
    ids[:, 0], ids[:, -1] = CLS, SEP
    ids[0, 4:] = PAD
    ids[0, 3] = SEP
    return ids


def _log_prob(model: Translator, source: torch.Tensor, tokens: torch.Tensor) -> float:
    """Teacher-forced log-probability of ``tokens`` (up to and with the stop token)."""
    end = tokens.tolist().index(SEP) + 1 if SEP in tokens.tolist() else len(tokens)
    inputs = torch.tensor([[CLS, *tokens[: end - 1].tolist()]])
    with torch.no_grad():
        logits = model(source.unsqueeze(0), inputs)[0, :, :VOCAB]
    logits[:, BANNED] = float("-inf")
    log_p = logits.log_softmax(-1)
    return float(log_p[torch.arange(end), tokens[:end]].sum())


def test_the_decoder_reads_causally_and_attends_to_the_source():
    model = _translator()
    source, target = _sources(1), torch.randint(5, VOCAB, (1, 8))
    changed = target.clone()
    changed[0, 5] = (target[0, 5] + 3) % (VOCAB - 5) + 5
    with torch.no_grad():
        before, after = model(source, target), model(source, changed)
        other_source = model(_sources(3)[1:2], target)
    assert torch.allclose(before[0, :5], after[0, :5], atol=1e-6)  # t < 5 never sees token 5
    assert not torch.allclose(before[0, 5:], after[0, 5:])
    assert not torch.allclose(before, other_source)  # every position reads the source
    assert model.decoder is not model.encoder  # a copy...
    assert torch.equal(model.decoder.tokens.weight, model.encoder.tokens.weight)  # ...of the same


def test_a_shared_decoder_is_the_encoder_and_frozen_leaves_only_cross_attention_training():
    torch.manual_seed(0)
    backbone = TextTransformer(VOCAB, max_length=16, width=32, depth=2, heads=2)
    shared, copied = Translator(backbone, share=True), Translator(backbone)
    assert shared.decoder is shared.encoder
    assert sum(p.numel() for p in shared.parameters()) < sum(p.numel() for p in copied.parameters())
    from ssl_lab.data.tokenizer import train_tokenizer

    tokenizer = train_tokenizer("wordpiece", ["a b c"], 40, 16)
    module = TranslationModule(
        copied, tokenizer, 1e-3, lambda params, lr: torch.optim.SGD(params, lr), freeze="frozen"
    )
    trainable = {n.split(".")[0] for n, p in module.model.named_parameters() if p.requires_grad}
    assert trainable == {"cross"}


def test_greedy_is_beam_one_and_matches_a_step_by_step_argmax():
    model, sources = _translator(), _sources()
    tokens, scores = beam_search(model, sources, CLS, SEP, BANNED, VOCAB, beam=1, max_new_tokens=8)
    for row, source in enumerate(sources):  # one sentence at a time, no batching, no beams
        prefix = [CLS]
        for _ in range(8):
            with torch.no_grad():
                logits = model(source.unsqueeze(0), torch.tensor([prefix]))[0, -1, :VOCAB]
            logits[BANNED] = float("-inf")
            prefix.append(int(logits.argmax()))
            if prefix[-1] == SEP:
                break
        produced = tokens[row][tokens[row] != PAD].tolist()
        assert produced == prefix[1:]
        assert scores[row].item() == pytest.approx(_log_prob(model, source, tokens[row]), abs=1e-4)


def test_beam_search_scores_are_the_models_and_never_below_greedys():
    model, sources = _translator(seed=3), _sources()
    greedy, greedy_scores = beam_search(model, sources, CLS, SEP, BANNED, VOCAB, 1, 8, 0.0)
    beam, beam_scores = beam_search(model, sources, CLS, SEP, BANNED, VOCAB, 4, 8, 0.0)
    for row, source in enumerate(sources):
        assert beam_scores[row].item() == pytest.approx(
            _log_prob(model, source, beam[row]), abs=1e-4
        )
        assert beam_scores[row] >= greedy_scores[row] - 1e-5
    one_by_one = [
        beam_search(model, s.unsqueeze(0)[:, : int((s != PAD).sum())], CLS, SEP, BANNED, VOCAB)[0]
        for s in sources
    ]
    batched, _ = beam_search(model, sources, CLS, SEP, BANNED, VOCAB)
    for row, alone in enumerate(one_by_one):  # batching (and padding) changes nothing
        assert batched[row][batched[row] != PAD].tolist() == alone[0][alone[0] != PAD].tolist()


def test_a_backward_decoder_reads_the_target_from_its_end_and_puts_it_back_in_order():
    target = torch.tensor([[CLS, 7, 8, 9, SEP, PAD]])
    assert decoder_order(target, PAD, True).tolist() == [[SEP, 9, 8, 7, CLS, PAD]]
    from ssl_lab.data.tokenizer import train_tokenizer

    tokenizer = train_tokenizer("wordpiece", ["hello world again"] * 3, 60, 16)
    ids = tokenizer.pieces("hello world")
    assert detokenize(tokenizer, [*ids[::-1], tokenizer.ids["cls"], PAD], True) == "hello world"
    assert detokenize(tokenizer, [*ids, tokenizer.ids["sep"]], False) == "hello world"
    english = train_tokenizer(
        "wordpiece", ["It's the law, isn't it?", "我需要证据。"] * 3, 80, 24, 1, False
    )
    assert english.decode(english.pieces("It's the law, isn't it? 我需要证据。")) == (
        "It's the law, isn't it?我需要证据。"
    )


def test_a_tiny_translator_learns_a_toy_language():
    """Target = each source token shifted by one, in reverse order: needs cross-attention."""
    from ssl_lab.data.tokenizer import train_tokenizer

    tokenizer = train_tokenizer("wordpiece", [" ".join("abcdefghij")] * 3, 40, 16)
    torch.manual_seed(0)
    backbone = TextTransformer(tokenizer.vocab_size, max_length=16, width=32, depth=2, heads=2)
    module = TranslationModule(
        Translator(backbone), tokenizer, 3e-3, torch.optim.AdamW, label_smoothing=0.0
    )
    optimizer = module.configure_optimizers()["optimizer"]
    module.train()
    losses = []
    for _ in range(150):
        words = torch.randint(5, 15, (32, 5))
        cls, sep = tokenizer.ids["cls"], tokenizer.ids["sep"]
        source = torch.cat([torch.full((32, 1), cls), words, torch.full((32, 1), sep)], 1)
        target = torch.cat(
            [torch.full((32, 1), cls), (words.flip(1) - 4) % 10 + 5, torch.full((32, 1), sep)],
            1,
        )
        loss = module._loss((source, target))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10, (losses[:3], losses[-3:])


def test_scores_use_sacrebleus_tokenizer_for_the_target_and_run_0_to_100():
    assert bleu_tokenizer("zh") == "zh" and bleu_tokenizer("en") == "13a"
    same = corpus_scores(["我需要证据。"], ["我需要证据。"], "zh")
    assert same == {"test/bleu": pytest.approx(100.0), "test/chrf": pytest.approx(100.0)}
    # unsegmented Chinese is one "word" to 13a: the zh tokenizer scores its characters
    near = ["我需要一些证据来证明这件事。"], ["我需要证据来证明这件事。"]
    assert corpus_scores(*near, "zh")["test/bleu"] > corpus_scores(*near, "en")["test/bleu"]
    half = corpus_scores(["the cat sat on the mat"], ["the cat sat on a mat"], "en")
    assert 0 < half["test/bleu"] < 100 and 0 < half["test/chrf"] < 100


def test_pairs_and_translation_go_together_or_are_refused(compose_cfg):
    with pytest.raises(SslLabError, match="data=zh_en holds sentence pairs: transfer with down"):
        check_compatible(compose_cfg("data=zh_en", "pretext=mlm", "downstream=finetune"))
    with pytest.raises(SslLabError, match="downstream=translate needs sentence pairs"):
        check_compatible(compose_cfg("data=reviews_zh", "pretext=mlm", "downstream=translate"))
    check_compatible(compose_cfg("data=zh_en", "pretext=clm", "downstream=translate"))


TINY = [
    "logger=none",
    "data=zh_en",
    "downstream=translate",
    "data.unlabelled_files=[]",  # pretraining on the train pairs' sentences alone: fast
    "data.train_pairs=300",
    "backbone.width=64",
    "backbone.depth=1",
    "backbone.heads=2",
    "backbone.max_length=40",
    "pretext.epochs=1",
    "+trainer.limit_train_batches=40",
    "+trainer.limit_val_batches=2",
    "+trainer.limit_predict_batches=1",  # 64 test pairs
    "downstream.epochs=1",
    "downstream.beam=2",
    "downstream.lr=3e-3",
]


@pytest.mark.slow
@pytest.mark.skipif(SHARED is None, reason="no shared zh_en_sentences.tsv")
@pytest.mark.parametrize("pretext", ["none", "mlm"])
def test_zh_en_translation_runs_end_to_end_and_predict_translates(pretext, tmp_path, capsys):
    metrics = run_in_process(
        tmp_path / "run", *TINY, f"pretext={pretext}", f"paths.data_dir={SHARED}"
    )
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written["score"] == written["test/bleu"] and written["score_name"] == "test/bleu"
    assert 0 <= written["test/bleu"] <= 100 and 0 < written["test/chrf"] <= 100
    assert written["bleu_tokenize"] == "13a" and written["translation"] == "zh-en"
    assert written["n_labels"] == 300 and written["test_pairs"] == 64
    assert written["transfer_train_loss"] < 7.5, written  # from ln(vocab) ~ 8.3 at the start
    assert "pairs_cut" in written and written["test_overlap_removed"] == 0
    if pretext == "mlm":
        assert metrics["pretrain_cache"] == "miss" and written["pretext_tokens"] > 0
    table = (tmp_path / "run" / "translations.md").read_text()
    assert table.count("\n| ") == 31 and "| source | reference | output |" in table
    import sys

    from ssl_lab.cli import predict

    argv, sys.argv = (
        sys.argv,
        ["ssl-lab-predict", str(tmp_path / "run"), "--translate", "我需要证据。"],
    )
    try:
        predict()
    finally:
        sys.argv = argv
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("zh-en translation (beam 2)") and printed[1] == "我需要证据。"
    assert printed[2].startswith("  -> ") and len(printed[2]) > 5
