"""The prepared device check, ``benchmarks/gpu_check.py``, runs tiny on the CPU (``--cpu-smoke``)
so it cannot rot while no device is lent; and the device machine's missing packages (wandb,
snownlp) are needed neither to import ssl_lab nor by the image path."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# a meta-path finder that makes the named top-level packages look uninstalled
HIDE = """
import importlib.abc, sys
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {hidden!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}} (hidden)", name=name)
sys.meta_path.insert(0, Hide())
"""


def _python(code: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
def test_ssl_lab_and_the_image_path_import_without_wandb_and_snownlp(tmp_path):
    code = HIDE.format(hidden=("wandb", "snownlp")) + (
        "import pkgutil, ssl_lab\n"
        "names = [m.name for m in pkgutil.walk_packages(ssl_lab.__path__, 'ssl_lab.')]\n"
        "for name in names:  # not report_wandb (its whole point is wandb), not __main__ (a run)\n"
        "    if name not in ('ssl_lab.report_wandb', 'ssl_lab.__main__'):\n"
        "        __import__(name)\n"
        "from hydra import compose, initialize_config_dir\n"
        "from ssl_lab.build import build\n"
        "from ssl_lab.cli import CONF_DIR\n"
        "with initialize_config_dir(config_dir=str(CONF_DIR), version_base='1.3'):\n"
        "    cfg = compose('config', overrides=['data=digits'])\n"
        "data = build(cfg, 'data')\n"
        "data.setup()\n"
        "print(len(names), build(cfg, 'backbone')(next(iter(data.test_dataloader()))[0]).shape)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('wandb', 'snownlp')))\n"
    )
    result = _python(code, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    imported, loaded = result.stdout.strip().splitlines()
    count, shape = imported.split(" ", 1)  # every module, and features of a batch of digits
    assert int(count) > 40 and shape == "torch.Size([128, 128])" and loaded == "[]"


@pytest.mark.slow
def test_the_cpu_smoke_runs_every_step_of_the_device_check(tmp_path):
    script = REPO / "benchmarks" / "gpu_check.py"
    args = ["--cpu-smoke", "--work", str(tmp_path / "work"), "--out", str(tmp_path / "out")]
    code = HIDE.format(hidden=("wandb",)) + (
        f"import runpy\nsys.argv = {[str(script), *args]!r}\n"
        f"runpy.run_path({str(script)!r}, run_name='__main__')\n"
    )
    result = _python(code, tmp_path, timeout=900)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    figures = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert figures["mode"] == "cpu-smoke" and figures["batches"]["host_vs_device"]["status"] == "ok"
    assert len(figures["smoke"]) == 12  # 5 image pretexts x 2 transfers, mlm x 2
    assert all(r["status"] == "ok" and r["score"] > r["chance"] for r in figures["smoke"].values())
    assert len(figures["timing"]) == 3
    assert all(r["projected_100_epochs_s"] > r["epoch_s"] > 0 for r in figures["timing"].values())
    assert all(r["tokens_per_s"] > 0 for r in figures["mlm"].values())
    assert "RESULT smoke_passed=12/12" in result.stdout
