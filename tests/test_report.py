import base64
import json

from ssl_lab.report import write_report


def _run(root, name, pretext, downstream, score, seed=0, labels=10, picture=None):
    job = root / name
    (job / ".hydra").mkdir(parents=True)
    (job / "metrics.json").write_text(
        json.dumps(
            {
                "pretext": pretext,
                "downstream": downstream,
                "data": "digits",
                "backbone": "small_cnn",
                "seed": seed,
                "labels_per_class": labels,
                "label_fraction": None,
                "n_labels": 10 * labels,
                "score": score,
                "score_name": "test/acc",
            }
        )
    )
    if picture:
        (job / f"pretext_{pretext}.png").write_bytes(picture)


def test_report_tables_gains_plots_and_incomplete_runs(tmp_path):
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    )
    _run(tmp_path, "0", "none", "linear_probe", 0.80, seed=0)
    _run(tmp_path, "1", "none", "linear_probe", 0.70, seed=1)
    _run(tmp_path, "2", "rotation", "linear_probe", 0.90, seed=0, picture=png)
    _run(tmp_path, "3", "rotation", "linear_probe", 0.80, seed=1, picture=png)
    _run(tmp_path, "4", "rotation", "finetune", 0.95)
    _run(tmp_path, "5", "none", "linear_probe", 0.50, labels=1)
    _run(tmp_path, "6", "rotation", "linear_probe", 0.60, labels=1)
    (tmp_path / "7" / ".hydra").mkdir(parents=True)  # a job that died before metrics.json

    text, incomplete = write_report(tmp_path)
    assert incomplete == [tmp_path / "7"]
    assert "| pretext | finetune | linear_probe |" in text
    assert "| none |  | 0.750 ± 0.071 |" in text
    assert "| rotation | 0.950 | 0.850 ± 0.071 (+0.100) |" in text
    assert "| rotation | 0.600 (+0.100) |" in text  # the 1-label table
    assert "### Incomplete or failed runs" in text and str(tmp_path / "7") in text

    csv_lines = (tmp_path / "report.csv").read_text().splitlines()
    assert csv_lines[0].startswith("data,backbone,budget,labels_per_class,pretext,downstream")
    assert len(csv_lines) == 1 + 5
    for name in ("transfer_matrix.png", "label_efficiency.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    page = (tmp_path / "report.html").read_text()
    assert "<table>" in page and "0.850 ± 0.071 (+0.100)" in page
    assert page.count("data:image/png;base64,") == 3  # two plots + one (deduplicated) picture
    assert str(tmp_path / "7") in page


def test_one_label_budget_makes_no_label_efficiency_plot(tmp_path):
    _run(tmp_path, "0", "none", "finetune", 0.5)
    write_report(tmp_path)
    assert (tmp_path / "transfer_matrix.png").exists()
    assert not (tmp_path / "label_efficiency.png").exists()


def test_pretrainings_of_different_lengths_get_rows_of_their_own(tmp_path):
    from ssl_lab.report import collect, summarise

    for name, epochs, score in (("a", 1, 0.5), ("b", 8, 0.7)):
        _run(tmp_path, name, "mlm", "finetune", score)
        path = tmp_path / name / "metrics.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "pretext_epochs": epochs}))
    _run(tmp_path, "c", "none", "finetune", 0.6)
    rows = {r["pretext"]: r for r in summarise(collect(tmp_path)[0])}
    assert set(rows) == {"none", "mlm (1 ep)", "mlm (8 ep)"}
    assert round(rows["mlm (8 ep)"]["gain"], 3) == 0.1 and rows["mlm (1 ep)"]["seeds"] == 1
