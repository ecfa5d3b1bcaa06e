"""A small VGG-style CNN: fast enough to pretrain on a laptop CPU in seconds."""

from collections.abc import Sequence

import torch
from torch import nn


def _stage(in_ch: int, out_ch: int, convs: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i in range(convs):
        layers += [
            nn.Conv2d(in_ch if i == 0 else out_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        ]
    layers.append(nn.MaxPool2d(2, ceil_mode=True))  # ceil: odd sizes (jigsaw tiles) survive
    return nn.Sequential(*layers)


class SmallCNN(nn.Module):
    """Stages of (conv-BN-ReLU) x convs_per_stage + 2x2 max-pool, then global average pooling.

    Runs channels-last: 1.5-2x faster on CPU for these narrow convolutions (BENCHMARKS.md).
    """

    def __init__(
        self,
        in_channels: int = 1,
        widths: Sequence[int] = (16, 32, 64, 128),
        convs_per_stage: int = 1,
    ) -> None:
        super().__init__()
        chans = [in_channels, *widths]
        self.stages = nn.ModuleList(
            _stage(chans[i], chans[i + 1], convs_per_stage) for i in range(len(widths))
        )
        self.out_dim = int(widths[-1])
        self.to(memory_format=torch.channels_last)

    def blocks(self) -> list[nn.Module]:
        return list(self.stages)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        for stage in self.stages:
            x = stage(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x).mean(dim=(2, 3))
