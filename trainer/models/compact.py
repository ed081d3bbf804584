"""diffstream's own backbone for live EBSD: small enough for detector rate on a CPU.

A fast EBSD camera delivers thousands of 60×60 patterns per second, so the default model
must keep up on the CPU of an acquisition PC, not only on a GPU. The budget is about
10 MFLOP per pattern: four stride-2 convolutions take 60×60 down to 4×4 (Kikuchi bands are
wide, low-frequency features, so early downsampling loses little), each followed by a
depthwise-separable residual block that widens the receptive field cheaply. The head sees
both a global average (what is present, which says the lattice) and a coarse 4×4 map
(where it is, which the orientation needs: global pooling alone discards position).
"""
from __future__ import annotations

import torch
from torch import nn


def _conv_bn(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class SeparableResidual(nn.Module):
    """x + pointwise(depthwise(x)): a 3×3 receptive-field step at a ninth of a full conv's cost."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.depthwise = _conv_bn(channels, channels, groups=channels)
        self.pointwise = nn.Sequential(nn.Conv2d(channels, channels, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.pointwise(self.depthwise(x)))


class CompactBackbone(nn.Module):
    """(N, in_channels, 60, 60) → (N, outputs). ``widths`` are the channels after each stride-2
    stage."""

    def __init__(self, outputs: int, widths: tuple[int, ...] = (16, 32, 64, 128), map_channels: int = 16,
                 hidden: int = 256, input_size: tuple[int, int] = (60, 60), in_channels: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = in_channels
        for i, width in enumerate(widths):
            layers.append(_conv_bn(c_in, width, stride=2))
            if i > 0:
                layers.append(SeparableResidual(width))
            c_in = width
        self.features = nn.Sequential(*layers)
        rows, cols = input_size
        for _ in widths:
            rows, cols = (rows + 1) // 2, (cols + 1) // 2
        self.to_map = _conv_bn(c_in, map_channels, kernel=1)
        self.head = nn.Sequential(
            nn.Linear(c_in + map_channels * rows * cols, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, outputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.features(x)
        pooled = features.mean(dim=(2, 3))
        spatial = self.to_map(features).flatten(1)
        return self.head(torch.cat((pooled, spatial), dim=1))
