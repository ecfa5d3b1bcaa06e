"""A Vision Transformer for small images, built from torchvision's ``VisionTransformer``.

torchvision, not timm: torchvision is a dependency already (timm is not), and its ViT has the
standard pre-norm blocks (attention through ``scaled_dot_product_attention``), a class token and
learned position embeddings. Its own ``forward`` will not do here: it takes 3 channels and one
image size only, and it cannot encode a subset of the patches (MAE). So this module keeps its
parts (the blocks, the final norm, the class token, the position embeddings, their
initialisation) and owns the few lines around them: a patch embedding for any channel count,
position embeddings resized for other grids (jigsaw's tiles), and ``forward_tokens`` that
encodes only the patches it is told to keep.
"""

import math

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from ssl_lab.errors import SslLabError

POOLINGS = ("mean", "cls")


class PatchEmbedding(nn.Module):
    """Patches -> tokens, with the class token and the position embeddings (the first block)."""

    def __init__(self, patch_embed: nn.Conv2d, class_token: nn.Parameter, pos: nn.Parameter):
        super().__init__()
        self.proj, self.class_token, self.pos_embedding = patch_embed, class_token, pos

    def positions(self, rows: int, cols: int) -> torch.Tensor:
        """(1, rows * cols, width) position embeddings of the patches: the trained grid's own, or
        resized bicubically to another grid."""
        pos = self.pos_embedding[:, 1:]
        side = math.isqrt(pos.shape[1])
        if (rows, cols) == (side, side):
            return pos
        grid = pos.reshape(1, side, side, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(rows, cols), mode="bicubic", align_corners=False)
        return grid.flatten(2).transpose(1, 2)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        """Patch tokens with their positions (B, N, width), and the grid (rows, cols)."""
        patches = self.proj(images)  # (B, width, rows, cols)
        rows, cols = patches.shape[-2:]
        return patches.flatten(2).transpose(1, 2) + self.positions(rows, cols), (rows, cols)

    def with_class_token(self, tokens: torch.Tensor) -> torch.Tensor:
        cls = self.class_token + self.pos_embedding[:, :1]
        return torch.cat([cls.expand(len(tokens), -1, -1), tokens], dim=1)


class VisionTransformer(nn.Module):
    """ViT: ``patch_size`` px patches of ``image_size`` px images, ``depth`` blocks of ``width``
    features and ``heads`` heads. ViT-Tiny is width 192, depth 12, heads 3.

    ``forward_features`` returns the patch tokens as a map (B, width, rows, cols), stride
    ``patch_size``, so the decoders of inpainting and segmentation read it as they read a CNN's;
    ``forward`` pools the tokens (``mean`` of the patch tokens, or the ``cls`` token).
    """

    def __init__(
        self,
        in_channels: int = 1,
        image_size: int = 32,
        patch_size: int = 4,
        width: int = 96,
        depth: int = 4,
        heads: int = 3,
        mlp_ratio: int = 4,
        pooling: str = "mean",
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise SslLabError(
                f"backbone.patch_size={patch_size}: must divide the image size {image_size}"
            )
        if pooling not in POOLINGS:
            raise SslLabError(f"backbone.pooling={pooling}: one of {', '.join(POOLINGS)}")
        net = torchvision.models.VisionTransformer(
            image_size, patch_size, depth, heads, width, mlp_ratio * width
        )
        proj = nn.Conv2d(in_channels, width, patch_size, stride=patch_size)
        nn.init.trunc_normal_(proj.weight, std=math.sqrt(1 / (in_channels * patch_size**2)))
        nn.init.zeros_(proj.bias)  # as torchvision initialises its 3-channel conv_proj
        self.embedding = PatchEmbedding(proj, net.class_token, net.encoder.pos_embedding)
        nn.init.trunc_normal_(self.embedding.class_token, std=0.02)  # torchvision: zeros
        self.layers = nn.ModuleList(net.encoder.layers)
        self.norm = net.encoder.ln
        self.patch_size, self.pooling, self.out_dim = patch_size, pooling, width

    def blocks(self) -> list[nn.Module]:
        """The embedding, then each Transformer block (the last one with the final norm)."""
        *first, last = self.layers
        return [self.embedding, *first, nn.ModuleList([last, self.norm])]

    def forward_tokens(
        self, images: torch.Tensor, keep: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, tuple[int, int]]:
        """(B, 1 + N, width) normalised tokens, the class token first, and the patch grid. With
        ``keep`` (B, K) patch indices (row-major), only those patches are encoded (N = K)."""
        if min(images.shape[-2:]) < self.patch_size:
            raise SslLabError(
                f"backbone: images of {tuple(images.shape[-2:])} px are smaller than one "
                f"patch ({self.patch_size} px)"
            )
        tokens, grid = self.embedding(images)
        if keep is not None:
            tokens = tokens.gather(1, keep[..., None].expand(-1, -1, tokens.shape[-1]))
        x = self.embedding.with_class_token(tokens)
        for layer in self.layers:
            x = layer(x)
        return self.norm(x), grid

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        tokens, (rows, cols) = self.forward_tokens(images)
        return tokens[:, 1:].transpose(1, 2).reshape(len(images), -1, rows, cols)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens, _ = self.forward_tokens(images)
        return tokens[:, 0] if self.pooling == "cls" else tokens[:, 1:].mean(dim=1)
