"""Semantic segmentation: an FCN-style decoder on the backbone's feature map, trained per pixel on
the labelled subset. Does the representation know *where* a class is, not only *which* it is?

Datasets of one object per image (digits, MNIST-like) have no masks, so they are derived: the
image's class index + 1 on foreground pixels (brighter than ``threshold`` before normalisation),
background (0) elsewhere; ``num_classes + 1`` segmentation classes in all.
"""

from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from ssl_lab.downstream.classifier import ClassifierModule
from ssl_lab.downstream.task import DownstreamTask
from ssl_lab.metrics import JaccardIndex
from ssl_lab.ranks import unrepeated

SPLITS = {"train": "transfer/train_", "val": "transfer/val_", "test": "test/"}
MIN_CHANNELS = 32


def derive_masks(
    images: torch.Tensor, labels: torch.Tensor, threshold: torch.Tensor
) -> torch.Tensor:
    """(B, H, W) masks: ``labels + 1`` where any channel of ``images`` (B, C, H, W) is above its
    ``threshold`` (C,), given in the images' normalised units; 0 elsewhere."""
    foreground = (images > threshold.view(1, -1, 1, 1)).any(dim=1)
    return torch.where(foreground, labels.view(-1, 1, 1) + 1, 0)


def fcn_decoder(in_channels: int, num_classes: int, levels: int, width: int) -> nn.Sequential:
    """Long et al. 2015 without skips (the hand-off is one feature map): ``levels`` learned 2x
    upsamplings (transposed convolutions), halving the channels from ``width`` as the map grows
    so each level costs about the same, then a 1x1 layer scoring each pixel's classes.

    Never fewer than ``MIN_CHANNELS``: the last layers carry every class's shape, and 16 channels
    for 11 classes halved the mIoU on digits (0.39 against 0.76, 15 epochs)."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(inplace=True),
    ]
    channels = width
    for _ in range(levels):
        nxt = max(MIN_CHANNELS, channels // 2)
        layers += [
            nn.ConvTranspose2d(channels, nxt, 4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(nxt),
            nn.ReLU(inplace=True),
        ]
        channels = nxt
    layers.append(nn.Conv2d(channels, num_classes, 1))
    return nn.Sequential(*layers)


class SegmentationModule(ClassifierModule):
    """Per-pixel cross-entropy on the decoder's map, resized to the input; the freeze policy,
    optimiser groups and pixel accuracy are the classifier's, mIoU is added beside them.

    mIoU is ``MulticlassJaccardIndex(average="macro")`` (counted on the device:
    ``metrics.JaccardIndex``): intersections and unions summed over the whole split, then
    averaged over classes (the PASCAL VOC definition), not a mean of per-image scores
    (``torchmetrics.segmentation.MeanIoU``), where an image in which a class covers a few
    pixels would weigh as much as one it fills.
    """

    def __init__(
        self,
        backbone: nn.Module,
        decoder: nn.Module,
        num_classes: int,
        threshold: torch.Tensor,
        lr: float,
        **classifier_args: Any,
    ) -> None:
        super().__init__(backbone, decoder, num_classes, lr, **classifier_args)
        self.register_buffer("threshold", threshold)
        self.miou = nn.ModuleDict({f"{s}_miou": JaccardIndex(num_classes) for s in SPLITS})

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], split: str) -> torch.Tensor:
        x, y = batch
        if split == "train" and self.augment is not None:
            x = self.augment(x)  # before the masks are derived, so they move with the image
        masks = derive_masks(x, y, self.threshold)
        logits = self.head(self.backbone.forward_features(x))
        logits = F.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
        loss = F.cross_entropy(logits, masks)
        accuracy, miou = self.accuracy[f"{split}_acc"], self.miou[f"{split}_miou"]
        accuracy.update(logits.detach(), masks)
        miou.update(logits.detach(), masks)
        prefix = SPLITS[split]
        self.log(f"{prefix}loss", loss, on_step=False, on_epoch=True, batch_size=len(x))
        self.log(f"{prefix}pixel_acc", accuracy, on_step=False, on_epoch=True, batch_size=len(x))
        self.log(f"{prefix}miou", miou, on_step=False, on_epoch=True, batch_size=len(x))
        return loss


class Segmentation(DownstreamTask):
    """Trains on the labelled subset (``data.labelled_loader``: few labels, as many steps), with
    the dataset's transfer augmentation; ``score`` is the test mIoU, the background included."""

    def __init__(
        self,
        epochs: int,
        lr: float,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        threshold: float = 0.5,
        decoder_levels: int = 3,
        decoder_width: int = 128,
        backbone_lr_scale: float = 1.0,
        freeze: str = "full",
        trainable_blocks: int = 1,
        layer_decay: float = 1.0,
    ) -> None:
        self.epochs, self.lr = epochs, lr
        self.optimizer, self.scheduler, self.threshold = optimizer, scheduler, threshold
        self.decoder_levels, self.decoder_width = decoder_levels, decoder_width
        self.policy = {
            "backbone_lr_scale": backbone_lr_scale,
            "freeze": freeze,
            "trainable_blocks": trainable_blocks,
            "layer_decay": layer_decay,
        }

    def evaluate(
        self,
        backbone: nn.Module,
        data: pl.LightningDataModule,
        make_trainer: Callable[..., pl.Trainer],
    ) -> dict[str, Any]:
        classes = data.num_classes + 1  # background
        decoder = fcn_decoder(backbone.out_dim, classes, self.decoder_levels, self.decoder_width)
        module = SegmentationModule(
            backbone,
            decoder,
            classes,
            (self.threshold - data.mean) / data.std,
            self.lr,
            optimizer=self.optimizer,
            scheduler=self.scheduler,
            augment=data.augment,
            **self.policy,
        )
        trainer = make_trainer(max_epochs=self.epochs)
        trainer.fit(
            module,
            train_dataloaders=data.labelled_loader(data.labelled_dataset()),
            val_dataloaders=data.val_dataloader(),
        )
        (results,) = trainer.test(
            module, dataloaders=unrepeated(data.test_dataloader()), verbose=False
        )
        return {
            "score": float(results["test/miou"]),
            "score_name": "test/miou",
            "test_pixel_acc": float(results["test/pixel_acc"]),
            "test_loss": float(results["test/loss"]),
            "freeze": self.policy["freeze"],
            "trainable_blocks": module.n_trainable_blocks,
            "layer_decay": self.policy["layer_decay"],
        }
