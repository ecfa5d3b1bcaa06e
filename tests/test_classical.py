from ssl_lab.build import build
from ssl_lab.data.digits import DigitsDataModule


def test_logistic_regression_on_raw_pixels_learns_digits_from_ten_labels_per_class(compose_cfg):
    cfg = compose_cfg("downstream=classical")
    assert cfg.downstream.requires_pretext == "none"
    data = DigitsDataModule("digits", num_classes=10, channels=1, size=8, labels_per_class=10)
    data.setup()
    metrics = build(cfg, "downstream").evaluate(None, data, make_trainer=None)
    assert metrics["score_name"] == "test/acc"
    assert metrics["score"] > 0.7  # chance: 0.1


def test_tfidf_logistic_regression_reads_chinese_reviews_by_character_ngrams(compose_cfg, tmp_path):
    from conftest import run_in_process

    metrics = run_in_process(
        tmp_path / "run",
        "logger=none",
        "data=reviews_zh",
        "pretext=none",
        "downstream=classical",
        "data.labels_per_class=100",
    )
    assert metrics["score_name"] == "test/acc" and metrics["n_labels"] == 200
    assert metrics["text_features"] == "tfidf char 1-3" and metrics["tfidf_features"] > 1000
    assert metrics["score"] > 0.65  # two balanced classes: chance is 0.5


def test_text_features_are_character_ngrams_for_chinese_and_word_ngrams_for_english():
    from ssl_lab.downstream.classical import text_analyzer, tfidf

    assert text_analyzer(["这本书写得很好，推荐！", "太差了"]) == "char"
    assert text_analyzer(["a gripping , funny film", "dull"]) == "word"
    assert text_analyzer(["dull"], "char") == "char"
    english = tfidf("word").fit(["not good at all"])
    assert "not good" in english.vocabulary_ and "not" in english.vocabulary_
    chinese = tfidf("char").fit(["不好看"])
    assert {"不", "不好", "不好看"} <= set(chinese.vocabulary_)
