"""Start-up: wall time from launching ``ssl-lab`` to its first pretext training step, and of
``ssl-lab --cfg job`` (config only: it must not import torch or Lightning), with the import
times that make up the difference. Each is a fresh process, best of ``--rounds``.

    python benchmarks/startup.py [--rounds 3]
"""

import argparse
import subprocess
import sys
import tempfile
import time

# Runs ssl-lab's own entry point in a fresh interpreter and exits at the first training step,
# printing the seconds since the interpreter was launched (passed in as argv[1]).
FIRST_STEP = """
import os, sys, time
launched = float(sys.argv[1])
from ssl_lab.pretext.module import PretextModule
def first_step(self, batch, batch_idx):
    print(f"FIRST_STEP {time.time() - launched:.3f}", flush=True)
    os._exit(0)
PretextModule.training_step = first_step
sys.argv = ["ssl-lab", *sys.argv[2:]]
from ssl_lab.cli import main
main()
"""

IMPORTS = {
    "torch": "import torch",
    "pytorch_lightning + torchmetrics": "import pytorch_lightning, torchmetrics",
    "ssl_lab.pipeline": "import ssl_lab.pipeline",
    "ssl_lab.cli (what --cfg job imports)": "import ssl_lab.cli",
}


def wall(command: list[str]) -> tuple[float, str]:
    started = time.time()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{done.stderr[-2000:]}")
    return time.time() - started, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="ssl_lab_bench_")
    run = [
        "logger=none",
        "paths.cache_dir=null",
        f"paths.output_dir={tmp}",
        f"hydra.run.dir={tmp}/run",
    ]
    best: dict[str, float] = {}

    def keep(name: str, seconds: float) -> None:
        best[name] = min(best.get(name, float("inf")), seconds)

    for _ in range(args.rounds):
        seconds, out = wall([sys.executable, "-m", "ssl_lab", "--cfg", "job", *run])
        assert "pretext:" in out
        keep("ssl-lab --cfg job", seconds)
        _, out = wall([sys.executable, "-c", FIRST_STEP, str(time.time()), *run])
        keep("ssl-lab to first training step", float(out.split("FIRST_STEP")[1].split()[0]))
        keep("python (nothing imported)", wall([sys.executable, "-c", "pass"])[0])
        for name, statement in IMPORTS.items():
            keep(f"import {name}", wall([sys.executable, "-c", statement])[0])
    modules = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, ssl_lab.cli; print("
            "'torch' in sys.modules, 'pytorch_lightning' in sys.modules)",
        ],
        capture_output=True,
        text=True,
    ).stdout.split()
    for name, seconds in best.items():
        print(f"{name:45s} {seconds:6.2f} s")
    print(f"--cfg job imports torch: {modules[0]}, pytorch_lightning: {modules[1]}")
    print(
        f"RESULT cfg_job_s={best['ssl-lab --cfg job']:.2f} "
        f"first_step_s={best['ssl-lab to first training step']:.2f} "
        f"import_pipeline_s={best['import ssl_lab.pipeline']:.2f}"
    )


if __name__ == "__main__":
    main()
