"""Masked autoencoders (He et al. 2022): hide most patches at random, encode only the visible
ones, and let a light decoder reconstruct the hidden patches' pixels.

The modern form of inpainting: the hidden region is a random 75% of the patches rather than one
block, the encoder (a ViT) never sees a mask token, so it pays only for the quarter it sees, and
the loss is on each hidden patch's pixels normalised by that patch's own mean and variance (the
paper's ``norm_pix_loss``, which it found to learn better features). Needs a backbone with
``forward_tokens(images, keep)``: ``backbone=vit_tiny``.
"""

import torch
from torch import nn
from torchvision.models.vision_transformer import EncoderBlock

from ssl_lab.errors import SslLabError
from ssl_lab.pretext.task import PretextTask


def visible_count(num_patches: int, mask_ratio: float) -> int:
    """How many patches the encoder sees (rounded down, as the paper's code does)."""
    return int(num_patches * (1 - mask_ratio))


def random_patch_mask(
    batch: int, num_patches: int, keep: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """(B, N) booleans, True at the hidden patches: for every image exactly ``N - keep`` of its
    N patches, each set of that size equally likely (the first ``keep`` of a random order)."""
    order = torch.rand(batch, num_patches, device=device).argsort(dim=1)
    hidden = torch.ones(batch, num_patches, dtype=torch.bool, device=device)
    return hidden.scatter(1, order[:, :keep], False)


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, N, patch * patch * C), patches in row-major order."""
    b, c, h, w = images.shape
    x = images.reshape(b, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, (h // patch) * (w // patch), patch * patch * c)


def unpatchify(patches: torch.Tensor, patch: int, channels: int, rows: int) -> torch.Tensor:
    """The inverse of ``patchify``."""
    b, n, _ = patches.shape
    cols = n // rows
    x = patches.reshape(b, rows, cols, patch, patch, channels)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(b, channels, rows * patch, cols * patch)


class MaskedAutoencoder(PretextTask):
    """Inputs and targets are the images with the hidden-pixel mask stacked as a last channel
    (as inpainting's targets), so the mask that ``make_batch`` drew reaches both ``forward`` and
    ``loss``. ``forward`` returns the predicted pixels of every patch (B, N, p*p*C); the loss
    reads only the hidden ones."""

    def __init__(
        self,
        feature_dim: int,
        channels: int,
        image_size: int,
        patch_size: int,
        mask_ratio: float = 0.75,
        decoder_width: int = 64,
        decoder_depth: int = 2,
        decoder_heads: int = 4,
        norm_pix: bool = True,
    ) -> None:
        super().__init__()
        self.patch, self.channels, self.norm_pix = patch_size, channels, norm_pix
        self.rows = image_size // patch_size
        self.num_patches = self.rows**2
        self.keep = visible_count(self.num_patches, mask_ratio)
        if self.keep < 1:
            raise SslLabError(
                f"pretext.task.mask_ratio={mask_ratio}: hides all {self.num_patches} patches"
            )
        self.embed = nn.Linear(feature_dim, decoder_width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_width))
        self.positions = nn.Parameter(torch.zeros(1, 1 + self.num_patches, decoder_width))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        nn.init.trunc_normal_(self.positions, std=0.02)  # learned (the paper: fixed sin-cos)
        self.decoder = nn.Sequential(
            *(
                EncoderBlock(decoder_heads, decoder_width, 4 * decoder_width, 0.0, 0.0)
                for _ in range(decoder_depth)
            ),
            nn.LayerNorm(decoder_width, eps=1e-6),
        )
        self.head = nn.Linear(decoder_width, patch_size * patch_size * channels)

    def make_batch(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        images = batch[0]
        b, _, h, w = images.shape
        hidden = random_patch_mask(b, self.num_patches, self.keep, images.device)
        pixels = hidden.view(b, 1, self.rows, self.rows).to(images.dtype)
        pixels = pixels.repeat_interleave(self.patch, 2).repeat_interleave(self.patch, 3)
        stacked = torch.cat([images, pixels], dim=1)
        return stacked, stacked

    def forward(self, backbone: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        if not hasattr(backbone, "forward_tokens"):
            raise SslLabError(
                f"pretext=mae needs a ViT backbone (backbone=vit_tiny), not "
                f"{type(backbone).__name__}"
            )
        images, hidden = inputs[:, :-1], inputs[:, -1, :: self.patch, :: self.patch]
        hidden = hidden.flatten(1) > 0.5  # (B, N)
        # the visible patches first, each image's in row-major order (a stable sort)
        keep = hidden.to(torch.int8).argsort(dim=1, stable=True)[:, : self.keep]
        tokens, _ = backbone.forward_tokens(images, keep)  # (B, 1 + K, width): visible only
        x = self.embed(tokens)
        b, d = len(x), x.shape[-1]
        full = self.mask_token.to(x.dtype).expand(b, self.num_patches, d)
        full = full.scatter(1, keep[..., None].expand(-1, -1, d), x[:, 1:])
        x = torch.cat([x[:, :1], full], dim=1) + self.positions
        return self.head(self.decoder(x)[:, 1:])

    def targets(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each patch's pixels (normalised by the patch's mean and std with ``norm_pix``), and
        that mean and std."""
        patches = patchify(images.float(), self.patch)
        if not self.norm_pix:
            return patches, torch.zeros_like(patches[..., :1]), torch.ones_like(patches[..., :1])
        mean = patches.mean(dim=-1, keepdim=True)
        std = (patches.var(dim=-1, keepdim=True) + 1e-6).sqrt()
        return (patches - mean) / std, mean, std

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        images, hidden = targets[:, :-1], targets[:, -1, :: self.patch, :: self.patch]
        wanted, _, _ = self.targets(images)
        per_patch = ((outputs.float() - wanted) ** 2).mean(dim=-1)
        hidden = hidden.flatten(1)
        return (per_patch * hidden).sum() / hidden.sum().clamp_min(1.0)

    def picture(
        self, backbone: nn.Module, batch: tuple[torch.Tensor, ...]
    ) -> list[list[tuple[torch.Tensor, str]]]:
        stacked, _ = self.make_batch((batch[0][:6],))
        images, hidden = stacked[:, :-1], stacked[:, -1:].bool()
        _, mean, std = self.targets(images)
        predicted = self(backbone, stacked).float() * std + mean  # back to the patch's pixels
        filled = unpatchify(predicted, self.patch, self.channels, self.rows).to(images.dtype)
        filled = torch.where(hidden, filled, images)
        shown = images.masked_fill(hidden, 0.0)
        share = f"{100 * (1 - self.keep / self.num_patches):.0f}% hidden"
        return [
            [(inp, f"masked input ({share})"), (fill, "reconstruction"), (img, "original")]
            for inp, fill, img in zip(shown, filled, images)
        ]
