"""The sweep's comparison where W&B users look: ``ssl-lab-report DIR --wandb`` logs one summary
run (``job_type=report``) into the group and project of the sweep's job runs.

It holds the matrix tables with gains, the heatmap and label-efficiency plots, the label-efficiency
data, the references, the runs left out of the table, and in its summary the best pretext per
downstream task. Its id is a hash of the sweep directory, so a rerun updates that run instead of
adding one. Imports wandb (slow): the CLI imports this module only for ``--wandb``.
"""

import hashlib
import os
import re
import shutil
from pathlib import Path
from typing import Any

import wandb
from omegaconf import OmegaConf

from ssl_lab.errors import SslLabError
from ssl_lab.report import (
    REFERENCE_ORDER,
    SINGLE_RUNS_GROUP,
    Sweep,
    label_efficiency_rows,
    summarise,
    tables,
)

CLASSICAL = "classical"  # the downstream task that ignores the backbone: a reference, not a result
STATS = ("mean", "std", "gain")
_WANDB_YAML = Path(__file__).resolve().parent / "conf" / "logger" / "wandb.yaml"


def place(sweep: Sweep, root: Path) -> dict[str, Any]:
    """The ``project``, ``group`` and ``entity`` the sweep's job runs logged to (their metrics.json
    records them). When no job logged to W&B: the jobs' default project, and as the group the
    directory's absolute path, which is what a sweep's jobs take as their group."""
    found = {
        (m.get("wandb_project"), m["wandb_group"], m.get("wandb_entity"))
        for m in sweep.runs
        if m.get("wandb_group")
    }
    if len(found) > 1:
        groups = ", ".join(sorted(f"{project}/{group}" for project, group, _ in found))
        raise SslLabError(
            f"--wandb: the runs under {root} logged to {len(found)} W&B groups ({groups}); "
            "give one sweep's directory"
        )
    if found:
        ((project, group, entity),) = found
    else:
        project = OmegaConf.load(_WANDB_YAML).wandb.project
        group, entity = os.path.abspath(root), None
    return {"project": project, "group": group, "entity": entity}


def report_run_id(group: str, root: Path) -> str:
    """A hash of the sweep directory (the group its jobs share); for single runs, which share one
    group, of the directory's path."""
    key = os.path.abspath(root) if group == SINGLE_RUNS_GROUP else group
    return "report-" + hashlib.sha256(key.encode()).hexdigest()[:16]


def _slug(text: str) -> str:
    return re.sub(r"[^\w.=-]+", "_", text).strip("_")


def _block(row: dict[str, Any]) -> str:
    """The name of a row's table in W&B keys: data/backbone/budget."""
    return "/".join(_slug(str(row[k])) for k in ("data", "backbone", "budget"))


def _table_block(table: dict[str, Any]) -> str:
    return _block(next(cell for line in table["cells"] for cell in line if cell is not None))


def matrix_table(table: dict[str, Any]) -> wandb.Table:
    """Rows: pretext; per downstream task three columns: mean, std over seeds, gain over none."""
    columns = ["pretext"] + [f"{d} {stat}" for d in table["header"][1:] for stat in STATS]
    data = []
    for line, cells in zip(table["body"], table["cells"]):
        values = [None if cell is None else cell[stat] for cell in cells for stat in STATS]
        data.append([line[0], *values])
    return wandb.Table(columns=columns, data=data)


def _rows_table(rows: list[dict[str, Any]], columns: list[str]) -> wandb.Table:
    return wandb.Table(columns=columns, data=[[r[c] for c in columns] for r in rows])


def references(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows every transfer number is read beside: random init (pretext=none), supervised
    pretraining, and the classical model on pixels."""
    names = {"none": "random init", "supervised": "supervised pretraining"}
    found = []
    for r in rows:
        if r["pretext"] in REFERENCE_ORDER:
            name = "classical on pixels" if r["downstream"] == CLASSICAL else names[r["pretext"]]
            found.append({**r, "reference": name})
    return found


def best(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Summary keys ``best/<downstream>/{pretext,mean,gain}``: the self-supervised pretext with
    the highest mean score per downstream task (per data/backbone/budget, named in the key, when
    the sweep has several)."""
    several = len({_block(r) for r in rows}) > 1
    winners: dict[str, dict[str, Any]] = {}
    for r in rows:
        if r["pretext"] in REFERENCE_ORDER:
            continue
        key = "best/" + (f"{_block(r)}/" if several else "") + r["downstream"]
        if key not in winners or r["mean"] > winners[key]["mean"]:
            winners[key] = r
    return {f"{key}/{k}": r[k] for key, r in winners.items() for k in ("pretext", "mean", "gain")}


def _drop_offline_copies(wandb_dir: Path, run_id: str) -> None:
    """Offline, every start writes a new run directory, even for the same id. The report run is a
    whole snapshot each time: older copies would only sync outdated tables into the same run."""
    for old in wandb_dir.glob(f"offline-run-*-{run_id}"):
        shutil.rmtree(old)


def log_report(root: Path, sweep: Sweep) -> str:
    """Log the summary run of the sweep under ``root`` (after ``write_report``, whose plots it
    logs); return one line saying where it went."""
    rows = summarise(sweep.runs)
    where = place(sweep, root)
    run_id = report_run_id(where["group"], root)
    mode = os.environ.get("WANDB_MODE", "offline")
    if mode == "offline":
        _drop_offline_copies(root / "wandb", run_id)
    payload: dict[str, Any] = {f"matrix/{_table_block(t)}": matrix_table(t) for t in tables(rows)}
    for name in ("transfer_matrix", "label_efficiency"):
        if (root / f"{name}.png").is_file():
            payload[name] = wandb.Image(str(root / f"{name}.png"))
    columns = ["data", "backbone", "downstream", "pretext", "labels_per_class", "score_name"]
    columns += ["mean", "std", "seeds", "gain"]
    if efficiency := label_efficiency_rows(rows):
        payload["label_efficiency_data"] = _rows_table(efficiency, columns)
    payload["references"] = _rows_table(
        references(rows),
        ["reference", "data", "backbone", "budget", "downstream", "score_name", "mean", "std"],
    )
    left_out = [[str(p), "no metrics.json (failed, killed or running)"] for p in sweep.incomplete]
    left_out += [[str(p), reason] for p, reason in sweep.unreadable]
    payload["left_out"] = wandb.Table(columns=["path", "reason"], data=left_out)
    with wandb.init(
        **where,
        id=run_id,
        resume="allow",
        name="report",
        job_type="report",
        dir=str(root),
        mode=mode,
        config={"sweep_dir": os.path.abspath(root)},
        settings=wandb.Settings(console="off"),
    ) as run:
        run.log(payload)
        run.summary.update(best(rows))
        run.summary.update(
            {
                "runs/complete": len(sweep.runs),
                "runs/incomplete": len(sweep.incomplete),
                "runs/unreadable": len(sweep.unreadable),
            }
        )
        files = Path(run.dir).parent
        url = run.url if mode == "online" else None
    wandb.teardown()  # finish() can return before the run's files are flushed; this waits for them
    head = f"W&B run {run_id} (job_type=report; project {where['project']}, group {where['group']})"
    if mode == "offline":
        return f"{head} logged offline to {files}: `wandb sync {files}` uploads it"
    return f"{head} logged" + (f": {url}" if url else f" ({mode})")
