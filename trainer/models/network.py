"""The one interface every diffstream network has, whatever its backbone.

A network takes raw frames and returns three heads: lattice (or phase) logits, a rotation
matrix and a usable-pattern logit. Backbones only map a normalised (N, C, h, w) image (C
from the preprocessing) to a flat vector of ``head_width`` numbers, class logits, the
rotation head's outputs and the usable logit (the timm models do so through their own
classifier, ``num_classes=`` that size); this module splits the vector, so the heads mean
the same for every architecture and the trainer and exporter never special-case one.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ..orientation import EULER_RANGES, euler_to_matrix, rotation_6d_to_matrix
from ..orientation_grid import GridHeads
from .preprocess import PREPROCESSORS

ROTATION_DIMS = 6
ROTATIONS = ("6d", "euler", "grid")
"""The rotation head: the continuous 6D representation (diffstream's), three normalised
Bunge Euler angles (paper 2's; the other three outputs go unused), or logits over a grid of
the fundamental zone (``orientation_grid``; needs ``grid_point_group``, one per orientation
phase, ``grid_resolution`` and, for phases of several Laue groups, ``grid_classes``)."""
USABLE_DIMS = 1
_SYMMETRY_AWARE = ("trained with a loss that takes the minimum over the phase's Laue group, so it is one of the "
                   "symmetry equivalents of the crystal's orientation")
ROTATION_MEANINGS = {
    "6d": f"from the 6D representation (Zhou et al. 2019) by Gram-Schmidt; {_SYMMETRY_AWARE}",
    "euler": "from three regressed Bunge Euler angles (paper 2), trained on the labels' angles in the Euler "
             "fundamental region as an indexing program writes them",
    "grid": "the probability-weighted mean of the most likely orientation of a grid over the fundamental zone "
            "of the Laue group of the class rated most likely among those with orientation=true, and its "
            f"nearest grid neighbours; {_SYMMETRY_AWARE}",
}


def head_width(num_classes: int, rotation_dims: int = ROTATION_DIMS) -> int:
    """Outputs a backbone must produce: class logits, the rotation head and the usable logit."""
    return num_classes + rotation_dims + USABLE_DIMS


def rotation_output_meaning(rotation: str) -> str:
    """The model card's text for ``rotation_matrix`` of a network with this rotation head."""
    return (f"orientation (sample to crystal) as orix Rotation.to_matrix(), {ROTATION_MEANINGS[rotation]}; "
            "meaningful only for classes with orientation=true")


class NetworkOutputs(NamedTuple):
    """Raw heads: ``logits`` (N, C), ``rotation`` (N, 3, 3) orthonormal, ``usable_logit`` (N,)."""

    logits: torch.Tensor
    rotation: torch.Tensor
    usable_logit: torch.Tensor
    euler: torch.Tensor | None = None
    """The normalised Euler angles (N, 3) a ``rotation="euler"`` network regresses (paper 2)."""
    rotation_logits: torch.Tensor | None = None
    """The bin logits (N, G) of a ``rotation="grid"`` network."""


class DiffractionNetwork(nn.Module):
    """Normalisation + backbone + head split. ``name`` and ``options`` are what
    ``build_model`` needs to rebuild it from a checkpoint."""

    def __init__(self, backbone: nn.Module, num_classes: int, input_size: tuple[int, int], name: str,
                 options: dict | None = None, preprocess: str = "background", rotation: str = "6d",
                 grid: GridHeads | None = None) -> None:
        super().__init__()
        if rotation not in ROTATIONS:
            raise ValueError(f"rotation: {rotation!r} is not one of {', '.join(ROTATIONS)}")
        if (rotation == "grid") != (grid is not None):
            raise ValueError("rotation: a grid head is given exactly when rotation is 'grid'")
        self.rotation = rotation
        self.grid = grid
        self.register_buffer("euler_ranges", torch.tensor(EULER_RANGES, dtype=torch.float32), persistent=False)
        self.normalise = PREPROCESSORS[preprocess](input_size)
        self.backbone = backbone
        self.num_classes = int(num_classes)
        self.name = name
        self.options = dict(options or {})

    def forward(self, frames: torch.Tensor) -> NetworkOutputs:
        vector = self.backbone(self.normalise(frames))
        c = self.num_classes
        euler = bins = None
        if self.grid is not None:
            bins = vector[:, c : c + self.grid.bins]
            rotation = self.grid(bins, vector[:, :c])
        elif self.rotation == "euler":
            euler = vector[:, c : c + 3]
            rotation = euler_to_matrix(euler * self.euler_ranges)
        else:
            rotation = rotation_6d_to_matrix(vector[:, c : c + ROTATION_DIMS])
        return NetworkOutputs(logits=vector[:, :c], rotation=rotation, usable_logit=vector[:, -1], euler=euler,
                              rotation_logits=bins)
