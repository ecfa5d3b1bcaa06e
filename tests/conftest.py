import csv
import json
import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from ssl_lab.cli import CONF_DIR

# Lines a test adds to the end of the session's report (pytest prints them without -s too).
SUMMARY: list[str] = []


def pytest_terminal_summary(terminalreporter) -> None:
    for line in SUMMARY:
        terminalreporter.write_line(line)


def pytest_sessionfinish(session) -> None:
    if hasattr(session.config, "workeroutput"):  # a pytest-xdist worker: the lines go to the
        session.config.workeroutput["summary"] = list(SUMMARY)  # controller, which prints them


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    SUMMARY.extend(getattr(node, "workeroutput", {}).get("summary", []))


# Tiny settings: every end-to-end run finishes in seconds on a laptop CPU.
TINY = [
    "logger=none",
    "pretext.epochs=2",
    "downstream.epochs=2",
    "data.size=16",
    "backbone.widths=[8,16,32]",
]
# Three pretraining epochs of 40 batches (1258 train images / 32): long enough to signal or kill
# a run mid-way, short enough to run it again. 20 labels per class: seeds pick other ones.
RESUMABLE = [
    *TINY,
    "pretext.epochs=3",
    "data.batch_size=32",
    "downstream.epochs=1",
    "data.labels_per_class=20",
]
STEPS_PER_EPOCH = 40
# SSL_LAB_TEST_ACCELERATOR=gpu runs every end-to-end test with trainer=gpu (any trainer config's
# name works), so the same tests check a GPU machine; a test that picks its own trainer keeps it.
ACCELERATOR = os.environ.get("SSL_LAB_TEST_ACCELERATOR")


def with_accelerator(overrides: tuple[str, ...] | list[str]) -> list[str]:
    """``overrides`` with ``trainer=$SSL_LAB_TEST_ACCELERATOR`` first, unless they name one."""
    if not ACCELERATOR or any(o.lstrip("+~").startswith("trainer=") for o in overrides):
        return list(overrides)
    return [f"trainer={ACCELERATOR}", *overrides]


def _command(tmp_path: Path, overrides: tuple[str, ...]) -> list[str]:
    flags = [a for a in overrides if a.startswith("-")]  # Hydra wants -m etc. before overrides
    rest = with_accelerator([a for a in overrides if not a.startswith("-")])
    return [
        sys.executable,
        "-m",
        "ssl_lab",
        *flags,
        f"paths.output_dir={tmp_path / 'outputs'}",
        *rest,
    ]


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**os.environ, "PYTHONWARNINGS": "ignore", **(extra or {})}


def run_cli(tmp_path: Path, *overrides: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``ssl-lab`` in a subprocess, as a user would, writing under ``tmp_path``."""
    return subprocess.run(
        _command(tmp_path, overrides),
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_cli(
    tmp_path: Path, *overrides: str, env: dict[str, str] | None = None
) -> subprocess.Popen:
    """Start ``ssl-lab`` like ``run_cli`` without waiting for it, to signal or kill it. Its
    stdout goes to ``tmp_path/stdout.log`` (a full pipe would stall it); read stderr with
    ``communicate()``."""
    with open(tmp_path / "stdout.log", "a") as stdout:
        return subprocess.Popen(
            _command(tmp_path, overrides),
            cwd=tmp_path,
            env=_env(env),
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
        )


def wait_for(path_pattern: str, root: Path, process: subprocess.Popen) -> Path:
    """The first file under ``root`` matching ``path_pattern``, polled while ``process`` runs."""
    while True:
        found = sorted(root.glob(path_pattern))
        if found:
            return found[0]
        if process.poll() is not None:
            raise AssertionError(f"ended before {path_pattern} appeared: {process.communicate()}")
        time.sleep(0.01)


def run_in_process(run_dir: Path, *overrides: str) -> dict:
    """One job through ``pipeline.run`` in this process, as the CLI runs it but without its
    start-up (seconds instead of ten): metrics.json and the rest land in ``run_dir``."""
    from ssl_lab.pipeline import run

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            config_name="config",
            overrides=[
                f"paths.output_dir={run_dir.parent / 'outputs'}",
                f"paths.run_dir={run_dir}",
                *with_accelerator(overrides),
            ],
        )
    return run(cfg)


def logged(run_dir: Path, key: str) -> list[float]:
    """Every value the CSV logger wrote for ``key`` (an epoch's, for epoch-level metrics)."""
    rows = csv.DictReader((run_dir / "logs" / "metrics.csv").open())
    return [float(r[key]) for r in rows if r.get(key)]


def read_metrics(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.rglob("metrics.json"))]


def read_runs(root: Path) -> list[dict]:
    """Each finished run's metrics, with ``pretrain_dir`` (a path: in run_info.json) added."""
    runs = []
    for path in sorted(root.rglob("metrics.json")):
        info = json.loads((path.parent / "run_info.json").read_text())
        runs.append({**json.loads(path.read_text()), "pretrain_dir": info.get("pretrain_dir")})
    return runs


class _Payload:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def write_crafted_pickle(path: Path, marker: Path) -> None:
    """A checkpoint whose unpickling would run ``open(marker, "w")``: loading it must not."""
    with path.open("wb") as f:
        pickle.dump({"state_dict": _Payload(str(marker))}, f, protocol=2)


@pytest.fixture
def compose_cfg():
    """Compose the real config with overrides, without running anything."""

    def _compose(*overrides: str):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name="config", overrides=list(overrides))

    return _compose


@pytest.fixture(scope="session")
def cifar_cache(tmp_path_factory) -> Path:
    """One decoded copy of the shared CIFAR-10 archive for every test that reads it (decoding the
    60,000 JPEGs takes half a minute)."""
    return tmp_path_factory.mktemp("cifar_cache")


@pytest.fixture(scope="session")
def uninterrupted(tmp_path_factory) -> dict:
    """metrics.json of a ``RESUMABLE`` run that nothing interrupted, for runs that were."""
    tmp = tmp_path_factory.mktemp("uninterrupted")
    result = run_cli(tmp, *RESUMABLE, f"hydra.run.dir={tmp / 'run'}")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp / "run" / "metrics.json").read_text())
    assert metrics["pretext_steps"] == 3 * STEPS_PER_EPOCH and metrics["pretrain_cache"] == "miss"
    return metrics
