"""SimCLR's random views, made for a whole batch at once on its device with parameters drawn per
image: no per-image Python, and no library that draws one set of parameters per call
(torchvision's v2 transforms do that on a batched tensor: every image gets the same crop).

Crop, resize and flip are one affine map per image (a sampling grid + ``grid_sample``); colour
jitter and grayscale are per-image scalars and 3x3 matrices. Images arrive normalised by the
dataset's mean and std, which the task does not know, so the photometric changes act on
normalised pixels: brightness shifts by up to ``0.8 * strength`` standard deviations (where
torchvision multiplies raw pixels), contrast and saturation blend with the image's own mean and
grayscale as torchvision does, hue rotates colours about the gray axis (in YIQ space: a rotation,
where torchvision shifts HSV hue), and nothing is clamped. The order is fixed (torchvision's
ColorJitter permutes it per call). No Gaussian blur: SimCLR drops it for 32 px images.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

# RGB -> YIQ (NTSC): Y is luminance, I and Q the two colour axes that a hue rotation turns
_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_GRAY = torch.tensor([0.299, 0.587, 0.114])  # torchvision's rgb_to_grayscale weights


def crop_flip_grids(
    batch: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    flip_prob: float,
    device: torch.device | str,
) -> torch.Tensor:
    """Sampling grids (B, H, W, 2) of random resized crops, one per image: area share uniform in
    ``scale``, aspect ratio log-uniform in ``ratio``, anywhere inside the image, mirrored with
    probability ``flip_prob``. A crop that would leave the image is shrunk to fit (torchvision
    redraws up to 10 times, then falls back to a centre crop)."""
    area = torch.empty(batch, device=device).uniform_(*scale)
    log_ratio = torch.empty(batch, device=device).uniform_(math.log(ratio[0]), math.log(ratio[1]))
    aspect = log_ratio.exp()
    crop_w = (area * aspect).sqrt().clamp(max=1.0)  # shares of the side, in (0, 1]
    crop_h = (area / aspect).sqrt().clamp(max=1.0)
    # affine_grid's coordinates run over [-1, 1]: a crop of share s has its centre in [s-1, 1-s]
    center_x = (torch.rand(batch, device=device) * 2 - 1) * (1 - crop_w)
    center_y = (torch.rand(batch, device=device) * 2 - 1) * (1 - crop_h)
    mirror = torch.where(torch.rand(batch, device=device) < flip_prob, -1.0, 1.0)
    # the affine map has no rotation or shear, so x depends on the column only and y on the row:
    # two broadcasts instead of affine_grid's matrix product (10x faster on a CPU)
    xs = (torch.arange(width, device=device) * 2 + 1) / width - 1  # pixel centres, as
    ys = (torch.arange(height, device=device) * 2 + 1) / height - 1  # align_corners=False
    grid_x = (crop_w * mirror)[:, None, None] * xs.view(1, 1, width) + center_x[:, None, None]
    grid_y = crop_h[:, None, None] * ys.view(1, height, 1) + center_y[:, None, None]
    return torch.stack(torch.broadcast_tensors(grid_x, grid_y), dim=-1)


def _blend(images: torch.Tensor, other: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """factor * images + (1 - factor) * other, ``factor`` one value per image."""
    factor = factor.view(-1, 1, 1, 1)
    return factor * images + (1 - factor) * other


def color_jitter(
    images: torch.Tensor, strength: float, apply: torch.Tensor, gray: torch.Tensor
) -> torch.Tensor:
    """Brightness, contrast, saturation (0.8 * strength) and hue (0.2 * strength), as SimCLR
    sets them, on the images where ``apply`` (B,) is True; then grayscale where ``gray`` is."""
    b, c = images.shape[:2]
    device = images.device

    def factor(spread: float) -> torch.Tensor:  # uniform in [1 - spread, 1 + spread], 1 if off
        drawn = 1 + (torch.rand(b, device=device) * 2 - 1) * spread
        return torch.where(apply, drawn, torch.ones_like(drawn))

    spread = 0.8 * strength
    shift = (factor(spread) - 1).view(-1, 1, 1, 1)
    images = images + shift  # brightness, in standard deviations
    luma = images if c == 1 else torch.einsum("k,bkhw->bhw", _GRAY.to(device), images)[:, None]
    images = _blend(images, luma.mean(dim=(1, 2, 3), keepdim=True), factor(spread))  # contrast
    if c != 3:
        return images
    luma = torch.einsum("k,bkhw->bhw", _GRAY.to(device), images)[:, None]
    images = _blend(images, luma, factor(spread))  # saturation
    angle = (factor(0.2 * strength) - 1) * math.pi  # hue: up to +-0.2*strength of a full turn
    cos, sin = angle.cos(), angle.sin()
    turn = torch.zeros(b, 3, 3, device=device)
    turn[:, 0, 0] = 1
    turn[:, 1, 1], turn[:, 1, 2], turn[:, 2, 1], turn[:, 2, 2] = cos, -sin, sin, cos
    yiq = _YIQ.to(device)
    hue = torch.linalg.inv(yiq) @ turn @ yiq  # (B, 3, 3): identity where angle is 0
    images = torch.einsum("bij,bjhw->bihw", hue, images)
    luma = torch.einsum("k,bkhw->bhw", _GRAY.to(device), images)[:, None]
    return torch.where(gray.view(-1, 1, 1, 1), luma.expand_as(images), images)


class RandomViews(nn.Module):
    """One random view of every image of a batch per call (SimCLR makes two)."""

    def __init__(
        self,
        crop_scale: tuple[float, float] = (0.2, 1.0),
        crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        flip_prob: float = 0.0,
        jitter_strength: float = 0.5,
        jitter_prob: float = 0.8,
        grayscale_prob: float = 0.2,
    ) -> None:
        super().__init__()
        self.crop_scale, self.crop_ratio = tuple(crop_scale), tuple(crop_ratio)
        self.flip_prob, self.jitter_strength = flip_prob, jitter_strength
        self.jitter_prob, self.grayscale_prob = jitter_prob, grayscale_prob

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        b, _, h, w = images.shape
        grids = crop_flip_grids(
            b, h, w, self.crop_scale, self.crop_ratio, self.flip_prob, images.device
        )
        views = F.grid_sample(images, grids.to(images.dtype), align_corners=False)
        if self.jitter_strength <= 0 and self.grayscale_prob <= 0:
            return views
        apply = torch.rand(b, device=images.device) < self.jitter_prob
        gray = torch.rand(b, device=images.device) < self.grayscale_prob
        return color_jitter(views, self.jitter_strength, apply, gray)
