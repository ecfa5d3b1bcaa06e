"""The cluster path on a real one-node SLURM (tests/cluster/slurm_up.sh): a sweep through sbatch,
a job requeued mid-pretraining that resumes, a failed job, and DDP as two SLURM tasks.

Run them alone with ``pytest -m slurm`` (as root: the fixture installs and starts the daemons).
"""

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    RESUMABLE,
    STEPS_PER_EPOCH,
    TINY,
    read_metrics,
    read_runs,
    run_cli,
    start_cli,
    wait_for,
)

from ssl_lab.report import write_report

CLUSTER = Path(__file__).parent / "cluster"
# One CPU and 1 GB a job: two jobs run side by side on a 2-CPU node
SLURM = ["-m", "hydra/launcher=slurm", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1"]
TIMEOUT = 300

pytestmark = [pytest.mark.slow, pytest.mark.slurm, pytest.mark.usefixtures("slurm")]


@pytest.fixture(scope="session")
def slurm() -> Iterator[str]:
    """A one-node SLURM for the session; stopped at its end unless it was up before. Skips, with
    the reason, where it cannot start (not root, no apt-get, a daemon that fails)."""
    up = subprocess.run([CLUSTER / "slurm_up.sh"], capture_output=True, text=True, timeout=TIMEOUT)
    if up.returncode != 0:
        pytest.skip(f"no SLURM cluster: {up.stderr.strip().splitlines()[-1]}")
    conf = up.stdout.split("SLURM_CONF=", 1)[1].strip()
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SLURM_CONF", conf)  # for sbatch, squeue and scontrol in the tests' commands
        yield conf
    if "already up" not in up.stderr:
        subprocess.run([CLUSTER / "slurm_down.sh"], capture_output=True, timeout=60)


def sweep_dir(tmp_path: Path) -> Path:
    (found,) = (tmp_path / "outputs" / "multirun").glob("*/*")
    return found


def console_lines_about_job_states(result: subprocess.CompletedProcess) -> list[str]:
    return [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if "sacct" in line or "squeue" in line
    ]


def test_a_sweep_runs_as_slurm_jobs_shares_the_cache_and_reports(tmp_path):
    result = run_cli(
        tmp_path,
        *SLURM,
        "pretext=none,rotation",
        "downstream=linear_probe,finetune",
        *TINY,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = sweep_dir(tmp_path)
    # one SLURM array task per job, each with its own submitit folder and log
    (array,) = {p.parent.name.split("_")[0] for p in sweep.glob(".submitit/*_*/*_0_log.out")}
    times = subprocess.run(
        ["squeue", "--states=all", "--array", "--noheader", "--format=%S|%e", f"--jobs={array}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert len(times) == 4
    spans = sorted(tuple(span.split("|")) for span in times)  # ISO times: sorted as text
    # two 1-CPU jobs at a time on the 2-CPU node: the first two ran side by side
    assert spans[1][0] < spans[0][1]
    runs = read_runs(sweep)
    assert sorted((m["pretext"], m["downstream"]) for m in runs) == [
        ("none", "finetune"),
        ("none", "linear_probe"),
        ("rotation", "finetune"),
        ("rotation", "linear_probe"),
    ]
    rotation = [m for m in runs if m["pretext"] == "rotation"]
    # one rotation job pretrained, the other loaded what it made
    assert sorted(m["pretrain_cache"] for m in rotation) == ["hit", "miss"]
    assert len({m["pretrain_dir"] for m in rotation}) == 1
    assert [m["pretrain_cache"] for m in runs if m["pretext"] == "none"] == ["none", "none"]
    # without accounting sacct fails: one line says so, no warning at every poll
    (line,) = console_lines_about_job_states(result)
    assert line.endswith("job states come from squeue")

    text, found = write_report(sweep)
    assert found.incomplete == [] and len(found.runs) == 4
    table = [row for row in text.splitlines() if row.startswith("| ")]
    assert any("rotation" in row for row in table) and any("none" in row for row in table)
    assert "linear_probe" in table[0] and "finetune" in table[0]


def test_a_failed_job_is_named_with_its_log_and_the_others_are_kept(tmp_path):
    missing = tmp_path / "missing.safetensors"
    result = run_cli(
        tmp_path,
        *SLURM,
        "pretext=none",
        f"backbone.checkpoint=null,{missing}",
        *TINY,
        timeout=TIMEOUT,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    (line,) = [line for line in result.stderr.splitlines() if " failed: " in line]
    assert line.startswith(f"ssl-lab: job 1 (backbone.checkpoint={missing}) failed: ")
    assert f"backbone.checkpoint: no such file: {missing}; log: " in line
    log = Path(line.split("; log: ")[1])
    assert f"ssl-lab: error: backbone.checkpoint: no such file: {missing}" in log.read_text()

    sweep = sweep_dir(tmp_path)
    (kept,) = read_metrics(sweep)
    assert kept["pretext"] == "none" and kept["score"] > 0.3
    _, found = write_report(sweep)
    assert found.incomplete == [sweep / "1"]


def test_a_job_requeued_mid_pretraining_resumes_to_the_same_step(tmp_path, uninterrupted):
    job = start_cli(tmp_path, *SLURM, *RESUMABLE)
    submitted = wait_for("multirun/*/*/.submitit/*/*_submitted.pkl", tmp_path / "outputs", job)
    job_id = submitted.parent.name
    # the first epoch's resume point: the job is pretraining its second epoch
    wait_for("cache/pretrain/.*.partial/last.ckpt", tmp_path / "outputs", job)
    subprocess.run(["scontrol", "requeue", job_id], check=True, timeout=60)  # as a preemption
    _, stderr = job.communicate(timeout=TIMEOUT)
    assert job.returncode == 0, stderr[-3000:]

    shown = subprocess.run(
        ["scontrol", "show", "job", job_id], capture_output=True, text=True, check=True
    ).stdout
    assert "Restarts=1" in shown.split()  # SLURM requeued it once
    log = (submitted.parent / f"{job_id}_0_log.err").read_text()
    assert "DUE TO JOB REQUEUE" in log  # SLURM ended the first run ...
    assert "ssl-lab: stopped: by a signal at pretraining step" in log  # ... which saved, then
    (metrics,) = read_metrics(tmp_path / "outputs")
    assert metrics["pretrain_cache"] == "resumed"
    assert metrics["pretext_steps"] == uninterrupted["pretext_steps"] == 3 * STEPS_PER_EPOCH
    (info,) = (tmp_path / "outputs").rglob("run_info.json")
    step = json.loads(info.read_text())["pretrain_resumed_from_step"]
    assert STEPS_PER_EPOCH <= step < 3 * STEPS_PER_EPOCH


def test_ddp_cpu_runs_as_two_slurm_tasks_and_scores_as_locally(tmp_path):
    overrides = ["trainer=ddp_cpu", "pretext=none", "downstream=linear_probe", *TINY]
    (tmp_path / "slurm").mkdir()
    (tmp_path / "local").mkdir()
    result = run_cli(tmp_path / "slurm", *SLURM, *overrides, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
    # one torch thread a process, as each SLURM task has (OMP_NUM_THREADS=cpus_per_task)
    local = start_cli(tmp_path / "local", *overrides, env={"OMP_NUM_THREADS": "1"})
    _, stderr = local.communicate(timeout=TIMEOUT)
    assert local.returncode == 0, stderr[-3000:]

    sweep = sweep_dir(tmp_path / "slurm")
    (script,) = sweep.glob(".submitit/*/*_submission.sh")
    # tasks_per_node and gpus_per_node came from trainer=ddp_cpu (2 CPU devices)
    assert "#SBATCH --ntasks-per-node=2" in script.read_text().splitlines()
    assert "#SBATCH --gpus-per-node=0" in script.read_text().splitlines()
    # each SLURM task is one rank: Lightning read SLURM's environment and started no process
    for rank in (0, 1):
        (task_log,) = sweep.glob(f".submitit/*/*_{rank}_log.out")
        assert f"GLOBAL_RANK: {rank}, MEMBER: {rank + 1}/2" in task_log.read_text()
    assert not list((sweep / "0").glob("train_ddp_process_*"))
    (on_slurm,) = read_metrics(sweep)
    (on_this_machine,) = read_metrics(tmp_path / "local" / "outputs")
    # as tests/test_ddp.py: a trained head differs only by the order of the batches
    assert on_slurm["score"] == pytest.approx(on_this_machine["score"], abs=0.01)
