"""A decoder from a backbone's feature map back to pixels, shared by the inpainting pretext task
and the generative transfer task (which may not import each other)."""

from torch import nn


def upsampling_decoder(in_channels: int, out_channels: int, levels: int) -> nn.Sequential:
    """``levels`` of 2x nearest upsampling + conv-BN-ReLU, halving the channels (never below 16),
    then a 3x3 conv to ``out_channels`` pixels."""
    layers: list[nn.Module] = []
    channels = in_channels
    for _ in range(levels):
        nxt = max(16, channels // 2)
        layers += [
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(channels, nxt, 3, padding=1, bias=False),
            nn.BatchNorm2d(nxt),
            nn.ReLU(inplace=True),
        ]
        channels = nxt
    layers.append(nn.Conv2d(channels, out_channels, 3, padding=1))
    return nn.Sequential(*layers)
