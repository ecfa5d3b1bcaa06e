"""Progress on long work: one log line per epoch where nobody watches a terminal, a bar where
someone does; throughput counted without waiting for the device."""

import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from conftest import TINY, run_cli
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ssl_lab.progress import EpochBar, EpochLines, EpochMeter, progress_callback

LINE = re.compile(
    r"(?P<phase>pretraining|transfer) epoch (?P<epoch>\d+)/(?P<epochs>\d+): "
    r"loss (?P<loss>[-+.\deE]+|nan), (?P<rate>[.\d]+) (?P<unit>images|tokens|examples)/s, "
    r"elapsed (?P<elapsed>\d+:\d\d:\d\d), ETA (?P<eta>\d+:\d\d:\d\d)$"
)


def seconds(clock: str) -> int:
    h, m, s = map(int, clock.split(":"))
    return 3600 * h + 60 * m + s


@pytest.mark.slow
def test_a_job_without_a_terminal_logs_one_line_per_epoch_and_phase(tmp_path: Path):
    result = run_cli(tmp_path, *TINY, "pretext.epochs=2", "downstream.epochs=3")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "\r" not in result.stdout  # no bar redrawn into the log
    lines = [m.groupdict() for m in map(LINE.search, result.stdout.splitlines()) if m]
    assert [(d["phase"], d["epoch"], d["epochs"]) for d in lines] == [
        ("pretraining", "1", "2"),
        ("pretraining", "2", "2"),
        ("transfer", "1", "3"),
        ("transfer", "2", "3"),
        ("transfer", "3", "3"),
    ]
    # images read in pretraining; the linear probe trains on extracted features
    assert [d["unit"] for d in lines] == ["images"] * 2 + ["examples"] * 3
    for d in lines:
        assert 0 < float(d["loss"]) < 100 and float(d["rate"]) > 0
        assert seconds(d["eta"]) >= 0 and seconds(d["elapsed"]) >= 0
    assert seconds(lines[1]["eta"]) == seconds(lines[4]["eta"]) == 0  # each phase's last epoch


def fake_trainer(epoch: int, epochs: int, world_size: int = 1, **logged: float):
    return SimpleNamespace(
        current_epoch=epoch,
        max_epochs=epochs,
        world_size=world_size,
        callback_metrics={k.replace("__", "/"): torch.tensor(v) for k, v in logged.items()},
    )


def test_tokens_are_the_ids_that_are_not_padding_summed_over_processes():
    meter = EpochMeter(pad_id=0)
    meter.fit_start(fake_trainer(0, 4))
    meter.epoch_start()
    meter.batch((torch.tensor([[5, 6, 7, 0], [8, 0, 0, 0]]), torch.tensor([0, 1])))  # 4 tokens
    meter.batch((torch.tensor([[9, 9, 9]]), torch.tensor([1])))  # 3 tokens
    assert meter.rate_so_far(world_size=2) is None  # on the device until the epoch ends
    stats = meter.epoch_end(fake_trainer(0, 4, world_size=2, pretrain__train_loss=1.5))
    assert (stats["unit"], stats["count"], stats["loss"]) == ("tokens", 14, 1.5)
    assert (stats["epoch"], stats["epochs"]) == (1, 4) and stats["rate"] > 0


def test_images_and_features_are_counted_from_batch_shapes():
    for x, unit in ((torch.zeros(5, 1, 8, 8), "images"), (torch.zeros(5, 16), "examples")):
        meter = EpochMeter(pad_id=0)
        meter.fit_start(fake_trainer(0, 1))
        meter.epoch_start()
        meter.batch((x, torch.zeros(5)))
        meter.batch((x[:2], torch.zeros(2)))
        stats = meter.epoch_end(fake_trainer(0, 1, transfer__train_loss=0.25))
        assert (stats["unit"], stats["count"], stats["loss"]) == (unit, 7, 0.25)
        assert stats["eta"] == 0


class TinyClassifier(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Linear(16, 2)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x.flatten(1)), y)
        self.log("transfer/train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_a_terminal_gets_a_bar_with_the_phase_epoch_loss_and_throughput(monkeypatch, tmp_path):
    terminal = SimpleNamespace(isatty=lambda: True, write=sys.stdout.write, flush=lambda: None)
    monkeypatch.setattr(sys, "stdout", terminal)
    bar = progress_callback("transfer", pad_id=None)
    assert isinstance(bar, EpochBar)
    monkeypatch.setattr("ssl_lab.progress.in_sweep", lambda: True)
    assert isinstance(progress_callback("transfer", pad_id=None), EpochLines)  # sweeps: lines
    monkeypatch.undo()

    images = TensorDataset(torch.randn(32, 1, 4, 4), torch.randint(0, 2, (32,)))
    trainer = pl.Trainer(
        max_epochs=2,
        callbacks=[bar],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(TinyClassifier(), DataLoader(images, batch_size=8))
    shown = bar.train_progress_bar
    assert shown.desc.startswith("transfer epoch 2/2")
    postfix = dict(item.split("=") for item in shown.postfix.split(", "))
    assert float(postfix["loss"]) > 0 and float(postfix["images/s"]) > 0
