"""Collect the ``metrics.json`` of a sweep into one comparison: a table, plots and an HTML page.

Reads only ``metrics.json`` files (and the pretext pictures beside them); a run directory (one
with Hydra's ``.hydra/``) without ``metrics.json`` is listed as incomplete, and a ``metrics.json``
that cannot be read (truncated, half-copied, not a run's metrics) as unreadable with the reason:
never dropped silently, never hiding the rest of the sweep.
"""

import base64
import csv
import hashlib
import html
import io
import json
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ssl_lab.atomic import atomic_path

BASELINE = "none"
REFERENCE_ORDER = ["none", "supervised"]
SINGLE_RUNS_GROUP = "single-runs"  # the W&B group of jobs that were not part of a sweep
PLOTS = ("transfer_matrix.png", "label_efficiency.png")

# what summarise needs of every run; the rest of metrics.json is optional
REQUIRED_KEYS = ("pretext", "downstream", "data", "backbone", "score", "score_name")


@dataclass
class Sweep:
    """What a directory of runs holds: the metrics of complete runs (each with its ``_dir``), run
    directories without metrics.json, and metrics.json files that could not be read, each with
    the reason in one line."""

    runs: list[dict[str, Any]]
    incomplete: list[Path]
    unreadable: list[tuple[Path, str]]


_JSON_KINDS = {list: "an array", str: "a string", int: "a number", float: "a number"}
_JSON_KINDS.update({bool: "a boolean", type(None): "null"})


def read_metrics(path: Path) -> dict[str, Any]:
    """One run's metrics; ValueError with a one-line reason when the file is not a run's metrics."""
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot be read ({err.__class__.__name__}: {err})") from err
    except json.JSONDecodeError as err:
        raise ValueError(f"not valid JSON ({err})") from err
    if not isinstance(metrics, dict):
        raise ValueError(f"not a JSON object but {_JSON_KINDS[type(metrics)]}")
    missing = [k for k in REQUIRED_KEYS if k not in metrics]
    if missing:
        raise ValueError(f"lacks {', '.join(missing)}")
    if isinstance(metrics["score"], bool) or not isinstance(metrics["score"], (int, float)):
        raise ValueError(f"score is not a number: {metrics['score']!r}")
    return metrics


def collect(root: Path) -> Sweep:
    """Every run under ``root``, complete, incomplete or unreadable."""
    found = sorted(root.rglob("metrics.json"))
    runs, unreadable = [], []
    for path in found:
        try:
            metrics = read_metrics(path)
        except ValueError as err:
            unreadable.append((path, str(err)))
            continue
        metrics["_dir"] = path.parent
        runs.append(metrics)
    has_metrics = {p.parent for p in found}
    incomplete = sorted(p.parent for p in root.rglob(".hydra") if p.parent not in has_metrics)
    return Sweep(runs, incomplete, unreadable)


def _budget(m: dict[str, Any]) -> str:
    if m.get("labelled_images") is not None:
        return f"{m['labelled_images']} labelled images"
    if m.get("labels_per_class") is not None:
        return f"{m['labels_per_class']} labels/class"
    if m.get("label_fraction") is not None:
        return f"{m['label_fraction']:g} of labels"
    return "all labels"


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (data, backbone, label budget, pretext, downstream): mean, std over seeds, and
    the gain over ``pretext=none`` with the same everything else."""
    lengths: dict[str, set] = defaultdict(set)
    for m in runs:
        lengths[m["pretext"]].add(m.get("pretext_epochs"))

    def pretext(m: dict[str, Any]) -> str:  # pretrainings of several lengths stay apart
        name = m["pretext"]
        return name if len(lengths[name]) <= 1 else f"{name} ({m.get('pretext_epochs')} ep)"

    groups: dict[tuple, list[dict]] = defaultdict(list)
    for m in runs:
        groups[(m["data"], m["backbone"], _budget(m), pretext(m), m["downstream"])].append(m)
    rows = []
    for (data, backbone, budget, pretext, downstream), members in groups.items():
        scores = [float(m["score"]) for m in members]
        rows.append(
            {
                "data": data,
                "backbone": backbone,
                "budget": budget,
                "labels_per_class": members[0].get("labels_per_class"),
                "pretext": pretext,
                "downstream": downstream,
                "score_name": members[0]["score_name"],
                "mean": statistics.fmean(scores),
                "std": statistics.stdev(scores) if len(scores) > 1 else 0.0,
                "seeds": len(scores),
            }
        )
    baseline = {
        (r["data"], r["backbone"], r["budget"], r["downstream"]): r["mean"]
        for r in rows
        if r["pretext"] == BASELINE
    }
    for r in rows:
        base = baseline.get((r["data"], r["backbone"], r["budget"], r["downstream"]))
        r["gain"] = None if base is None else r["mean"] - base
    return sorted(
        rows,
        key=lambda r: (
            r["data"],
            r["backbone"],
            r["labels_per_class"] or 0,
            r["budget"],
            _pretext_order(r["pretext"]),
            r["downstream"],
        ),
    )


def _pretext_order(name: str) -> tuple[int, str]:
    return (REFERENCE_ORDER.index(name) if name in REFERENCE_ORDER else len(REFERENCE_ORDER), name)


def _cell(r: dict[str, Any]) -> str:
    text = f"{r['mean']:.3f}" + (f" ± {r['std']:.3f}" if r["seeds"] > 1 else "")
    if r["gain"] is not None and r["pretext"] != BASELINE:
        text += f" ({r['gain']:+.3f})"
    return text


def tables(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (data, backbone, budget): a table with pretext rows and downstream columns: its
    ``title``, ``header``, text ``body``, the grid of mean scores (``means``, NaN where no run)
    and the grid of summary rows (``cells``, None where no run)."""
    out = []
    for key in dict.fromkeys((r["data"], r["backbone"], r["budget"]) for r in rows):
        members = [r for r in rows if (r["data"], r["backbone"], r["budget"]) == key]
        columns = sorted({r["downstream"] for r in members})
        pretexts = sorted({r["pretext"] for r in members}, key=_pretext_order)
        by_cell = {(r["pretext"], r["downstream"]): r for r in members}
        out.append(
            {
                "title": f"data={key[0]}, backbone={key[1]}, {key[2]}",
                "header": ["pretext", *columns],
                "body": [
                    [p] + [_cell(by_cell[p, c]) if (p, c) in by_cell else "" for c in columns]
                    for p in pretexts
                ],
                "means": [
                    [by_cell[p, c]["mean"] if (p, c) in by_cell else float("nan") for c in columns]
                    for p in pretexts
                ],
                "cells": [[by_cell.get((p, c)) for c in columns] for p in pretexts],
            }
        )
    return out


def markdown(rows: list[dict[str, Any]], sweep: Sweep) -> str:
    parts = ["Cells: score mean ± std over seeds (gain over pretext=none in brackets).", ""]
    for table in tables(rows):
        parts += [
            f"### {table['title']}",
            "",
            "| " + " | ".join(table["header"]) + " |",
            "|" + "---|" * len(table["header"]),
        ]
        parts += ["| " + " | ".join(line) + " |" for line in table["body"]]
        parts.append("")
    if sweep.incomplete:
        parts += ["### Incomplete or failed runs (no metrics.json)", ""]
        parts += [*(f"- {p}" for p in sweep.incomplete), ""]
    if sweep.unreadable:
        parts += ["### Unreadable runs (metrics.json left out of the table)", ""]
        parts += [*(f"- {p}: {reason}" for p, reason in sweep.unreadable), ""]
    return "\n".join(parts)


def _figure_to_png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def transfer_matrix_png(rows: list[dict[str, Any]]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blocks = tables(rows)
    fig, axes = plt.subplots(1, len(blocks), figsize=(4.5 * len(blocks), 3.6), squeeze=False)
    for ax, table in zip(axes[0], blocks):
        image = ax.imshow(table["means"], cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(table["header"]) - 1), table["header"][1:], rotation=30, ha="right")
        ax.set_yticks(range(len(table["body"])), [line[0] for line in table["body"]])
        for i, line in enumerate(table["means"]):
            for j, value in enumerate(line):
                if value == value:  # not NaN
                    ax.text(j, i, f"{value:.3f}", ha="center", va="center", color="w", fontsize=8)
        ax.set_title(table["title"], fontsize=8)
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.tight_layout()
    png = _figure_to_png(fig)
    plt.close(fig)
    return png


def label_efficiency_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of the label-efficiency curves: those with a label count, when there are several
    counts; else none."""
    counted = [r for r in rows if r["labels_per_class"] is not None]
    return counted if len({r["labels_per_class"] for r in counted}) >= 2 else []


def label_efficiency_png(rows: list[dict[str, Any]]) -> bytes | None:
    """Score against labels per class, one line per pretext, one panel per downstream task;
    None unless several label counts are present."""
    counted = label_efficiency_rows(rows)
    if not counted:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    downstreams = sorted({r["downstream"] for r in counted})
    fig, axes = plt.subplots(
        1, len(downstreams), figsize=(4.5 * len(downstreams), 3.4), squeeze=False
    )
    for ax, downstream in zip(axes[0], downstreams):
        for pretext in sorted({r["pretext"] for r in counted}, key=_pretext_order):
            line = sorted(
                (r["labels_per_class"], r["mean"], r["std"])
                for r in counted
                if r["downstream"] == downstream and r["pretext"] == pretext
            )
            if line:
                xs, ys, errs = zip(*line)
                ax.errorbar(xs, ys, yerr=errs, marker="o", capsize=3, label=pretext)
        ax.set_xscale("log")
        ax.set_xlabel("labels per class")
        ax.set_ylabel(counted[0]["score_name"])
        ax.set_title(downstream)
        ax.legend(fontsize=7)
    fig.tight_layout()
    png = _figure_to_png(fig)
    plt.close(fig)
    return png


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode()
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def html_page(rows: list[dict[str, Any]], sweep: Sweep, plots: dict[str, bytes]) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>ssl-lab report</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #999;padding:4px 8px;text-align:right}"
        "td:first-child{text-align:left}img{max-width:100%}</style></head><body>",
        "<h1>ssl-lab report</h1>",
        "<p>Cells: score mean ± std over seeds (gain over pretext=none in brackets).</p>",
    ]
    for table in tables(rows):
        parts.append(
            f"<h2>{html.escape(table['title'])}</h2><table><tr>"
            + "".join(f"<th>{html.escape(h)}</th>" for h in table["header"])
            + "</tr>"
        )
        parts += [
            "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in line) + "</tr>"
            for line in table["body"]
        ]
        parts.append("</table>")
    for name, png in plots.items():
        parts.append(f"<h2>{html.escape(name)}</h2>{_img(png, name)}")
    seen: set[str] = set()
    pictures = []
    for m in sweep.runs:
        for path in sorted(Path(m["_dir"]).glob("pretext_*.png")):
            data = path.read_bytes()
            digest = hashlib.sha256(data).hexdigest()
            if digest not in seen:
                seen.add(digest)
                pictures.append(
                    f"<h3>{html.escape(m['pretext'])} ({html.escape(str(m['_dir']))})"
                    f"</h3>{_img(data, path.name)}"
                )
    if pictures:
        parts += ["<h2>What each pretext task sees</h2>", *pictures]
    if sweep.incomplete:
        parts.append(
            "<h2>Incomplete or failed runs</h2><ul>"
            + "".join(f"<li>{html.escape(str(p))}</li>" for p in sweep.incomplete)
            + "</ul>"
        )
    if sweep.unreadable:
        parts.append(
            "<h2>Unreadable runs (left out of the table)</h2><ul>"
            + "".join(
                f"<li>{html.escape(str(p))}: {html.escape(reason)}</li>"
                for p, reason in sweep.unreadable
            )
            + "</ul>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(root: Path) -> tuple[str, Sweep]:
    """Write report.csv, report.md, transfer_matrix.png, label_efficiency.png (when several label
    counts are present) and report.html into ``root``; return the markdown and what was found."""
    sweep = collect(root)
    rows = summarise(sweep.runs)
    with atomic_path(root / "report.csv") as tmp, tmp.open("w", newline="") as f:
        fields = [
            "data",
            "backbone",
            "budget",
            "labels_per_class",
            "pretext",
            "downstream",
            "score_name",
            "mean",
            "std",
            "seeds",
            "gain",
        ]
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    text = markdown(rows, sweep)
    with atomic_path(root / "report.md") as tmp:
        tmp.write_text(text)
    plots = {}
    if rows:
        plots["transfer_matrix.png"] = transfer_matrix_png(rows)
        efficiency = label_efficiency_png(rows)
        if efficiency is not None:
            plots["label_efficiency.png"] = efficiency
    for name in PLOTS:
        if name in plots:
            with atomic_path(root / name) as tmp:
                tmp.write_bytes(plots[name])
        else:  # an earlier report's plot would no longer match the table
            (root / name).unlink(missing_ok=True)
    with atomic_path(root / "report.html") as tmp:
        tmp.write_text(html_page(rows, sweep, plots))
    return text, sweep
