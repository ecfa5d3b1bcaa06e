"""Whole runs through the real Hydra config and the real command line, with tiny settings."""

import json
from pathlib import Path

import pytest
from conftest import TINY, logged, read_metrics, run_cli

REQUIRED = {"pretext", "downstream", "data", "backbone", "seed", "score", "score_name", "n_labels"}


PRETEXTS = ("none", "rotation", "supervised", "jigsaw", "inpainting")


@pytest.mark.slow
def test_sweep_of_pretext_by_downstream_writes_one_metrics_file_per_job(tmp_path):
    result = run_cli(
        tmp_path,
        "-m",
        f"pretext={','.join(PRETEXTS)}",
        "downstream=linear_probe,finetune",
        "data.labels_per_class=20",
        *TINY,
        "logger=csv",
        "pretext.epochs=3",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = read_metrics(tmp_path / "outputs" / "multirun")
    assert sorted((m["pretext"], m["downstream"]) for m in runs) == sorted(
        (p, d) for p in PRETEXTS for d in ("finetune", "linear_probe")
    )
    for m in runs:
        assert REQUIRED <= m.keys()
        assert m["score_name"] == "test/acc" and m["n_labels"] == 200
        assert m["score"] > 0.2, m  # chance is 0.1 on ten digit classes (2 tiny epochs)
        assert ("pretext_loss" in m) == (m["pretext"] != "none")
    supervised = [m["score"] for m in runs if m["pretext"] == "supervised"]
    assert min(supervised) > 0.6

    # each pretext task pretrains once: its first job trains, its second reuses the cache
    jobs = sorted((tmp_path / "outputs" / "multirun").glob("*/*/*/"), key=lambda p: int(p.name))
    cache_use = {}
    for job in jobs:
        m = json.loads((job / "metrics.json").read_text())
        cache_use.setdefault(m["pretext"], []).append(m["pretrain_cache"])
        if m["pretext"] == "none":
            continue
        info = json.loads((job / "run_info.json").read_text())  # paths: not in metrics.json
        assert (Path(info["pretrain_dir"]) / "backbone.safetensors").is_file()
        has_picture = m["pretext"] in ("rotation", "jigsaw", "inpainting")
        assert (job / f"pretext_{m['pretext']}.png").is_file() == has_picture
        if m["pretrain_cache"] == "miss":
            losses = logged(job, "pretrain/train_loss")
            assert len(losses) == 3 and losses[-1] < losses[0], (m["pretext"], losses)
    assert cache_use == {"none": ["none", "none"], **{p: ["miss", "hit"] for p in PRETEXTS[1:]}}


@pytest.mark.slow
def test_pretext_loss_falls_and_the_backbone_is_handed_over(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli(
        tmp_path,
        f"hydra.run.dir={run_dir}",
        *TINY,
        "logger=csv",
        "pretext.epochs=4",
        "data.labels_per_class=10",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test/acc" in result.stdout  # the summary table
    losses = logged(run_dir, "pretrain/train_loss")
    assert len(losses) == 4 and losses[-1] < losses[0]
    (metrics,) = read_metrics(run_dir)
    assert metrics["pretext_loss"] == pytest.approx(losses[-1], rel=1e-5)
    assert metrics["pretrain_cache"] == "miss"
    info = json.loads((run_dir / "run_info.json").read_text())
    weights = Path(info["pretrain_dir"]) / "backbone.safetensors"

    # transfer again from the handed-over weights, without pretraining
    again = tmp_path / "again"
    result = run_cli(
        tmp_path,
        f"hydra.run.dir={again}",
        *TINY,
        "data.labels_per_class=10",
        f"backbone.checkpoint={weights}",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (reused,) = read_metrics(again)
    assert reused["pretext"] == "rotation" and "pretext_loss" not in reused
    assert reused["pretrain_cache"] == "external"
    assert reused["score"] == pytest.approx(metrics["score"], abs=1e-6)
    assert not (again / "backbone.safetensors").exists()
