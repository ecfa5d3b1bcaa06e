"""Jobs that are killed or told to stop: pretraining resumes where it was and ends at the same step
as a run nobody interrupted; transfer starts again; nothing half-done looks complete."""

import json
import os
import signal
import time
from pathlib import Path

import pytest
import torch
from conftest import (
    RESUMABLE,
    STEPS_PER_EPOCH,
    TINY,
    read_metrics,
    run_cli,
    run_in_process,
    start_cli,
    wait_for,
    write_crafted_pickle,
)

from ssl_lab.cache import pretrain_key
from ssl_lab.errors import SslLabError
from ssl_lab.report import write_report

LAST = ".*.partial/last.ckpt"  # beside the cache entry, named by its key
# After the first epoch's last.ckpt appears, the second epoch has surely begun (what is left of
# the first takes a millisecond; the second, most of a second)
INTO_THE_EPOCH = 0.1


def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "outputs" / "cache" / "pretrain"


def entries(tmp_path: Path) -> list[str]:
    return [
        p.name for p in cache_dir(tmp_path).iterdir() if p.is_dir() and not p.name.startswith(".")
    ]


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


def saved_step(checkpoint: Path) -> int:
    # a resume point holds tensors and plain containers only: it loads with weights_only=True
    return torch.load(checkpoint, map_location="cpu", weights_only=True)["global_step"]


def rerun_and_check_resumed(tmp_path: Path, uninterrupted: dict, from_step: int) -> dict:
    result = run_cli(tmp_path, *RESUMABLE)
    assert result.returncode == 0, result.stderr[-3000:]
    (metrics,) = read_metrics(tmp_path / "outputs")
    assert metrics["pretrain_cache"] == "resumed"
    assert metrics["pretext_steps"] == uninterrupted["pretext_steps"] == 3 * STEPS_PER_EPOCH
    (info,) = [
        json.loads(p.read_text())
        for p in (tmp_path / "outputs").rglob("run_info.json")
        if (p.parent / "metrics.json").exists()
    ]
    assert info["pretrain_resumed_from_step"] == from_step
    assert list(cache_dir(tmp_path).glob(".*")) == []  # no resume point, no staging left behind
    return metrics


@pytest.mark.slow
def test_kill_9_mid_pretraining_then_the_same_command_resumes_to_the_same_step(
    tmp_path, uninterrupted
):
    job = start_cli(tmp_path, *RESUMABLE)
    last = wait_for(LAST, cache_dir(tmp_path), job)
    job.kill()
    job.wait()
    assert job.returncode == -signal.SIGKILL
    step = saved_step(last)
    assert 0 < step < 3 * STEPS_PER_EPOCH and step % STEPS_PER_EPOCH == 0  # an epoch's end

    # nothing looks complete: no metrics, no cache entry; the report lists the run
    assert not list((tmp_path / "outputs").rglob("metrics.json")) and entries(tmp_path) == []
    incomplete = write_report(tmp_path / "outputs")[1].incomplete
    assert len(incomplete) == 1 and (incomplete[0] / ".hydra").is_dir()

    rerun_and_check_resumed(tmp_path, uninterrupted, from_step=step)


def signal_into_second_epoch(tmp_path, signum):
    """Start a resumable run, send ``signum`` once its first last.ckpt exists, and return
    (that checkpoint's path, stderr) after the run exits with status 1."""
    job = start_cli(tmp_path, *RESUMABLE)
    last = wait_for(LAST, cache_dir(tmp_path), job)
    time.sleep(INTO_THE_EPOCH)
    job.send_signal(signum)
    _, stderr = job.communicate(timeout=300)
    assert job.returncode == 1
    return last, stderr


@pytest.mark.slow
def test_sigterm_mid_epoch_saves_last_ckpt_and_the_rerun_resumes_from_it(tmp_path, uninterrupted):
    last, stderr = signal_into_second_epoch(tmp_path, signal.SIGTERM)
    line = one_error_line(stderr)
    assert line.startswith("ssl-lab: stopped: by a signal at pretraining step ")
    assert f"{last} is saved: run the same command again to resume" in line
    step = saved_step(last)
    assert f"step {step};" in line
    assert step > STEPS_PER_EPOCH and step % STEPS_PER_EPOCH != 0  # written mid-epoch
    assert not list((tmp_path / "outputs").rglob("metrics.json")) and entries(tmp_path) == []

    rerun_and_check_resumed(tmp_path, uninterrupted, from_step=step)


@pytest.mark.slow
def test_sigusr1_outside_slurm_stops_like_sigterm(tmp_path):
    last, stderr = signal_into_second_epoch(tmp_path, signal.SIGUSR1)
    assert one_error_line(stderr).startswith("ssl-lab: stopped: by a signal at pretraining step")
    step = saved_step(last)
    assert step > STEPS_PER_EPOCH and step % STEPS_PER_EPOCH != 0


@pytest.mark.slow
def test_under_slurm_sigusr1_requeues_the_job_and_the_sigterm_that_follows_saves(tmp_path):
    """SLURM as Lightning sees it (its variables), with an ``scontrol`` that records its call."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.log"}\n')
    (bin_dir / "scontrol").chmod(0o755)
    slurm = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "pretrain",
        "SLURM_NTASKS": "1",
        "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
        "SLURM_NODELIST": "localhost",
    }
    job = start_cli(tmp_path, *RESUMABLE, env=slurm)
    last = wait_for(LAST, cache_dir(tmp_path), job)
    time.sleep(INTO_THE_EPOCH)
    job.send_signal(signal.SIGUSR1)  # SLURM: "time is nearly up"
    requeued = wait_for("scontrol.log", tmp_path, job)
    assert requeued.read_text().split() == ["requeue", "4242"]
    job.send_signal(signal.SIGTERM)  # SLURM ends the job it requeued
    _, stderr = job.communicate(timeout=300)
    assert job.returncode == 1
    assert one_error_line(stderr).startswith("ssl-lab: stopped: by a signal at pretraining step")
    assert saved_step(last) > STEPS_PER_EPOCH
    assert entries(tmp_path) == []


@pytest.mark.slow
def test_a_signal_during_transfer_writes_no_score_and_the_rerun_transfers_afresh(
    tmp_path, uninterrupted
):
    job = start_cli(tmp_path, *RESUMABLE)
    wait_for("rotation-*/backbone.safetensors", cache_dir(tmp_path), job)  # pretraining is done
    job.send_signal(signal.SIGTERM)
    job.communicate(timeout=300)
    assert job.returncode != 0  # stopped by Lightning, or killed between two trainers
    assert not list((tmp_path / "outputs").rglob("metrics.json"))

    result = run_cli(tmp_path, *RESUMABLE)
    assert result.returncode == 0, result.stderr[-3000:]
    (metrics,) = read_metrics(tmp_path / "outputs")
    assert metrics.pop("pretrain_cache") == "hit"
    # the transfer ran whole from the start: the same numbers as if nothing had happened
    assert metrics == {k: v for k, v in uninterrupted.items() if k != "pretrain_cache"}


def test_a_crafted_resume_point_is_refused_and_its_payload_never_runs(tmp_path, compose_cfg):
    overrides = [*TINY, f"paths.output_dir={tmp_path / 'outputs'}"]
    work = cache_dir(tmp_path) / f".{pretrain_key(compose_cfg(*overrides))}.partial"
    work.mkdir(parents=True)
    marker = tmp_path / "pwned"
    write_crafted_pickle(work / "last.ckpt", marker)
    with pytest.raises(
        SslLabError,
        match=r"refused resume point .*last\.ckpt: not a plain "
        r"checkpoint .*delete it to start over",
    ):
        run_in_process(tmp_path / "run", *TINY)
    assert not marker.exists()
    assert entries(tmp_path) == []
