"""The built wheel is complete: installed without the checkout (not editable, into a scratch
target that borrows this environment's dependencies), it runs from an unrelated directory."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import TINY

from ssl_lab.choices import CONF_DIR

ROOT = Path(__file__).resolve().parent.parent


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_the_installed_wheel_runs_a_job_from_any_directory(tmp_path: Path):
    # built from a copy, so the checkout gets no build/ or egg-info; without build isolation,
    # so no package index is needed (setuptools comes with the test extra)
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "ssl_lab", source / "ssl_lab", ignore=shutil.ignore_patterns("__pycache__")
    )
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), "."], source)
    (wheel,) = tmp_path.glob("ssl_lab-*.whl")
    shipped = {n for n in zipfile.ZipFile(wheel).namelist() if n.endswith(".yaml")}
    configs = {
        f"ssl_lab/conf/{p.relative_to(CONF_DIR).as_posix()}" for p in CONF_DIR.rglob("*.yaml")
    }
    assert configs and configs <= shipped

    target = tmp_path / "target"
    run([*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(wheel)], tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "PYTHONPATH": str(target), "PYTHONWARNINGS": "ignore"}
    where = run([sys.executable, "-c", "import ssl_lab; print(ssl_lab.__file__)"], elsewhere, env)
    assert Path(where.strip()).is_relative_to(target)  # not the checkout, not an editable install

    printed = run([sys.executable, "-m", "ssl_lab", "--cfg", "job"], elsewhere, env)
    assert "_target_: ssl_lab.pretext.module.PretextModule" in printed
    job = [
        *TINY,
        "pretext.epochs=1",
        "downstream.epochs=1",
        f"hydra.run.dir={elsewhere / 'run'}",
    ]
    run([str(target / "bin" / "ssl-lab"), *job], elsewhere, env)  # the installed entry point
    metrics = json.loads((elsewhere / "run" / "metrics.json").read_text())
    assert metrics["pretext_epochs"] == 1 and 0.0 <= metrics["score"] <= 1.0
    assert (elsewhere / "outputs" / "cache").is_dir()  # paths default to the working directory
