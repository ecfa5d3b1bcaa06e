"""Experiment tracking: W&B offline, no network, and no secret from the environment on disk."""

import os

import pytest
from conftest import TINY, read_metrics, run_cli


def test_the_wandb_run_id_is_the_jobs_own_and_a_rerun_shares_it(compose_cfg):
    job_id = compose_cfg("logger=wandb").logger.wandb.id
    assert job_id.startswith("job-") and job_id == compose_cfg("logger=csv_wandb").logger.wandb.id
    assert compose_cfg("logger=wandb", "paths.run_dir=/elsewhere").logger.wandb.id == job_id
    assert compose_cfg("logger=wandb", "seed=1").logger.wandb.id != job_id
    assert compose_cfg("logger=wandb", "downstream=finetune").logger.wandb.id != job_id
    assert compose_cfg("logger=wandb", "logger.wandb.resume=never").logger.wandb.id == job_id
    assert compose_cfg("logger=wandb").logger.wandb.resume == "allow"


@pytest.mark.slow
def test_wandb_offline_run_has_the_summary_and_no_secret(tmp_path, monkeypatch, compose_cfg):
    secrets = {
        "WANDB_API_KEY": "wandb-key-that-must-never-be-written-0123456789",
        "SSL_LAB_TEST_TOKEN": "token-from-the-environment-9876543210",
    }
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    run_dir = tmp_path / "run"
    overrides = [*TINY, "logger=csv_wandb"]
    result = run_cli(tmp_path, f"hydra.run.dir={run_dir}", *overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    (metrics,) = read_metrics(run_dir)
    # the run id derives from the job's config: a rerun after a kill resumes this W&B run
    job_id = compose_cfg(*overrides, f"paths.output_dir={tmp_path / 'outputs'}").logger.wandb.id
    (offline_run,) = (run_dir / "wandb").glob(f"offline-run-*-{job_id}")
    (records,) = offline_run.glob("run-*.wandb")
    data = records.read_bytes()
    for key in (b"score", b"test/acc", b"pretrain/train_loss", b"pretext=rotation"):
        assert key in data, key
    assert (run_dir / "logs" / "metrics.csv").is_file()  # both loggers at once
    for root, _, files in os.walk(tmp_path):  # configs, logs, run_info.json, metrics, W&B files
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                data = f.read()
            for secret in secrets.values():
                assert secret.encode() not in data, os.path.join(root, name)
    assert not any(secret in result.stdout + result.stderr for secret in secrets.values())
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
