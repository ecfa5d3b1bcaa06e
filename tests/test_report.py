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

    text, sweep = write_report(tmp_path)
    assert sweep.incomplete == [tmp_path / "7"] and sweep.unreadable == []
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


def test_one_label_budget_makes_no_label_efficiency_plot_and_drops_an_earlier_one(tmp_path):
    _run(tmp_path, "0", "none", "finetune", 0.5)
    (tmp_path / "label_efficiency.png").write_bytes(b"an earlier report's plot")
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
    rows = {r["pretext"]: r for r in summarise(collect(tmp_path).runs)}
    assert set(rows) == {"none", "mlm (1 ep)", "mlm (8 ep)"}
    assert round(rows["mlm (8 ep)"]["gain"], 3) == 0.1 and rows["mlm (1 ep)"]["seeds"] == 1


def test_unreadable_metrics_are_listed_with_the_reason_and_the_rest_is_tabled(tmp_path):
    _run(tmp_path, "good-none", "none", "linear_probe", 0.5)
    _run(tmp_path, "good-rotation", "rotation", "linear_probe", 0.75)
    bad = {
        "truncated": ('{"pretext": "rotation", "sco', "not valid JSON (Unterminated string"),
        "empty": ("", "not valid JSON (Expecting value: line 1 column 1"),
        "array": ("[0.9]", "not a JSON object but an array"),
        "no-score": ('{"pretext": "jigsaw", "downstream": "linear_probe"}', "lacks data, "),
        "text-score": (
            json.dumps(
                {
                    **dict.fromkeys(("pretext", "downstream", "data", "backbone"), "x"),
                    "score": "0.9",
                    "score_name": "test/acc",
                }
            ),
            "score is not a number: '0.9'",
        ),
    }
    for name, (content, _) in bad.items():
        (tmp_path / name / ".hydra").mkdir(parents=True)
        (tmp_path / name / "metrics.json").write_text(content)
    (tmp_path / "binary" / ".hydra").mkdir(parents=True)
    (tmp_path / "binary" / "metrics.json").write_bytes(b"\xff\xfe\x00garbage")

    text, sweep = write_report(tmp_path)
    reasons = {p.parent.name: reason for p, reason in sweep.unreadable}
    assert sorted(reasons) == sorted([*bad, "binary"]) and sweep.incomplete == []
    for name, (_, reason) in bad.items():
        assert reasons[name].startswith(reason), (name, reasons[name])
        # one line each, naming the file and why, beside the table of the good runs
        assert f"- {tmp_path / name / 'metrics.json'}: {reasons[name]}\n" in text
    assert reasons["binary"].startswith("cannot be read (UnicodeDecodeError")
    assert all("\n" not in reason for reason in reasons.values())
    assert "| rotation | 0.750 (+0.250) |" in text and "### Unreadable runs" in text
    assert len((tmp_path / "report.csv").read_text().splitlines()) == 1 + 2
    page = (tmp_path / "report.html").read_text()
    assert "Unreadable runs" in page and "not a JSON object but an array" in page
