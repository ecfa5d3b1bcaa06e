"""Sweep cost: wall time of a 3 pretext x 2 downstream multirun on digits with the pretraining
cache (each pretraining runs once and its two transfers share it) against the same sweep with
``paths.cache_dir=null`` (every job pretrains), each a fresh ``ssl-lab -m`` process with a fresh
output directory.

    python benchmarks/sweep_cache.py [--pretext-epochs 3] [--downstream-epochs 5]
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def sweep(
    out: Path, cache: bool, pretext_epochs: int, downstream_epochs: int
) -> tuple[float, list]:
    command = [
        sys.executable,
        "-m",
        "ssl_lab",
        "-m",
        "data=digits",
        "pretext=rotation,jigsaw,inpainting",
        "downstream=linear_probe,finetune",
        f"pretext.epochs={pretext_epochs}",
        f"downstream.epochs={downstream_epochs}",
        "logger=none",
        f"paths.output_dir={out}",
        f"hydra.sweep.dir={out}/sweep",
    ]
    if not cache:
        command.append("paths.cache_dir=null")
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"sweep failed:\n{done.stderr[-3000:]}")
    runs = [json.loads(p.read_text()) for p in sorted((out / "sweep").glob("*/metrics.json"))]
    return seconds, runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pretext-epochs", type=int, default=3)
    parser.add_argument("--downstream-epochs", type=int, default=5)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ssl_lab_bench_"))
    results = {}
    for name, cache in (("with cache", True), ("without cache", False)):
        seconds, runs = sweep(
            tmp / name.replace(" ", "_"), cache, args.pretext_epochs, args.downstream_epochs
        )
        states = [r["pretrain_cache"] for r in runs]
        print(
            f"{name:14s} {seconds:7.1f} s  jobs {len(runs)}  pretrain_cache: "
            f"{', '.join(f'{s} x{states.count(s)}' for s in sorted(set(states)))}",
            flush=True,
        )
        results[name] = (seconds, {(r["pretext"], r["downstream"]): r["score"] for r in runs})
    same = results["with cache"][1] == results["without cache"][1]
    print(f"scores identical with and without the cache: {same}")
    print(
        f"RESULT speedup={results['without cache'][0] / results['with cache'][0]:.2f} "
        f"with_cache_s={results['with cache'][0]:.0f} "
        f"without_cache_s={results['without cache'][0]:.0f} identical_scores={same}"
    )


if __name__ == "__main__":
    main()
