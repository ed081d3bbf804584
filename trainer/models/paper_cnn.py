"""Paper 2's baseline CNN (Wissel et al.): two 3×3 convolutions, each with ReLU and 2×2 max
pooling, then three fully connected layers. The paper gives the layer counts and kernel
size (its best: 3) but not the channel or unit counts; 32/64 channels and 256/128 units
are our choice, stated so that results are reproducible."""
from __future__ import annotations

import torch
from torch import nn


class PaperCNN(nn.Module):
    """(N, in_channels, h, w) → (N, outputs)."""

    def __init__(self, outputs: int, input_size: tuple[int, int], channels: tuple[int, int] = (32, 64),
                 units: tuple[int, int] = (256, 128), in_channels: int = 1) -> None:
        super().__init__()
        c1, c2 = channels
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        )
        rows, cols = (n // 4 for n in input_size)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c2 * rows * cols, units[0]), nn.ReLU(inplace=True),
            nn.Linear(units[0], units[1]), nn.ReLU(inplace=True),
            nn.Linear(units[1], outputs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))
