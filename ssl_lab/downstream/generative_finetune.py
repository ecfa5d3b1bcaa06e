"""Generative transfer: adapt a general image model to one style from a few images of it.

The pretrained backbone is the encoder of a masked-image reconstruction model; with a decoder it
is fine-tuned to fill the hidden centre of a handful of target-style images (``class:<k>``: one
class's images; ``inverted``, ``edges``: a style transform of the images) and compared with the
same architecture trained from scratch on the same images, for the same steps, from the same
seed. Both are scored by PSNR and SSIM on held-out target-style images.

The decoder is always fresh. After ``pretext=inpainting`` the pretext's trained decoder would help,
but the hand-off between pretraining and transfer is the backbone alone (the safetensors file), so
this task builds its own decoder and its own centre mask rather than reach into ``ssl_lab.pretext``.
What it measures is therefore how much the *encoder* carries over.
"""

import copy
import math
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from ssl_lab.backbones.decoder import upsampling_decoder
from ssl_lab.downstream.schema import STYLES
from ssl_lab.downstream.task import DownstreamTask
from ssl_lab.errors import SslLabError
from ssl_lab.optim import configure_optimizers
from ssl_lab.ranks import unrepeated


def center_mask(batch: int, height: int, width: int, device: torch.device) -> torch.Tensor:
    """(B, 1, H, W), True on the central square of half the side (a quarter of the area)."""
    ys = torch.arange(height, device=device).view(1, 1, -1, 1)
    xs = torch.arange(width, device=device).view(1, 1, 1, -1)
    top, left = height // 4, width // 4
    mask = (ys >= top) & (ys < top + height // 2) & (xs >= left) & (xs < left + width // 2)
    return mask.expand(batch, 1, height, width)


def sobel_edges(images: torch.Tensor) -> torch.Tensor:
    """Gradient magnitude of each channel of (B, C, H, W) images in [0, 1], scaled so each
    image's strongest edge is 1."""
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=images.device)
    kernels = torch.stack([kx, kx.T]).unsqueeze(1).repeat(images.shape[1], 1, 1, 1)
    grads = F.conv2d(
        F.pad(images, (1, 1, 1, 1), mode="replicate"), kernels, groups=images.shape[1]
    ).unflatten(1, (images.shape[1], 2))
    magnitude = grads.pow(2).sum(2).sqrt()
    return magnitude / magnitude.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)


def target_style(
    images: torch.Tensor, labels: torch.Tensor, style: str, mean: torch.Tensor, std: torch.Tensor
) -> torch.Tensor:
    """The target-style images among (or made from) normalised ``images``, normalised alike."""
    if style.startswith("class:"):
        return images[labels == int(style.removeprefix("class:"))]
    mean, std = mean.view(1, -1, 1, 1), std.view(1, -1, 1, 1)
    raw = images * std + mean
    styled = {"inverted": lambda: 1.0 - raw, "edges": lambda: sobel_edges(raw)}[style]()
    return (styled - mean) / std


class MaskedReconstruction(pl.LightningModule):
    """Encoder + decoder trained with L2 on the hidden centre. Test PSNR and SSIM compare the
    filled image (prediction inside the hole, the input outside) with the original, in [0, 1]."""

    def __init__(
        self,
        encoder: nn.Module,
        decoder: nn.Module,
        lr: float,
        optimizer: Callable[..., torch.optim.Optimizer],
        mean: torch.Tensor,
        std: torch.Tensor,
        suffix: str = "",
    ) -> None:
        super().__init__()
        self.encoder, self.decoder, self.suffix = encoder, decoder, suffix
        self.lr, self.optimizer_factory = lr, optimizer
        self.register_buffer("mean", mean.view(1, -1, 1, 1))
        self.register_buffer("std", std.view(1, -1, 1, 1))
        self.psnr = PeakSignalNoiseRatio(data_range=1.0)
        self.ssim = StructuralSimilarityIndexMeasure(data_range=1.0)

    def _fill(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction, mask) of images whose centre is hidden (set to the mean, 0)."""
        b, _, h, w = images.shape
        mask = center_mask(b, h, w, images.device)
        out = self.decoder(self.encoder.forward_features(images.masked_fill(mask, 0.0)))
        if out.shape[-2:] != images.shape[-2:]:
            out = F.interpolate(out, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return out, mask

    def on_train_start(self) -> None:
        self.train()  # the handed-over backbone may arrive in eval mode; Lightning keeps modes

    def training_step(self, batch: tuple[torch.Tensor], batch_idx: int) -> torch.Tensor:
        (images,) = batch
        out, mask = self._fill(images)
        hidden = mask.expand_as(images)  # the mean over hidden pixels, without selecting them
        loss = ((out.float() - images).pow(2) * hidden).sum() / hidden.sum()
        self.log(
            f"generative/train_loss{self.suffix}",
            loss,
            on_step=True,
            on_epoch=False,
            batch_size=len(images),
        )
        return loss

    def test_step(self, batch: tuple[torch.Tensor], batch_idx: int) -> None:
        (images,) = batch
        out, mask = self._fill(images)
        filled = (torch.where(mask, out.float(), images) * self.std + self.mean).clamp(0.0, 1.0)
        original = images * self.std + self.mean
        self.psnr(filled, original)
        self.ssim(filled, original)
        self.log(f"test/psnr{self.suffix}", self.psnr, batch_size=len(images))
        self.log(f"test/ssim{self.suffix}", self.ssim, batch_size=len(images))

    def configure_optimizers(self) -> dict[str, Any]:
        return configure_optimizers(
            [{"params": list(self.parameters())}], self.lr, self.optimizer_factory
        )


def reinitialised(backbone: nn.Module) -> nn.Module:
    """A copy of ``backbone`` with every layer reset to PyTorch's default initialisation: the same
    architecture from scratch, without knowing the config that built it."""
    fresh = copy.deepcopy(backbone)
    for module in fresh.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return fresh


class GenerativeFinetune(DownstreamTask):
    """``score`` is the transferred model's PSNR (dB); ``psnr_gain`` is its lead over scratch."""

    def __init__(
        self,
        style: str,
        images: int,
        steps: int,
        batch_size: int,
        lr: float,
        optimizer: Callable[..., torch.optim.Optimizer],
        seed: int,
        decoder_levels: int = 4,
    ) -> None:
        if not (
            style in ("inverted", "edges")
            or style.startswith("class:")
            and style.removeprefix("class:").isdigit()
        ):
            raise SslLabError(f"downstream.style={style}: choose {STYLES}")
        self.style, self.images = style, images
        self.steps, self.batch_size, self.lr, self.optimizer = steps, batch_size, lr, optimizer
        self.seed, self.decoder_levels = seed, decoder_levels

    def _style_split(self, data: pl.LightningDataModule, split: str) -> torch.Tensor:
        images, labels = data.splits[split].tensors
        styled = target_style(images, labels, self.style, data.mean, data.std)
        if len(styled) == 0:
            raise SslLabError(f"downstream.style={self.style}: no {split} images of that style")
        return styled

    def _batches(self, count: int) -> list[int]:
        """``steps * batch_size`` indices into ``count`` images, in fresh permutations. A plain
        list, not a ``RandomSampler``: under DDP Lightning shares a list out over the processes
        but swaps a ``RandomSampler`` for one pass over the data, which would lose the steps."""
        total = self.steps * self.batch_size
        generator = torch.Generator().manual_seed(self.seed)
        rounds = math.ceil(total / count)
        order = torch.rand(rounds, count, generator=generator).argsort(dim=1).flatten()
        return order[:total].tolist()

    def _train_and_test(
        self,
        encoder: nn.Module,
        train: torch.Tensor,
        test: torch.Tensor,
        data: pl.LightningDataModule,
        make_trainer: Callable[..., pl.Trainer],
        suffix: str,
    ) -> tuple[dict[str, float], int]:
        """Exactly ``steps`` optimiser steps of ``batch_size`` images (split over processes)."""
        pl.seed_everything(self.seed, workers=True, verbose=False)
        module = MaskedReconstruction(
            encoder,
            upsampling_decoder(encoder.out_dim, train.shape[1], self.decoder_levels),
            self.lr,
            self.optimizer,
            data.mean,
            data.std,
            suffix,
        )
        trainer = make_trainer(max_epochs=1)
        loader = DataLoader(
            TensorDataset(train),
            sampler=self._batches(len(train)),
            batch_size=max(1, self.batch_size // trainer.world_size),
        )
        trainer.fit(module, train_dataloaders=loader)
        test_loader = unrepeated(DataLoader(TensorDataset(test), batch_size=data.batch_size))
        (results,) = trainer.test(module, dataloaders=test_loader, verbose=False)
        return results, trainer.global_step

    def evaluate(
        self,
        backbone: nn.Module,
        data: pl.LightningDataModule,
        make_trainer: Callable[..., pl.Trainer],
    ) -> dict[str, Any]:
        pool = self._style_split(data, "train")
        chosen = torch.randperm(len(pool), generator=torch.Generator().manual_seed(self.seed))
        train = pool[chosen[: self.images]]
        test = self._style_split(data, "test")
        scratch_encoder = reinitialised(backbone)
        transfer, steps = self._train_and_test(backbone, train, test, data, make_trainer, "")
        scratch, _ = self._train_and_test(
            scratch_encoder, train, test, data, make_trainer, "_scratch"
        )
        psnr, psnr_scratch = float(transfer["test/psnr"]), float(scratch["test/psnr_scratch"])
        return {
            "score": psnr,
            "score_name": "test/psnr",
            "psnr_scratch": psnr_scratch,
            "psnr_gain": psnr - psnr_scratch,
            "ssim": float(transfer["test/ssim"]),
            "ssim_scratch": float(scratch["test/ssim_scratch"]),
            "generative_style": self.style,
            "generative_images": len(train),
            "generative_steps": steps,
        }
