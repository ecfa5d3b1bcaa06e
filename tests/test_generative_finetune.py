import math

import pytest
import pytorch_lightning as pl
import torch
from conftest import TINY, read_metrics, run_cli

from ssl_lab.backbones.small_cnn import SmallCNN
from ssl_lab.data.digits import DigitsDataModule
from ssl_lab.downstream.generative_finetune import (
    GenerativeFinetune,
    center_mask,
    reinitialised,
    target_style,
)
from ssl_lab.errors import SslLabError


def test_the_center_mask_hides_the_central_quarter():
    mask = center_mask(2, 16, 16, torch.device("cpu"))
    assert mask.shape == (2, 1, 16, 16) and mask.float().mean() == 0.25
    assert mask[:, :, 4:12, 4:12].all()


def test_styles_pick_one_class_or_transform_every_image_in_normalised_units():
    mean, std = torch.tensor([0.25]), torch.tensor([0.5])
    raw = torch.rand(6, 1, 8, 8)
    images, labels = (raw - 0.25) / 0.5, torch.tensor([0, 1, 2, 1, 0, 1])
    assert torch.equal(target_style(images, labels, "class:1", mean, std), images[labels == 1])
    inverted = target_style(images, labels, "inverted", mean, std) * 0.5 + 0.25
    assert torch.allclose(inverted, 1.0 - raw, atol=1e-6)
    edges = target_style(images, labels, "edges", mean, std) * 0.5 + 0.25
    assert edges.min() >= -1e-6 and torch.allclose(edges.amax(dim=(1, 2, 3)), torch.ones(6))


def test_an_unknown_style_is_refused_in_one_line():
    with pytest.raises(SslLabError, match="downstream.style=sepia"):
        GenerativeFinetune("sepia", 4, 1, 2, 1e-3, torch.optim.AdamW, seed=0)


def test_the_scratch_model_is_the_same_architecture_with_fresh_weights():
    torch.manual_seed(0)
    backbone = SmallCNN(1, (8, 16))
    fresh = reinitialised(backbone)
    assert backbone.state_dict().keys() == fresh.state_dict().keys()
    assert not torch.equal(backbone.stages[0][0].weight, fresh.stages[0][0].weight)


def test_transfer_and_scratch_train_the_configured_steps_and_report_psnr_and_ssim():
    torch.manual_seed(0)
    data = DigitsDataModule("digits", num_classes=10, channels=1, size=16, batch_size=64)
    data.setup()
    trainers = []

    def make_trainer(max_epochs: int, logger=None, callbacks=None) -> pl.Trainer:
        trainers.append(
            pl.Trainer(
                accelerator="cpu",
                max_epochs=max_epochs,
                logger=False,
                enable_progress_bar=False,
                enable_checkpointing=False,
                enable_model_summary=False,
            )
        )
        return trainers[-1]

    task = GenerativeFinetune(
        "class:3",
        images=8,
        steps=7,
        batch_size=4,
        lr=1e-3,
        optimizer=torch.optim.AdamW,
        seed=0,
        decoder_levels=3,
    )
    metrics = task.evaluate(SmallCNN(1, (8, 16, 32)), data, make_trainer)
    assert {
        "score",
        "score_name",
        "psnr_scratch",
        "psnr_gain",
        "ssim",
        "ssim_scratch",
    } <= metrics.keys()
    assert metrics["score_name"] == "test/psnr" and math.isfinite(metrics["score"])
    assert math.isfinite(metrics["psnr_scratch"]) and -1.0 <= metrics["ssim"] <= 1.0
    assert metrics["psnr_gain"] == pytest.approx(metrics["score"] - metrics["psnr_scratch"])
    assert metrics["generative_steps"] == 7 and metrics["generative_images"] == 8
    assert [t.global_step for t in trainers] == [7, 7]  # transferred, then scratch


@pytest.mark.slow
def test_inpainting_pretraining_then_generative_finetune_runs_end_to_end(tmp_path):
    tiny = [a for a in TINY if not a.startswith("downstream.")]  # it counts steps, not epochs
    result = run_cli(
        tmp_path,
        "pretext=inpainting",
        "downstream=generative_finetune",
        *tiny,
        "downstream.steps=10",
        "downstream.style=class:3",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (metrics,) = read_metrics(tmp_path / "outputs")
    assert metrics["pretext"] == "inpainting" and metrics["generative_steps"] == 10
    assert metrics["score_name"] == "test/psnr" and math.isfinite(metrics["score"])
    assert {"psnr_scratch", "psnr_gain", "ssim", "ssim_scratch"} <= metrics.keys()
