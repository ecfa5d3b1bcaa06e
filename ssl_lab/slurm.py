"""``hydra/launcher=slurm`` (its Hydra plugin: ``hydra_plugins/ssl_lab_slurm``): Hydra's submitit
launcher, with what a SLURM user needs on top.

- Job states come from ``squeue`` where ``sacct`` fails (clusters without accounting, no
  slurmdbd). submitit polls ``sacct`` only: there it would warn at every poll and never learn
  that a job died, so the sweep would wait for it forever.
- A failed job does not cut the sweep short: every job is waited for, each failure is named in
  one line with the path of its log, and the command then exits with status 1. The other jobs'
  results stay where they are, and ``ssl-lab-report`` lists the failed ones as incomplete.
"""

import logging
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import submitit
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from hydra_plugins.hydra_submitit_launcher import submitit_launcher
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
from omegaconf import OmegaConf
from submitit.core.utils import FailedJobError, UncompletedJobError
from submitit.slurm.slurm import SlurmInfoWatcher

from ssl_lab.errors import SslLabError, user_error

log = logging.getLogger("ssl_lab")

# A job that squeue no longer lists has ended: slurmctld keeps ended jobs for MinJobAge (5 min by
# default) and answers for every job it knows, so only an ended one can be missing.
ENDED = "ENDED"


class QueueWatcher(SlurmInfoWatcher):
    """submitit's job-state poller, asking ``squeue`` when ``sacct`` fails.

    Configured, not filtered: hiding submitit's "Bypassing sacct error" warnings (and sacct's own
    stderr) would leave every state UNKNOWN, and a job killed before it wrote its result would be
    waited for forever. ``squeue --states=all`` knows running, pending, requeued and recently
    ended jobs. The first poll tries ``sacct`` (quietly) and says once which one answers.
    """

    def __init__(self, delay_s: int = 60) -> None:  # submitit's SLURM default: 600
        super().__init__(delay_s)
        self.from_squeue: bool | None = None  # decided at the first poll

    def _make_command(self) -> list[str] | None:
        sacct = super()._make_command()
        if sacct is None:
            return None
        if self.from_squeue is None:
            self.from_squeue = not _succeeds(sacct)
            if self.from_squeue:
                log.info("sacct fails here (no SLURM accounting): job states come from squeue")
        if not self.from_squeue:
            return sacct
        return ["squeue", "--me", "--noheader", "--array", "--states=all", "--format=%i|%T|%N"]

    def read_info(self, string: bytes | str) -> dict[str, dict[str, str]]:
        if not self.from_squeue:
            return super().read_info(string)
        text = string.decode() if isinstance(string, bytes) else string
        listed = super().read_info("JobID|State|NodeList\n" + text)  # sacct's columns
        return {**{job: {"State": ENDED} for job in self._registered}, **listed}


def _succeeds(command: list[str]) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def launch(
    launcher: submitit_launcher.BaseSubmititLauncher,
    job_overrides: Sequence[Sequence[str]],
    initial_job_idx: int,
) -> Sequence[JobReturn]:
    """Submit one SLURM job (array task) per sweep job, as Hydra's ``submitit_slurm`` launcher
    does; wait for all of them, then name each failure in one line and exit with status 1."""
    assert launcher.config is not None
    try:
        _check_one_shape(job_overrides)
    except SslLabError as err:
        print(f"ssl-lab: error: {err}", file=sys.stderr)
        sys.exit(2)
    # submitit's SLURM jobs share one watcher, a class attribute: this sweep's jobs use ours
    submitit.SlurmJob.watcher = QueueWatcher()
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    log.info(f"submitting {len(job_overrides)} job(s) to SLURM; sweep output dir: {sweep_dir}")
    nums = range(initial_job_idx, initial_job_idx + len(job_overrides))
    for num, overrides in zip(nums, job_overrides):
        log.info(f"\t#{num} : {' '.join(filter_overrides(overrides))}")
    jobs = _executor(launcher).map_array(
        launcher,
        [list(overrides) for overrides in job_overrides],
        ["hydra.sweep.dir"] * len(nums),
        list(nums),
        [f"job_id_for_{num}" for num in nums],
        [Singleton.get_state()] * len(nums),
    )
    log_of = "stdout" if launcher.params.get("stderr_to_stdout") else "stderr"
    returns, failures = [], []
    for num, overrides, job in zip(nums, job_overrides, jobs):
        ret, failure = _wait_for(job)
        if ret is not None:
            returns.append(ret)
        if failure is not None:
            # the job's first task (rank 0 under DDP) wrote this log
            failures.append((num, overrides, failure, getattr(job.task(0).paths, log_of)))
    shared = _shared(job_overrides)
    for num, overrides, failure, path in failures:
        choices = " ".join(o for o in filter_overrides(overrides) if o not in shared)
        name = f"job {num} ({choices})" if choices else f"job {num}"
        print(f"ssl-lab: {name} failed: {failure}; log: {path}", file=sys.stderr)
    if failures:
        print(
            f"ssl-lab: {len(failures)} of {len(jobs)} jobs failed; the others' results are "
            f"in {sweep_dir}",
            file=sys.stderr,
        )
        sys.exit(1)
    return returns


def _wait_for(job: submitit.Job) -> tuple[JobReturn | None, str | None]:
    """The job's result once it has ended, and what went wrong if something did."""
    try:
        ret = job.results()[0]
    except UncompletedJobError:  # killed, cancelled, out of requeues: no result was written
        return None, f"ended without a result ({job.state})"
    except FailedJobError as err:  # raised outside Hydra's job (e.g. unpickling the job)
        trace = str(err).split("-" * 22)  # submitit's message puts the trace between rules
        return None, _last_line(trace[1] if len(trace) > 2 else str(err))
    if ret.status == JobStatus.FAILED:  # raised inside the job, which Hydra recorded
        return ret, _describe(ret._return_value)
    return ret, None


def _shared(job_overrides: Sequence[Sequence[str]]) -> set[str]:
    """The overrides every job of the sweep has (the others are what the sweep varies)."""
    return set.intersection(*(set(overrides) for overrides in job_overrides))


# What sets a job's tasks, GPUs and nodes (hydra/launcher/slurm.yaml)
_SHAPE_KEYS = {"trainer", "trainer.devices", "trainer.accelerator", "trainer.num_nodes"}


def _check_one_shape(job_overrides: Sequence[Sequence[str]]) -> None:
    """One job array has one shape, resolved before the sweep: a sweep that varies the trainer
    would give some jobs the wrong number of tasks or GPUs, found only once they run."""
    shared = _shared(job_overrides)
    swept = {o.split("=")[0].lstrip("+~") for ovs in job_overrides for o in ovs if o not in shared}
    varying = sorted(swept & _SHAPE_KEYS)
    if varying:
        raise SslLabError(
            f"hydra/launcher=slurm gives every job of a sweep the same tasks and GPUs (from "
            f"trainer.devices), but {', '.join(varying)} varies: sweep it in separate commands"
        )


def _executor(launcher: submitit_launcher.BaseSubmititLauncher) -> submitit.AutoExecutor:
    """The executor Hydra's launcher builds, from the same ``hydra.launcher`` parameters."""
    params = dict(launcher.params)
    cluster = launcher._EXECUTOR
    executor = submitit.AutoExecutor(
        cluster=cluster,
        folder=params.pop("submitit_folder"),
        **{f"{cluster}_max_num_timeout": params.pop("max_num_timeout")},
    )
    shared = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(
        **{k if k in shared else f"{cluster}_{k}": v for k, v in params.items()}
    )
    return executor


def _describe(err: Any) -> str:
    cause = user_error(err) if isinstance(err, BaseException) else None
    if cause is not None:
        return str(cause)
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no message"
