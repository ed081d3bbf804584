"""The one interface every diffstream network has, whatever its backbone.

A network takes raw frames and returns three heads: lattice (or phase) logits, a rotation
matrix and a usable-pattern logit. Backbones only map a normalised (N, 1, h, w) image to a
flat vector of ``num_classes + 7`` numbers (the timm models do so through their own
classifier, ``num_classes=`` that size); this module splits the vector, so the heads mean
the same for every architecture and the trainer and exporter never special-case one.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ..orientation import EULER_RANGES, euler_to_matrix, rotation_6d_to_matrix
from .preprocess import PREPROCESSORS

ROTATION_DIMS = 6
ROTATIONS = ("6d", "euler")
"""The rotation head: the continuous 6D representation (diffstream's), or three normalised
Bunge Euler angles (paper 2's; the other three outputs go unused)."""
USABLE_DIMS = 1


def head_width(num_classes: int) -> int:
    """Outputs a backbone must produce: class logits, the 6D rotation and the usable logit."""
    return num_classes + ROTATION_DIMS + USABLE_DIMS


class NetworkOutputs(NamedTuple):
    """Raw heads: ``logits`` (N, C), ``rotation`` (N, 3, 3) orthonormal, ``usable_logit`` (N,)."""

    logits: torch.Tensor
    rotation: torch.Tensor
    usable_logit: torch.Tensor
    euler: torch.Tensor | None = None
    """The normalised Euler angles (N, 3) a ``rotation="euler"`` network regresses (paper 2)."""


class DiffractionNetwork(nn.Module):
    """Normalisation + backbone + head split. ``name`` and ``options`` are what
    ``build_model`` needs to rebuild it from a checkpoint."""

    def __init__(self, backbone: nn.Module, num_classes: int, input_size: tuple[int, int], name: str,
                 options: dict | None = None, preprocess: str = "background", rotation: str = "6d") -> None:
        super().__init__()
        if rotation not in ROTATIONS:
            raise ValueError(f"rotation: {rotation!r} is not one of {', '.join(ROTATIONS)}")
        self.rotation = rotation
        self.register_buffer("euler_ranges", torch.tensor(EULER_RANGES, dtype=torch.float32), persistent=False)
        self.normalise = PREPROCESSORS[preprocess](input_size)
        self.backbone = backbone
        self.num_classes = int(num_classes)
        self.name = name
        self.options = dict(options or {})

    def forward(self, frames: torch.Tensor) -> NetworkOutputs:
        vector = self.backbone(self.normalise(frames))
        c = self.num_classes
        if self.rotation == "euler":
            euler = vector[:, c : c + 3]
            rotation = euler_to_matrix(euler * self.euler_ranges)
        else:
            euler, rotation = None, rotation_6d_to_matrix(vector[:, c : c + ROTATION_DIMS])
        return NetworkOutputs(logits=vector[:, :c], rotation=rotation, usable_logit=vector[:, c + ROTATION_DIMS],
                              euler=euler)
