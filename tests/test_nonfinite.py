"""A NaN or infinite loss stops the run naming the step, or (nonfinite=skip) the batch is skipped,
leaving no trace on the weights, and counted. A learning rate of 1e37 makes the real thing: the
first step moves the weights to ~1e37, and every later forward pass overflows."""

import math
from pathlib import Path

import pytest
import torch
from conftest import TINY, run_in_process
from safetensors.torch import load_file

from ssl_lab.errors import SslLabError

EXPLODING = [
    *(o for o in TINY if not o.startswith("downstream.")),
    "pretext.lr=1e37",
    "pretext.epochs=1",
    "+trainer.limit_train_batches=5",
]


def test_a_nonfinite_loss_stops_the_run_naming_the_step_and_leaves_nothing_complete(tmp_path):
    with pytest.raises(
        SslLabError,
        match=r"non-finite pretraining loss \(nan\) at step 1 "
        r"\(epoch 0\).*nonfinite=skip",
    ):
        run_in_process(tmp_path / "run", *EXPLODING)
    assert not (tmp_path / "run" / "metrics.json").exists()
    cache = tmp_path / "outputs" / "cache" / "pretrain"
    assert [p.name for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")] == []


def test_skipped_batches_are_counted_and_leave_the_weights_finite(tmp_path):
    metrics = run_in_process(tmp_path / "run", *EXPLODING, "nonfinite=skip", "downstream=knn")
    assert metrics["pretext_steps"] == 5
    assert metrics["pretext_nonfinite_skipped"] == 4  # every step after the first
    assert math.isnan(metrics["pretext_loss"])  # the curves still show what happened
    # the skipped steps changed neither a weight (no NaN gradient applied) nor a batch-norm
    # statistic (their forward passes saw infinities)
    weights = load_file(Path(metrics["pretrain_dir"]) / "backbone.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())

    # fine-tuning those weights skips every batch: a head that never trained gets no score
    with pytest.raises(
        SslLabError, match="every one of the .* transfer batches had a non-finite loss"
    ):
        run_in_process(
            tmp_path / "again",
            *EXPLODING,
            "nonfinite=skip",
            "downstream=finetune",
            "downstream.epochs=1",
        )
    assert not (tmp_path / "again" / "metrics.json").exists()
