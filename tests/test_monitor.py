import csv

import pytest
import pytorch_lightning as pl
import torch
from conftest import TINY, read_metrics, run_cli
from torch.utils.data import DataLoader, TensorDataset

from ssl_lab.backbones.small_cnn import SmallCNN
from ssl_lab.monitor import KNNMonitor
from ssl_lab.pretext.module import PretextModule
from ssl_lab.pretext.rotation import RotationPrediction


def _pretrain(with_monitor: bool) -> dict[str, torch.Tensor]:
    pl.seed_everything(0, verbose=False)
    data = TensorDataset(torch.randn(64, 1, 16, 16), torch.arange(64) % 4)
    backbone = SmallCNN(1, (4, 8))
    module = PretextModule(backbone, RotationPrediction(8), 1e-2, torch.optim.AdamW)
    callbacks = [KNNMonitor(data, data, num_classes=4, k=5)] if with_monitor else []
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=2,
        logger=False,
        callbacks=callbacks,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    trainer.fit(
        module, DataLoader(data, batch_size=16, shuffle=True), DataLoader(data, batch_size=32)
    )
    assert ("pretrain/knn_acc" in trainer.callback_metrics) == with_monitor
    return backbone.state_dict()


def test_the_monitor_leaves_pretraining_unchanged():
    # weights, batch-norm statistics and random state: so the cache key can ignore the monitor
    watched, unwatched = _pretrain(True), _pretrain(False)
    assert all(torch.equal(watched[k], unwatched[k]) for k in unwatched)


@pytest.mark.slow
def test_knn_accuracy_is_logged_each_epoch_and_rises_during_supervised_pretraining(tmp_path):
    tiny = [a for a in TINY if not a.startswith("downstream.")]
    run_dir = tmp_path / "run"
    result = run_cli(
        tmp_path,
        f"hydra.run.dir={run_dir}",
        "pretext=supervised",
        "downstream=knn",
        *tiny,
        "logger=csv",
        "pretext.epochs=3",
        "data.labels_per_class=5",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader((run_dir / "logs" / "metrics.csv").open()))
    curve = [float(r["pretrain/knn_acc"]) for r in rows if r.get("pretrain/knn_acc")]
    assert len(curve) == 3 and all(0.0 <= acc <= 1.0 for acc in curve)
    assert curve[-1] > curve[0] + 0.05, curve  # a bank of 5 labels per class, 10 classes
    (metrics,) = read_metrics(run_dir)
    assert metrics["pretext_knn_acc"] == pytest.approx(curve[-1])
