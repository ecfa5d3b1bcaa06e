"""SimCLR (Chen et al. 2020): two random views of each image; a projection head; NT-Xent pulls
each view towards its partner and away from every other view of the global batch.

Under DDP every process gathers the projections of all processes (with autograd, so gradients
flow back to the process that made each one) and scores its own views against all of them: the
negatives are the whole global batch, and 2 processes compute the loss of 1 process that holds
the whole batch.
"""

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.nn.functional import all_gather

from ssl_lab.pretext.task import PretextTask
from ssl_lab.pretext.views import RandomViews


def gather_with_grad(z: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(all processes' ``z`` stacked in rank order, where this process's rows start). Without a
    process group: ``z`` itself, at 0. Every process must hold as many rows."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return z, 0
    return torch.cat(all_gather(z)), dist.get_rank() * len(z)


def nt_xent(z: torch.Tensor, partner: torch.Tensor, temperature: float) -> torch.Tensor:
    """The normalised-temperature cross-entropy of the rows of ``z`` (this process's views):
    for row i, -log softmax over every other row of the global batch of cos(z_i, .) / t, at its
    partner (``partner[i]``, an index into this process's rows). Mean over this process's rows."""
    z = F.normalize(z.float(), dim=1)
    everyone, offset = gather_with_grad(z)
    logits = z @ everyone.T / temperature
    rows = torch.arange(len(z), device=z.device)
    itself = torch.zeros_like(logits, dtype=torch.bool)
    itself[rows, rows + offset] = True
    logits = logits.masked_fill(itself, float("-inf"))  # a view is not its own negative
    return F.cross_entropy(logits, partner + offset)


class SimCLR(PretextTask):
    """The batch becomes [view 1 of every image; view 2 of every image]; targets are each view's
    partner (row i and row i + B). The head is SimCLR's MLP projection (Linear-ReLU-Linear; no
    batch norm, so a process's loss does not depend on how the batch is split)."""

    def __init__(
        self,
        feature_dim: int,
        temperature: float = 0.2,
        projection_dim: int = 128,
        hidden_dim: int = 512,
        crop_scale: tuple[float, float] = (0.2, 1.0),
        crop_ratio: tuple[float, float] = (3 / 4, 4 / 3),
        hflip: bool = False,
        jitter_strength: float = 0.5,
        jitter_prob: float = 0.8,
        grayscale_prob: float = 0.2,
    ) -> None:
        super().__init__()
        self.temperature = temperature
        self.views = RandomViews(
            crop_scale=crop_scale,
            crop_ratio=crop_ratio,
            flip_prob=0.5 if hflip else 0.0,
            jitter_strength=jitter_strength,
            jitter_prob=jitter_prob,
            grayscale_prob=grayscale_prob,
        )
        self.head = nn.Sequential(
            nn.Linear(feature_dim, hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, projection_dim),
        )

    def make_batch(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        images = batch[0]
        b = len(images)
        views = torch.cat([self.views(images), self.views(images)])
        partner = torch.arange(2 * b, device=images.device).roll(b)  # i <-> i + B
        return views, partner

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return nt_xent(outputs, targets, self.temperature)

    def picture(
        self, backbone: nn.Module, batch: tuple[torch.Tensor, ...]
    ) -> list[list[tuple[torch.Tensor, str]]]:
        """Each image, its two views, and the view the second one is closest to (its partner,
        if the features tell them apart)."""
        images = batch[0][:16]
        views, partner = self.make_batch((images,))
        z = F.normalize(self(backbone, views).float(), dim=1)
        b = len(images)
        nearest = (z[b:] @ z.T).scatter(1, (torch.arange(b) + b)[:, None].to(z.device), -2.0)
        found = nearest.argmax(1)
        return [
            [
                (images[i], "original"),
                (views[i], "view 1"),
                (views[b + i], "view 2"),
                (views[found[i]], "nearest to view 2" + (" (partner)" if found[i] == i else "")),
            ]
            for i in range(min(b, 6))
        ]
