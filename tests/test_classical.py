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
