"""Text runs through the real CLI: mlm and clm x finetune and prompt on reviews_zh, then
ssl-lab-predict on what they pretrained."""

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import read_runs, run_cli

from ssl_lab.backbones.checkpoint import read_meta

TINY_TEXT = [
    "logger=none",
    "monitor.knn=false",
    "data=reviews_zh",
    "backbone=transformer",
    "backbone.width=64",
    "backbone.depth=1",
    "backbone.heads=2",
    "backbone.max_length=64",
    "data.batch_size=64",
    "pretext.epochs=1",
    "+trainer.limit_train_batches=30",
    "+trainer.limit_val_batches=3",
]


@pytest.fixture(scope="module")
def text_sweep(tmp_path_factory) -> tuple[Path, list[dict]]:
    root = tmp_path_factory.mktemp("text")
    result = run_cli(
        root,
        "-m",
        *TINY_TEXT,
        "pretext=mlm,clm",
        "downstream=finetune,prompt",
        "+pretext.snapshot_epochs=[1]",
        "downstream.epochs=3",
        "downstream.lr=5e-3",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return root, read_runs(root / "outputs")


@pytest.mark.slow
def test_mlm_and_clm_cross_finetune_and_prompt(text_sweep):
    _, runs = text_sweep
    assert sorted((m["pretext"], m["downstream"]) for m in runs) == [
        ("clm", "finetune"),
        ("clm", "prompt"),
        ("mlm", "finetune"),
        ("mlm", "prompt"),
    ]
    for m in runs:
        assert m["pretext_val_loss"] < math.log(6000) - 1  # learned something in 40 steps
        assert m["test_overlap_removed"] == 0
        if m["downstream"] == "finetune":
            assert m["score"] > 0.6, m  # sentiment, two balanced classes: chance is 0.5
        else:
            assert m["n_labels"] == 0 and not m["prompt_few_shot"]
            # a causal model reads left to right: "总之很[MASK]。{text}" is skipped
            used = [0, 2] if m["pretext"] == "clm" else [0, 1, 2]
            assert sorted(
                k for k in m if k.startswith("test/acc_pattern") and not k.endswith("uncalibrated")
            ) == [f"test/acc_pattern{i}" for i in used]
            assert m["prompt_calibrated"] and f"test/acc_pattern{used[0]}_uncalibrated" in m
            scores = [m[f"test/acc_pattern{i}"] for i in used]
            assert 0 <= min(scores) and max(scores) <= 1
            assert m["score"] == pytest.approx(sum(scores) / len(used))
    assert sum(m["pretrain_cache"] == "miss" for m in runs) == 2  # one pretraining per pretext


@pytest.mark.slow
def test_pretraining_counts_the_tokens_it_read_and_snapshots_carry_their_count(text_sweep):
    _, runs = text_sweep
    for m in runs:
        # 30 batches of 64 texts, each cut at 64 tokens; a review is longer than 3 tokens
        assert 30 * 64 * 3 < m["pretext_tokens"] <= 30 * 64 * 64
        final = read_meta(Path(m["pretrain_dir"]) / "backbone.safetensors")
        snapshot = read_meta(Path(m["pretrain_dir"]) / "snapshots" / "epoch1.safetensors")
        assert final["tokens"] == snapshot["tokens"] == m["pretext_tokens"]  # its one epoch
        assert final["epochs"] == snapshot["epochs"] == 1


def _predict(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from ssl_lab.cli import predict; predict()", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )


@pytest.mark.slow
def test_predict_fills_masks_with_sorted_probabilities_and_continues_prompts(text_sweep):
    root, runs = text_sweep
    entries = {m["pretext"]: m["pretrain_dir"] for m in runs}
    result = _predict(
        entries["mlm"], "这本书写得很[MASK]，推荐！", "房间太[MASK]了[MASK]", "--top-k", "4"
    )
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if "[MASK] " in line]
    assert len(lines) == 3  # one line per [MASK]
    for line in lines:
        probabilities = [float(p) for p in re.findall(r" (\d\.\d{3})(?=\s|$)", line)]
        assert len(probabilities) == 4
        assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.0
    result = _predict(entries["clm"], "这家酒店", "--max-new-tokens", "5")
    assert result.returncode == 0 and "causal LM pretrained with clm" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("  -> ")
    refused = _predict(entries["clm"].replace("clm-", "nothing-"), "x")
    assert refused.returncode == 2 and refused.stderr.startswith("ssl-lab: error: no backbone at")


@pytest.mark.slow
def test_few_shot_prompt_and_transfer_from_a_text_checkpoint(text_sweep, tmp_path):
    root, runs = text_sweep
    mlm = next(m for m in runs if m["pretext"] == "mlm")
    checkpoint = Path(mlm["pretrain_dir"]) / "backbone.safetensors"
    result = run_cli(
        tmp_path,
        *TINY_TEXT,
        f"backbone.checkpoint={checkpoint}",
        "pretext=none",
        "downstream=prompt",
        "downstream.few_shot=true",
        "downstream.epochs=1",
        "data.labels_per_class=16",
        "downstream.patterns=['{text}。总之很[MASK]。']",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (m,) = read_runs(tmp_path / "outputs")
    assert m["prompt_few_shot"] and m["n_labels"] == 32 and m["pretext"] == "mlm"
    assert m["pretrain_cache"] == "external" and 0 <= m["score"] <= 1
    assert m["pretext_tokens"] == mlm["pretext_tokens"]  # carried by the file
