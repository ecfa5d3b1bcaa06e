"""Experiment tracking: W&B offline, no network, and no secret from the environment on disk."""

import os

import pytest

from conftest import TINY, read_metrics, run_cli


@pytest.mark.slow
def test_wandb_offline_run_has_the_summary_and_no_secret(tmp_path, monkeypatch):
    secret = "wandb-key-that-must-never-be-written-0123456789"
    monkeypatch.setenv("WANDB_API_KEY", secret)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    run_dir = tmp_path / "run"
    result = run_cli(tmp_path, f"hydra.run.dir={run_dir}", *TINY, "logger=csv_wandb")
    assert result.returncode == 0, result.stderr[-3000:]
    (metrics,) = read_metrics(run_dir)
    (offline_run,) = (run_dir / "wandb").glob("offline-run-*")
    (records,) = offline_run.glob("run-*.wandb")
    data = records.read_bytes()
    for key in (b"score", b"test/acc", b"pretrain/train_loss", b"pretext=rotation"):
        assert key in data, key
    assert (run_dir / "logs" / "metrics.csv").is_file()  # both loggers at once
    for root, _, files in os.walk(tmp_path):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                assert secret.encode() not in f.read(), os.path.join(root, name)
    assert secret not in result.stdout + result.stderr
    assert metrics["score"] > 0.3


@pytest.mark.slow
def test_tensorboard_run_has_curves_and_the_pretext_picture(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = tmp_path / "run"
    result = run_cli(tmp_path, f"hydra.run.dir={run_dir}", *TINY, "logger=tensorboard")
    assert result.returncode == 0, result.stderr[-3000:]
    events = EventAccumulator(str(run_dir / "tensorboard")).Reload()
    assert {"pretrain/train_loss", "test/acc", "score"} <= set(events.Tags()["scalars"])
    assert "pretrain/pretext_rotation" in events.Tags()["images"]
