"""Image inpainting (context encoders, Pathak et al. 2016): hide a region, reconstruct it.

The backbone is the encoder; a small decoder upsamples its feature map back to an image. Hidden
pixels are set to the dataset mean (0, since inputs are normalised by it). The loss is L2 on the
hidden region plus, with ``overlap_weight`` times the weight, on a thin ring of visible pixels
around it (the paper's overlap, which makes the fill blend with its border); optionally plus the
paper's adversarial term (``adversarial_weight``, 0.001 in the paper, off by default).
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from ssl_lab.backbones.decoder import upsampling_decoder
from ssl_lab.errors import SslLabError
from ssl_lab.pretext.schema import MASK_TYPES
from ssl_lab.pretext.task import PretextTask


def brush_mask(points: torch.Tensor, radius: float, height: int, width: int) -> torch.Tensor:
    """(B, 1, H, W) masks, True at every pixel within ``radius`` of one of the (B, P, 2) (row,
    column) ``points`` of its image. Only the square of pixels around each point can be inside
    its brush: those are tested (a few dozen per point, not the whole image) and the hits
    scattered, so the cost does not grow with the image."""
    batch, device = len(points), points.device
    reach = torch.arange(-math.ceil(radius), math.ceil(radius) + 2, device=device)
    corner = points.floor().long()
    rows = corner[..., 0, None, None] + reach.view(1, 1, -1, 1)  # (B, P, K, 1)
    cols = corner[..., 1, None, None] + reach.view(1, 1, 1, -1)  # (B, P, 1, K)
    inside = (
        (rows.float() - points[..., 0, None, None]) ** 2
        + (cols.float() - points[..., 1, None, None]) ** 2
        <= radius**2
    ) & ((rows >= 0) & (rows < height) & (cols >= 0) & (cols < width))
    # every candidate adds its hit (0 or 1) to its pixel, clamped into the image: counting
    # rather than selecting the hits keeps the shapes fixed (no sync with the GPU)
    pixel = rows.clamp(0, height - 1) * width + cols.clamp(0, width - 1)
    image = torch.arange(batch, device=device).view(batch, 1, 1, 1) * (height * width)
    hits = torch.zeros(batch * height * width, dtype=torch.int32, device=device)
    hits.index_add_(0, (image + pixel).flatten(), inside.flatten().to(torch.int32))
    return (hits > 0).view(batch, 1, height, width)


def make_masks(
    kind: str, batch: int, height: int, width: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Boolean masks (B, 1, H, W), True where pixels are hidden. Built with batched tensor ops.

    - ``center``: the central square of half the side, a quarter of the area;
    - ``random_blocks``: 4 squares of a quarter of the side at random places, at most a quarter
      of the area (less where they overlap);
    - ``irregular``: 3 free-form strokes (random walks with a round brush, kept inside the image),
      16% of the area on average (3-26% per image).
    """
    ys = torch.arange(height, device=device).view(1, 1, height, 1)
    xs = torch.arange(width, device=device).view(1, 1, 1, width)
    if kind == "center":
        top, left = height // 4, width // 4
        mask = (ys >= top) & (ys < top + height // 2) & (xs >= left) & (xs < left + width // 2)
        return mask.expand(batch, 1, height, width).clone()
    if kind == "random_blocks":
        side_h, side_w = max(1, height // 4), max(1, width // 4)
        top = torch.randint(0, height - side_h + 1, (batch, 4, 1, 1), device=device)
        left = torch.randint(0, width - side_w + 1, (batch, 4, 1, 1), device=device)
        inside = (ys >= top) & (ys < top + side_h) & (xs >= left) & (xs < left + side_w)
        return inside.any(dim=1, keepdim=True)
    if kind == "irregular":
        strokes, steps = 3, 8
        size = min(height, width)
        radius, step_len = max(1.0, size / 16), size / 10
        start = torch.rand(batch, strokes, 1, 2, device=device) * torch.tensor(
            [height, width], device=device, dtype=torch.float32
        )
        angle = torch.rand(batch, strokes, 1, device=device) * 2 * math.pi + torch.cumsum(
            (torch.rand(batch, strokes, steps, device=device) - 0.5) * math.pi / 2, dim=2
        )
        moves = torch.stack([angle.sin(), angle.cos()], dim=-1) * step_len
        limit = torch.tensor([height - 1, width - 1], device=device, dtype=torch.float32)
        points = torch.minimum((start + torch.cumsum(moves, dim=2)).clamp_min(0), limit)
        points = points.flatten(1, 2)  # (B, strokes*steps, 2), kept inside the image
        return brush_mask(points, radius, height, width)
    raise SslLabError(f"pretext.task.mask={kind}: choose from {', '.join(MASK_TYPES)}")


class Inpainting(PretextTask):
    """``decoder_levels`` 2x upsampling stages; the output is resized to the input size if the
    backbone's total stride is not 2**levels."""

    def __init__(
        self,
        feature_dim: int,
        channels: int,
        mask: str = "center",
        overlap: int = 2,
        overlap_weight: float = 10.0,
        decoder_levels: int = 4,
        adversarial_weight: float = 0.0,
    ) -> None:
        super().__init__()
        if mask not in MASK_TYPES:
            raise SslLabError(f"pretext.task.mask={mask}: choose from {', '.join(MASK_TYPES)}")
        self.mask_type, self.overlap, self.overlap_weight = mask, overlap, overlap_weight
        self.head = upsampling_decoder(feature_dim, channels, decoder_levels)
        self.adversarial_weight = adversarial_weight
        if adversarial_weight > 0:
            self.discriminator = nn.Sequential(
                nn.Conv2d(channels, 32, 4, stride=2, padding=1),
                nn.LeakyReLU(0.2, inplace=True),
                nn.Conv2d(32, 64, 4, stride=2, padding=1),
                nn.LeakyReLU(0.2, inplace=True),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
                nn.Linear(64, 1),
            )

    def make_batch(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs: images with hidden pixels set to 0 (the mean). Targets: (B, C+1, H, W), the
        original image with the mask stacked as a last channel."""
        images = batch[0]
        b, _, h, w = images.shape
        mask = make_masks(self.mask_type, b, h, w, images.device)
        inputs = images.masked_fill(mask, 0.0)
        return inputs, torch.cat([images, mask.to(images.dtype)], dim=1)

    def forward(self, backbone: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        out = self.head(backbone.forward_features(inputs))
        if out.shape[-2:] != inputs.shape[-2:]:
            out = F.interpolate(out, size=inputs.shape[-2:], mode="bilinear", align_corners=False)
        return out

    def loss_weights(self, mask: torch.Tensor) -> torch.Tensor:
        """1 on hidden pixels, ``overlap_weight`` on the ring of ``overlap`` visible pixels
        around them, 0 elsewhere."""
        if self.overlap <= 0:
            return mask
        grown = F.max_pool2d(mask, 2 * self.overlap + 1, stride=1, padding=self.overlap)
        return mask + self.overlap_weight * (grown - mask)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        images, mask = targets[:, :-1], targets[:, -1:]
        weights = self.loss_weights(mask)
        squared = (outputs.float() - images.float()) ** 2 * weights
        reconstruction = squared.sum() / (weights.sum() * images.shape[1]).clamp_min(1.0)
        if self.adversarial_weight <= 0:
            return reconstruction
        return reconstruction + self._adversarial(torch.where(mask.bool(), outputs, images), images)

    def _adversarial(self, filled: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Both players in one loss for one optimiser: the discriminator learns real from filled
        on a detached fill; the fill is pushed towards "real" through a detached copy of the
        discriminator's weights, so each term moves only its own player."""
        real = torch.ones(len(images), 1, device=images.device)
        d = self.discriminator
        d_loss = F.binary_cross_entropy_with_logits(
            d(images), real
        ) + F.binary_cross_entropy_with_logits(d(filled.detach()), torch.zeros_like(real))
        frozen = {name: p.detach() for name, p in d.named_parameters()}
        fooled = torch.func.functional_call(d, frozen, (filled,))
        g_loss = F.binary_cross_entropy_with_logits(fooled, real)
        return self.adversarial_weight * g_loss + d_loss

    def picture(
        self, backbone: nn.Module, batch: tuple[torch.Tensor, ...]
    ) -> list[list[tuple[torch.Tensor, str]]]:
        inputs, targets = self.make_batch((batch[0][:6],))
        images, mask = targets[:, :-1], targets[:, -1:].bool()
        filled = torch.where(mask, self(backbone, inputs), inputs)
        return [
            [(inp, "masked input"), (fill, "reconstruction"), (img, "original")]
            for inp, fill, img in zip(inputs, filled, images)
        ]
