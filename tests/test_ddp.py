"""The DDP code path on CPU: two processes (gloo), one writer, every test example counted once."""

import pytest
from conftest import read_metrics, run_cli


@pytest.mark.slow
def test_two_process_scores_match_one_process_in_one_sweep(tmp_path):
    # a sweep of DDP jobs in one Hydra process also checks that each job's helper process runs
    # only its own job, and that the next job starts a fresh process group
    result = run_cli(
        tmp_path,
        "-m",
        "trainer=cpu,ddp_cpu",
        "pretext=none",
        "downstream=knn,linear_probe",
        "logger=none",
        "data.labels_per_class=20",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = read_metrics(tmp_path / "outputs" / "multirun")
    assert len(runs) == 4  # the helper processes wrote no metrics of their own
    jobs = sorted((tmp_path / "outputs" / "multirun").glob("*/*/*/"), key=lambda p: int(p.name))
    assert all(len(list(job.glob("metrics.json"))) == 1 for job in jobs)
    by_trainer = {}
    for job in jobs:
        (m,) = read_metrics(job)
        trainer = "ddp" if (job / "train_ddp_process_1.log").exists() else "single"
        by_trainer[trainer, m["downstream"]] = m["score"]
    assert len(by_trainer) == 4
    # kNN trains nothing: gathered features give exactly the single-process answer
    assert by_trainer["ddp", "knn"] == by_trainer["single", "knn"]
    # a trained head differs only by the order the two processes saw the batches in
    assert by_trainer["ddp", "linear_probe"] == pytest.approx(
        by_trainer["single", "linear_probe"], abs=0.01
    )
