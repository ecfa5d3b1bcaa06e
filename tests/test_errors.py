"""Bad input ends with one line naming the cause, a non-zero exit and no traceback, before any
work: nothing is written to the cache or outputs/ beyond the run directory's .hydra."""

from pathlib import Path

import pytest
from conftest import TINY, read_metrics, run_cli

TEXT = ["data=reviews_zh", "logger=none"]


def written(outputs: Path) -> list[str]:
    """Files a run left under ``outputs`` other than Hydra's record of its config."""
    return sorted(
        str(p.relative_to(outputs))
        for p in outputs.rglob("*")
        if p.is_file() and ".hydra" not in p.relative_to(outputs).parts
    )


def assert_refused(result, tmp_path: Path, cause: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("ssl-lab: error: "), result.stderr
    assert cause in lines[0]
    assert "Traceback" not in result.stdout + result.stderr
    # no cache entry, no run_info.json, no log (a sweep: Hydra's multirun.yaml, its .hydra)
    assert [p for p in written(tmp_path / "outputs") if Path(p).name != "multirun.yaml"] == []


# downstream.* keys differ between downstream tasks: these runs fail before training anyway
IMAGE = [o for o in TINY if not o.startswith("downstream.")]


@pytest.mark.parametrize(
    "overrides, cause",
    [
        (
            ["pretext=nonexistent"],
            "unknown pretext 'nonexistent' (choose from: clm, inpainting, jigsaw, "
            "mae, mlm, none, rotation, simclr, supervised)",
        ),
        (["data.labels_per_class=0"], "data.labels_per_class=0: an integer >= 1 or null"),
        (["data.labels_per_class=500"], "larger than the smallest class"),
        (["backbone.checkpoint=/missing/file"], "backbone.checkpoint: no such file: /missing/file"),
        (["data.modality=text"], "backbone=small_cnn works on image data, but data=digits is text"),
        (["pretext=mlm"], "pretext=mlm works on text data, but data=digits is image"),
        (
            ["downstream=classical"],
            "downstream=classical ignores the backbone: run it with pretext=none, "
            "not pretext=rotation",
        ),
        # issue 20's done-when cases: each stops before training, with nothing in the cache
        (["pretext.epochs=-1"], "pretext.epochs=-1: an integer >= 0"),
        (["downstream.epochs=-1"], "downstream.epochs=-1: an integer >= 1"),
        (["pretext.lr=abc"], "pretext.lr=abc: a number > 0"),
        (["data.size=0"], "data.size=0: an integer >= 1"),
        (["data.batch_size=0"], "data.batch_size=0: an integer >= 1"),
        (
            [*TEXT, "pretext=mlm", "pretext.task.probability=1.5"],
            "pretext.task.probability=1.5: a number > 0 and < 1",
        ),
        (["pretext.lrr=1"], "pretext.lrr=1: pretext has no key lrr (did you mean lr?)"),
        (["seed=-3"], "seed=-3: an integer >= 0 and <= 4294967295"),
    ],
)
def test_bad_input_fails_with_one_clear_line(tmp_path, overrides, cause):
    result = run_cli(tmp_path, *(IMAGE if "data=reviews_zh" not in overrides else []), *overrides)
    assert_refused(result, tmp_path, cause)


@pytest.mark.slow
def test_a_tsv_line_without_a_tab_is_named_by_file_and_line(tmp_path):
    train = tmp_path / "train.tsv"
    train.write_text("0\tgood one\n1\tbad one\nno tab here\n", encoding="utf-8")
    result = run_cli(
        tmp_path, *TEXT, "data=tsv", f"data.train_file={train}", "data.num_classes=2", "pretext=mlm"
    )
    assert_refused(result, tmp_path, f"{train}, line 3: expected a label (column 0) and a text")


def test_in_a_sweep_a_value_of_the_wrong_type_refuses_the_sweep_before_any_job(tmp_path):
    """Hydra composes every job of a sweep before the first starts."""
    result = run_cli(tmp_path, "-m", *IMAGE, "pretext.lr=1e-3,abc")
    assert_refused(result, tmp_path, "pretext.lr=abc: a number > 0")


@pytest.mark.slow
def test_in_a_sweep_a_value_out_of_range_fails_its_job_in_one_line_and_the_others_run(tmp_path):
    result = run_cli(tmp_path, "-m", *IMAGE, "pretext=none", "downstream=knn", "seed=-1,0")
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    refusal = "ssl-lab: error: seed=-1: an integer >= 0 and <= 4294967295"
    assert result.stderr.splitlines()[0] == refusal  # the job's own line, when it failed
    (metrics,) = read_metrics(tmp_path / "outputs")
    assert metrics["seed"] == 0
