"""Training-time augmentation for transfer, batched on the batch's device (no per-image Python)."""

import torch
import torch.nn.functional as F
from torch import nn


class BatchAugment(nn.Module):
    """Random translation (pad by ``crop_padding``, crop back at a random offset per image) and,
    with ``hflip``, random horizontal flips. Identity outside training and when both are off."""

    def __init__(self, crop_padding: int = 0, hflip: bool = False) -> None:
        super().__init__()
        self.crop_padding, self.hflip = crop_padding, hflip

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return images
        b, _, h, w = images.shape
        if self.crop_padding > 0:
            p = self.crop_padding
            padded = F.pad(images, (p, p, p, p))  # zeros: the dataset mean after normalisation
            offsets = torch.randint(0, 2 * p + 1, (b, 2), device=images.device)
            rows = (offsets[:, :1] + torch.arange(h, device=images.device))[:, :, None]
            cols = (offsets[:, 1:] + torch.arange(w, device=images.device))[:, None, :]
            batch = torch.arange(b, device=images.device)[:, None, None]
            images = padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)
        if self.hflip:
            flip = torch.rand(b, 1, 1, 1, device=images.device) < 0.5
            images = torch.where(flip, images.flip(-1), images)
        return images
