"""``ssl-lab-report --wandb``: one summary run in the sweep's W&B group, read back from its offline
files: the .wandb transaction log (records in wandb's own protobuf) and the tables and images
its summary points to."""

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import TINY, read_metrics, run_cli

from ssl_lab import cli

BLOCK = 32768  # the .wandb file is a LevelDB-style log: 32 KiB blocks of 7-byte-headed chunks


def wandb_records(path: Path) -> Iterator:
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B", path
    pos, parts = 7, b""
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:  # a block's tail too short for a header is padding
            pos += BLOCK - pos % BLOCK
            continue
        length, kind = int.from_bytes(data[pos + 4 : pos + 6], "little"), data[pos + 6]
        parts += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a whole record, or the last chunk of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(parts)
            parts = b""
            yield record


def _fold(items, into: dict) -> None:
    """Config and summary items name their key by ``key`` or, nested, by ``nested_key``."""
    for item in items:
        *parents, leaf = list(item.nested_key) or [item.key]
        node = into
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = json.loads(item.value_json)


def offline_run(run_dir: Path) -> dict:
    """An offline W&B run as its .wandb file tells it: the run record's fields, the config and
    the summary (latest values), and the directory of its files."""
    (log,) = run_dir.glob("run-*.wandb")
    run, config, summary = None, {}, {}
    for record in wandb_records(log):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            _fold(run.config.update, config)
        elif kind == "config":
            _fold(record.config.update, config)
        elif kind == "summary":
            _fold(record.summary.update, summary)
    return {
        "id": run.run_id,
        "project": run.project,
        "group": run.run_group,
        "job_type": run.job_type,
        "config": config,
        "summary": summary,
        "files": run_dir / "files",
    }


def table(run: dict, key: str) -> list[dict]:
    """The rows of the table logged under ``key``, each as a dict by column."""
    entry = run["summary"][key]
    assert entry["_type"] == "table-file", entry
    data = json.loads((run["files"] / entry["path"]).read_text())
    return [dict(zip(data["columns"], line)) for line in data["data"]]


def image(run: dict, key: str) -> bytes:
    entry = run["summary"][key]
    assert entry["_type"] == "image-file", entry
    return (run["files"] / entry["path"]).read_bytes()


def report_wandb(directory: Path, monkeypatch) -> None:
    """``ssl-lab-report DIRECTORY --wandb``, the entry point called in this process."""
    monkeypatch.setattr(sys, "argv", ["ssl-lab-report", str(directory), "--wandb"])
    cli.report()


def _job(sweep: Path, name: str, pretext: str, downstream: str, score: float, labels: int = 10):
    (sweep / name / ".hydra").mkdir(parents=True)
    metrics = {
        "pretext": pretext,
        "downstream": downstream,
        "data": "digits",
        "backbone": "small_cnn",
        "seed": 0,
        "labels_per_class": labels,
        "label_fraction": None,
        "score": score,
        "score_name": "test/acc",
        "wandb_project": "ssl_lab",
        "wandb_group": str(sweep),  # as a sweep's job runs record their group
    }
    (sweep / name / "metrics.json").write_text(json.dumps(metrics))


def test_report_run_holds_matrices_gains_plots_references_and_left_out_runs(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    sweep = tmp_path / "sweep"
    scores = {"none": 0.5, "rotation": 0.6, "jigsaw": 0.7, "supervised": 0.9}
    for labels in (1, 10):
        for pretext, score in scores.items():
            _job(
                sweep,
                f"{pretext}-lp-{labels}",
                pretext,
                "linear_probe",
                score + labels / 100,
                labels,
            )
        _job(sweep, f"none-knn-{labels}", "none", "knn", 0.4, labels)
        _job(sweep, f"rotation-knn-{labels}", "rotation", "knn", 0.3, labels)
        _job(sweep, f"classical-{labels}", "none", "classical", 0.45, labels)
    (sweep / "killed" / ".hydra").mkdir(parents=True)
    (sweep / "half-copied").mkdir()
    (sweep / "half-copied" / "metrics.json").write_text('{"pretext": "rotation", "sc')

    report_wandb(sweep, monkeypatch)
    (run_dir,) = (sweep / "wandb").glob("offline-run-*")
    run = offline_run(run_dir)
    assert (run["project"], run["group"], run["job_type"]) == ("ssl_lab", str(sweep), "report")
    assert f"W&B run {run['id']} (job_type=report" in capsys.readouterr().out

    matrix = {r["pretext"]: r for r in table(run, "matrix/digits/small_cnn/10_labels_class")}
    assert list(matrix) == ["none", "supervised", "jigsaw", "rotation"]
    assert matrix["jigsaw"]["linear_probe mean"] == pytest.approx(0.8)
    assert matrix["jigsaw"]["linear_probe gain"] == pytest.approx(0.2)
    assert matrix["rotation"]["knn gain"] == pytest.approx(-0.1)
    assert matrix["jigsaw"]["knn mean"] is None and matrix["none"]["knn std"] == 0
    assert "matrix/digits/small_cnn/1_labels_class" in run["summary"]
    # the best self-supervised pretext per downstream task: references (supervised) excluded
    best = "best/digits/small_cnn/10_labels_class"
    assert run["summary"][f"{best}/linear_probe/pretext"] == "jigsaw"
    assert run["summary"][f"{best}/linear_probe/gain"] == pytest.approx(0.2)
    assert run["summary"][f"{best}/knn/pretext"] == "rotation"
    assert f"{best}/classical/pretext" not in run["summary"]

    curves = table(run, "label_efficiency_data")
    assert len(curves) == 2 * 7 and {r["labels_per_class"] for r in curves} == {1, 10}
    references = {(r["reference"], r["downstream"], r["budget"]) for r in table(run, "references")}
    assert ("classical on pixels", "classical", "10 labels/class") in references
    assert ("random init", "knn", "1 labels/class") in references
    assert ("supervised pretraining", "linear_probe", "1 labels/class") in references
    assert len(references) == 2 * 4
    left_out = {
        Path(r["path"]).relative_to(sweep).parts[0]: r["reason"] for r in table(run, "left_out")
    }
    assert left_out["killed"].startswith("no metrics.json")
    assert left_out["half-copied"].startswith("not valid JSON")
    assert len(left_out) == 2
    assert run["summary"]["runs/complete"] == 2 * 7 and run["summary"]["runs/unreadable"] == 1
    for key in ("transfer_matrix", "label_efficiency"):
        assert image(run, key)[:4] == b"\x89PNG"


def test_a_tree_of_two_sweeps_is_refused_in_one_line(tmp_path, monkeypatch, capsys):
    _job(tmp_path / "a", "0", "none", "knn", 0.5)
    _job(tmp_path / "b", "0", "none", "knn", 0.6)
    with pytest.raises(SystemExit) as stopped:
        report_wandb(tmp_path, monkeypatch)
    assert stopped.value.code == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "2 W&B groups" in error and str(tmp_path / "a") in error
    assert not (tmp_path / "wandb").exists()


@pytest.mark.slow
def test_a_wandb_sweep_and_its_report_run_share_one_group_and_a_rerun_updates_the_run(
    tmp_path, monkeypatch
):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    # knn and kmeans do not train: no downstream.epochs to override
    tiny = [a for a in TINY if not a.startswith(("logger=", "downstream."))]
    result = run_cli(
        tmp_path,
        "-m",
        "hydra.sweep.dir=sweep",  # relative to where the sweep starts: the group is absolute
        "logger=wandb",
        "pretext=none,rotation",
        "downstream=knn,kmeans",
        "data.labels_per_class=10",
        *tiny,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    sweep = tmp_path / "sweep"
    jobs = {(m["pretext"], m["downstream"]): m for m in read_metrics(sweep)}
    assert len(jobs) == 4

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the report starts from another directory
    report_wandb(sweep, monkeypatch)
    (first,) = (sweep / "wandb").glob("offline-run-*-report-*")
    first_id = offline_run(first)["id"]
    report_wandb(sweep, monkeypatch)
    (run_dir,) = (sweep / "wandb").glob("offline-run-*-report-*")  # one run, updated
    run = offline_run(run_dir)
    assert run["id"] == first_id and (run["group"], run["job_type"]) == (str(sweep), "report")

    for job_dir in sweep.glob("[0-9]*/wandb/offline-run-*"):
        job = offline_run(job_dir)
        assert (job["project"], job["group"]) == (run["project"], run["group"])
        choices = {k: job["config"][k] for k in ("pretext", "downstream", "data", "backbone")}
        metrics = jobs[choices["pretext"], choices["downstream"]]
        for key in ("pretext", "downstream", "data", "backbone", "labels_per_class", "seed"):
            assert job["config"][key] == metrics[key], key  # the keys a W&B panel groups by
        assert job["config"]["cfg"]["downstream"]["name"] == job["job_type"]
    assert len(list(sweep.glob("[0-9]*/wandb/offline-run-*"))) == 4

    (matrix,) = [key for key in run["summary"] if key.startswith("matrix/")]
    cells = {r["pretext"]: r for r in table(run, matrix)}
    for (pretext, downstream), metrics in jobs.items():  # the 4 cells and their gains
        assert cells[pretext][f"{downstream} mean"] == pytest.approx(metrics["score"])
        gain = metrics["score"] - jobs["none", downstream]["score"]
        assert cells[pretext][f"{downstream} gain"] == pytest.approx(gain)
    assert image(run, "transfer_matrix")[:4] == b"\x89PNG"
    assert run["summary"]["best/knn/pretext"] == "rotation"
