"""Jigsaw puzzles (Noroozi & Favaro 2016): cut an image into a g x g grid of tiles, shuffle them by
one of P fixed permutations, and predict which permutation was used.

Shortcut defences from the paper: each tile is cut from its cell with a random offset and is smaller
than the cell (so edges cannot be matched), and each tile is normalised by its own mean and std (so
brightness and chromatic aberration give nothing away).
"""

import itertools
import math
from functools import lru_cache

import numpy as np
import torch
from torch import nn

from ssl_lab.errors import SslLabError
from ssl_lab.pretext.task import PretextTask

_MAX_ENUMERATED = 1_000_000  # 3x3 has 9! = 362,880 permutations; larger grids use a random pool
_POOL = 200_000


@lru_cache(maxsize=8)
def _permutation_set(n: int, grid: int, seed: int) -> np.ndarray:
    k = grid * grid
    rng = np.random.default_rng(seed)
    if math.factorial(k) <= _MAX_ENUMERATED:
        pool = np.array(list(itertools.permutations(range(k))), dtype=np.int8)
    else:
        pool = np.unique(np.argsort(rng.random((_POOL, k)), axis=1).astype(np.int8), axis=0)
    if n > len(pool):
        raise SslLabError(
            f"pretext.task.num_permutations={n}: a {grid}x{grid} grid has only {len(pool)} "
            f"permutations (lower it, or raise pretext.task.grid)"
        )
    chosen = [int(rng.integers(len(pool)))]
    used = np.zeros(len(pool), dtype=bool)
    summed = np.zeros(len(pool), dtype=np.int32)
    for _ in range(n - 1):
        used[chosen[-1]] = True
        summed += (pool != pool[chosen[-1]]).sum(1, dtype=np.int32)
        chosen.append(int(np.where(used, -1, summed).argmax()))
    return pool[chosen]


def permutation_set(n: int, grid: int = 3, seed: int = 0) -> torch.Tensor:
    """The paper's greedy maximal-Hamming permutation set, as a LongTensor of shape (n, grid*grid).

    Start from a random permutation; repeatedly add the unused permutation with the largest summed
    Hamming distance to those already chosen. Deterministic by seed; computed once per process.
    """
    return torch.from_numpy(_permutation_set(n, grid, seed).astype(np.int64))


class JigsawPuzzle(PretextTask):
    """The shared backbone embeds each tile; the concatenated tile features go to an MLP that
    classifies the permutation index."""

    def __init__(
        self,
        feature_dim: int,
        grid: int = 3,
        num_permutations: int = 100,
        tile_fraction: float = 0.85,
        hidden_dim: int = 512,
        grayscale_prob: float = 0.0,
        color_jitter: float = 0.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.grid, self.tile_fraction = grid, tile_fraction
        self.grayscale_prob, self.color_jitter = grayscale_prob, color_jitter
        self.num_classes = num_permutations
        self.register_buffer(
            "permutations", permutation_set(num_permutations, grid, seed), persistent=False
        )
        self.head = nn.Sequential(
            nn.Linear(grid * grid * feature_dim, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, num_permutations),
        )

    def cut_tiles(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, g*g, C, t, t) tiles in row-major cell order, each at a random offset
        inside its cell, t = tile_fraction of the cell side."""
        b, c, h, w = images.shape
        cell = min(h, w) // self.grid
        tile = max(1, round(self.tile_fraction * cell))
        n = self.grid * self.grid
        device = images.device
        offsets = torch.randint(0, cell - tile + 1, (b, n, 2), device=device)
        corner = torch.arange(self.grid, device=device) * cell
        rows0 = corner.repeat_interleave(self.grid)[None, :] + offsets[..., 0]  # (B, n)
        cols0 = corner.repeat(self.grid)[None, :] + offsets[..., 1]
        step = torch.arange(tile, device=device)
        rows = (rows0[..., None] + step)[..., :, None]  # (B, n, t, 1)
        cols = (cols0[..., None] + step)[..., None, :]  # (B, n, 1, t)
        batch = torch.arange(b, device=device)[:, None, None, None]
        tiles = images.permute(0, 2, 3, 1)[batch, rows, cols]  # (B, n, t, t, C)
        return tiles.permute(0, 1, 4, 2, 3)

    def _normalise_tiles(self, tiles: torch.Tensor) -> torch.Tensor:
        if tiles.shape[2] == 3 and self.training:
            b, n = tiles.shape[:2]
            if self.grayscale_prob > 0:
                gray = tiles.mean(2, keepdim=True).expand_as(tiles)
                pick = torch.rand(b, n, 1, 1, 1, device=tiles.device) < self.grayscale_prob
                tiles = torch.where(pick, gray, tiles)
            if self.color_jitter > 0:
                tiles = tiles + self.color_jitter * torch.randn(b, n, 3, 1, 1, device=tiles.device)
        mean = tiles.mean(dim=(2, 3, 4), keepdim=True)
        std = tiles.std(dim=(2, 3, 4), keepdim=True)
        return (tiles - mean) / (std + 1e-5)

    def make_batch(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs (B, g*g, C, t, t): position j holds the tile of cell
        ``permutations[label][j]``."""
        tiles = self._normalise_tiles(self.cut_tiles(batch[0]))
        labels = torch.randint(0, self.num_classes, (len(tiles),), device=tiles.device)
        order = self.permutations[labels]  # (B, n)
        shuffled = tiles[torch.arange(len(tiles), device=tiles.device)[:, None], order]
        return shuffled, labels

    def forward(self, backbone: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        b, n = inputs.shape[:2]
        features = backbone(inputs.flatten(0, 1))  # every tile through the shared backbone
        return self.head(features.reshape(b, n * features.shape[-1]))

    def assemble(self, tiles: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
        """Place input tile j into cell ``order[j]``: (n, C, t, t) -> (C, g*t, g*t)."""
        cells = torch.empty_like(tiles)
        cells[order] = tiles
        g = self.grid
        c, t = tiles.shape[1], tiles.shape[-1]
        return cells.reshape(g, g, c, t, t).permute(2, 0, 3, 1, 4).reshape(c, g * t, g * t)

    def picture(
        self, backbone: nn.Module, batch: tuple[torch.Tensor, ...]
    ) -> list[list[tuple[torch.Tensor, str]]]:
        inputs, labels = self.make_batch((batch[0][:6],))
        predicted = self(backbone, inputs).argmax(1)
        identity = torch.arange(self.grid * self.grid, device=inputs.device)
        return [
            [
                (self.assemble(tiles, identity), f"shuffled (perm {int(label)})"),
                (self.assemble(tiles, self.permutations[pred]), f"predicted order ({int(pred)})"),
                (self.assemble(tiles, self.permutations[label]), "true order"),
            ]
            for tiles, label, pred in zip(inputs, labels, predicted)
        ]
