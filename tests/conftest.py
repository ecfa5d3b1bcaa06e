import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from ssl_lab.cli import CONF_DIR

# Tiny settings: every end-to-end run finishes in seconds on a laptop CPU.
TINY = ["logger=none", "pretext.epochs=2", "downstream.epochs=2", "data.size=16",
        "backbone.net.widths=[8,16,32]"]


def run_cli(tmp_path: Path, *overrides: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``ssl-lab`` in a subprocess, as a user would, writing under ``tmp_path``."""
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    flags = [a for a in overrides if a.startswith("-")]  # Hydra wants -m etc. before overrides
    rest = [a for a in overrides if not a.startswith("-")]
    return subprocess.run(
        [sys.executable, "-m", "ssl_lab", *flags, f"paths.output_dir={tmp_path / 'outputs'}", *rest],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)


def read_metrics(root: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(root.rglob("metrics.json"))]


@pytest.fixture
def compose_cfg():
    """Compose the real config with overrides, without running anything."""
    def _compose(*overrides: str):
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose(config_name="config", overrides=list(overrides))
    return _compose
