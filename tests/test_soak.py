"""Many short jobs, two at a time, racing for the same cache keys: each key is pretrained once,
and afterwards every cache entry is whole, loads, and is named by the hash of its own config."""

from collections import Counter

import pytest
from conftest import read_metrics, start_cli
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ssl_lab.backbones.checkpoint import load_backbone_weights
from ssl_lab.cache import spec_key

PRETEXTS = ("rotation", "jigsaw", "inpainting", "supervised", "none")
SWEEP = [
    "-m",
    f"pretext={','.join(PRETEXTS)}",
    "seed=0,1",
    "downstream=knn",
    "logger=none",
    "monitor.knn=false",
    "data.size=16",
    "data.labels_per_class=2",
    "backbone.widths=[8,16,32]",
    "pretext.epochs=1",
    "+trainer.limit_train_batches=2",
    "+trainer.limit_val_batches=1",
]


@pytest.mark.slow
def test_twenty_runs_two_at_a_time_share_one_sound_cache(tmp_path):
    jobs = [
        start_cli(tmp_path, *SWEEP, f"hydra.sweep.dir={tmp_path / 'sweeps' / name}")
        for name in ("a", "b")
    ]
    for job in jobs:
        _, stderr = job.communicate(timeout=600)
        assert job.returncode == 0, stderr[-3000:]
    runs = read_metrics(tmp_path / "sweeps")
    assert len(runs) == 20
    uses = Counter((m["pretext"], m["seed"], m["pretrain_cache"]) for m in runs)
    for pretext in PRETEXTS[:-1]:
        for seed in (0, 1):  # built by one job, reused by the other
            assert uses[pretext, seed, "miss"] == uses[pretext, seed, "hit"] == 1, uses
    assert uses["none", 0, "none"] == uses["none", 1, "none"] == 2

    cache = tmp_path / "outputs" / "cache" / "pretrain"
    entries = [p for p in cache.iterdir() if p.is_dir()]
    assert len(entries) == 8 and not [p for p in entries if p.name.startswith(".")]
    for entry in entries:
        spec = OmegaConf.to_container(OmegaConf.load(entry / "pretrain_config.yaml"))
        assert spec_key(spec) == entry.name
        load_backbone_weights(instantiate(spec["backbone"]), entry / "backbone.safetensors")
        assert sorted(p.name for p in entry.iterdir() if p.suffix != ".png") == [
            "backbone.safetensors",
            "pretext_metrics.json",
            "pretrain_config.yaml",
        ]
    assert not list(cache.glob(".*"))  # no staging, no resume point left behind
