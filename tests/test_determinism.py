"""Same command, same seed: the same metrics.json, every key of it (timings and paths live in
run_info.json). Another seed: other labelled examples, other numbers."""

import json

import pytest
from conftest import RESUMABLE, read_metrics, run_cli, run_in_process


@pytest.mark.slow
def test_the_same_command_and_seed_write_the_same_metrics_json(tmp_path, uninterrupted):
    result = run_cli(tmp_path, *RESUMABLE)  # its own output tree: its own cache miss
    assert result.returncode == 0, result.stderr[-3000:]
    (metrics,) = read_metrics(tmp_path / "outputs")
    assert metrics == uninterrupted
    (info,) = [json.loads(p.read_text()) for p in (tmp_path / "outputs").rglob("run_info.json")]
    assert {"pretrain_seconds", "transfer_seconds", "pretrain_dir"} <= info.keys()


@pytest.mark.slow
def test_another_seed_labels_other_examples_and_gets_other_results(tmp_path, uninterrupted):
    metrics = run_in_process(tmp_path / "run", *RESUMABLE, "seed=1")
    assert metrics["n_labels"] == uninterrupted["n_labels"] == 200
    assert metrics["labelled_subset"] != uninterrupted["labelled_subset"]
    for key in ("score", "pretext_loss", "test_loss"):
        assert metrics[key] != uninterrupted[key], key
