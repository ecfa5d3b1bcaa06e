"""Sentence pairs for translation: fixed test set of whole pairs, test sentences kept out of
pretraining and training (counted), both directions, nested train-pair budgets, long pairs cut and
counted, and bad input stopped in one line naming the file and line."""

import pytest
import torch

from ssl_lab.data.parallel import ParallelTextDataModule
from ssl_lab.errors import SslLabError

TOKENIZER = {
    "kind": "wordpiece",
    "vocab_size": 400,
    "min_frequency": 1,
    "lowercase": False,
    "max_length": 12,
    "path": None,
}
PAIRS = [(f"我有{i}个苹果。", f"I have {i} apples.") for i in range(40)]


def _write(path, rows):
    path.write_text("".join(f"{a}\t{b}\tsource\n" for a, b in rows), encoding="utf-8")
    return str(path)


def _data(tmp_path, rows=PAIRS, **kwargs) -> ParallelTextDataModule:
    if "train_file" not in kwargs:
        kwargs["train_file"] = _write(tmp_path / "pairs.tsv", rows)
    kwargs.setdefault("direction", "zh-en")
    data = ParallelTextDataModule("pairs", tokenizer=TOKENIZER, languages=["zh", "en"], **kwargs)
    data.setup()
    return data


def test_test_pairs_are_whole_fixed_and_kept_out_of_pretraining(tmp_path):
    test_zh, test_en = _data(tmp_path, split_seed=3).pairs["test"]
    assert len(test_zh) == 4 and set(zip(test_zh, test_en)) <= set(PAIRS)  # whole pairs
    unlabelled = tmp_path / "mono.txt"  # two test sentences (one per language) and another
    unlabelled.write_text(f"{test_zh[0]}\n{test_en[1]}\n今天天气很好。\n", encoding="utf-8")
    data = _data(tmp_path, split_seed=3, unlabelled_files=[str(unlabelled)])
    assert data.pairs["test"] == (test_zh, test_en)  # fixed by split_seed
    assert data.test_overlap_found == data.test_overlap_removed == 2
    assert "今天天气很好。" in data.pretraining_texts
    assert not {*test_zh, *test_en} & set(data.pretraining_texts)
    ids = next(iter(data.unlabelled_dataloader()))[0]  # encoded on first use
    assert ids.dtype == torch.long and len(ids) > 0


def test_a_train_pair_sharing_a_sentence_with_the_test_set_is_dropped_and_counted(tmp_path):
    test = _write(tmp_path / "test.tsv", [("我很高兴。", "I am happy.")])
    train = _write(tmp_path / "train.tsv", [*PAIRS, ("他很高兴。", "I am happy.")])
    data = _data(tmp_path, train_file=train, test_file=test)
    assert data.train_test_overlap_removed == 1
    assert "他很高兴。" not in {*data.pairs["train"][0], *data.pairs["val"][0]}


def test_the_reverse_direction_swaps_source_and_target(tmp_path):
    forward = _data(tmp_path)
    backward = _data(tmp_path, direction="en-zh")
    assert backward.pairs["test"] == (forward.pairs["test"][1], forward.pairs["test"][0])
    assert (backward.source_language, backward.target_language) == ("en", "zh")


def test_smaller_train_pair_budgets_are_nested_in_larger_ones(tmp_path):
    small = set(_data(tmp_path, train_pairs=5).labelled_indices)
    large = set(_data(tmp_path, train_pairs=15).labelled_indices)
    assert len(small) == 5 and small < large
    assert set(_data(tmp_path, train_pairs=5, seed=1).labelled_indices) != small
    with pytest.raises(SslLabError, match=r"data.train_pairs=500: the train split holds \d+"):
        _data(tmp_path, train_pairs=500)


def test_pairs_longer_than_max_length_are_cut_and_counted(tmp_path):
    rows = [*PAIRS, ("短句。", "This sentence is far too long to fit in twelve tokens at all.")]
    data = _data(tmp_path, rows)
    assert data.pairs_cut == 1
    assert all(d.tensors[1].shape[1] <= 12 for d in (data.splits["train"], data.splits["test"]))
    assert len(data.pairs["train"][0]) + len(data.pairs["val"][0]) + len(
        data.pairs["test"][0]
    ) == len(rows)  # nothing dropped


@pytest.mark.parametrize(
    "content, refusal",
    [
        ("你好\tHello\n没有制表符\n", r"bad.tsv, line 2: no tab between source and target"),
        ("你好\tHello\n\n\t空\n", r"bad.tsv, line 3: the first column \(a sentence\) is empty"),
        ("你好\t \n", r"bad.tsv, line 1: the second column \(a sentence\) is empty"),
    ],
)
def test_bad_lines_stop_in_one_line_naming_file_and_line(tmp_path, content, refusal):
    path = tmp_path / "bad.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(SslLabError, match=refusal):
        _data(tmp_path, train_file=str(path))


def test_a_missing_file_and_an_unknown_direction_stop_in_one_line(tmp_path, compose_cfg):
    with pytest.raises(SslLabError, match="no such text file: .*nowhere.tsv"):
        _data(tmp_path, train_file=str(tmp_path / "nowhere.tsv"))
    with pytest.raises(SslLabError, match=r"data.direction=zh-de: choose from zh-en, en-zh"):
        ParallelTextDataModule("p", "x.tsv", TOKENIZER, ["zh", "en"], "zh-de")
    from ssl_lab.config_check import check_config

    cfg = compose_cfg("data=zh_en", "data.direction=zh-fr", "pretext=none")
    with pytest.raises(SslLabError, match=r"^data.direction=zh-fr: zh-en or en-zh"):
        check_config(cfg)
