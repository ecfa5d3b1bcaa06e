"""Sweeps through Hydra's launcher and sweeper plugins, as a cluster user runs them."""

import pytest
from conftest import TINY, read_metrics, run_cli


@pytest.mark.slow
def test_submitit_local_launcher_runs_a_two_job_sweep(tmp_path):
    result = run_cli(tmp_path, "-m", "hydra/launcher=local", "pretext=none,rotation", *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = read_metrics(tmp_path / "outputs" / "multirun")
    assert sorted(m["pretext"] for m in runs) == ["none", "rotation"]
    assert all(m["score"] > 0.3 for m in runs)


@pytest.mark.slow
def test_optuna_preset_maximises_the_score_with_sqlite_storage(tmp_path):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    result = run_cli(
        tmp_path,
        "-m",
        "experiment=optuna_pretext",
        "hydra.sweeper.n_trials=2",
        f"hydra.sweeper.storage={storage}",
        *TINY,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = read_metrics(tmp_path / "outputs" / "multirun")
    assert len(runs) == 2 and len({m["pretext_epochs"] for m in runs} | {0}) >= 2
    (summary,) = (tmp_path / "outputs" / "multirun").rglob("optimization_results.yaml")
    best = float(summary.read_text().split("best_value:")[1].split()[0])
    assert best == pytest.approx(max(m["score"] for m in runs))
    assert (tmp_path / "study.db").stat().st_size > 0


def test_slurm_launcher_refuses_a_sweep_over_the_trainer_before_submitting(tmp_path):
    # one job array has one shape (tasks, GPUs): refused in one line, before sbatch is needed
    result = run_cli(tmp_path, "-m", "hydra/launcher=slurm", "trainer=cpu,ddp_cpu", *TINY)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "ssl-lab: error: hydra/launcher=slurm gives every job of a sweep the same tasks and GPUs "
        "(from trainer.devices), but trainer varies: sweep it in separate commands"
    )
    assert not list(tmp_path.rglob(".submitit"))  # nothing was submitted
