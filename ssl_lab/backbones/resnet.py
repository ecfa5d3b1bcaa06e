"""torchvision ResNets as backbones, with the CIFAR-style stem for small images."""

import torch
import torchvision
from torch import nn


class ResNet(nn.Module):
    """A torchvision ResNet without its classifier. Runs channels-last, like ``SmallCNN``: with
    bf16 on a GPU, convolutions in that layout run on the tensor cores without transposes.

    ``small_input`` swaps the 7x7/stride-2 stem and its max-pool for one 3x3/stride-1 conv, the
    usual
    change for 32 px images (otherwise a 32 px image is 1x1 after the stem and first stage).
    """

    def __init__(self, depth: int = 18, in_channels: int = 3, small_input: bool = True) -> None:
        super().__init__()
        builders = {
            18: torchvision.models.resnet18,
            34: torchvision.models.resnet34,
            50: torchvision.models.resnet50,
        }
        net = builders[depth](weights=None)
        if small_input:
            net.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
            net.maxpool = nn.Identity()
        elif in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layers = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        self.out_dim = net.fc.in_features
        self.to(memory_format=torch.channels_last)

    def blocks(self) -> list[nn.Module]:
        return [self.stem, *self.layers]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x.contiguous(memory_format=torch.channels_last))
        for layer in self.layers:
            x = layer(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x).mean(dim=(2, 3))
