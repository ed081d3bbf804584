"""Orientation as a distribution over a grid of the fundamental zone: the "grid" rotation head.

Regressing one rotation (the 6D head) over all of orientation space asks a network for a
continuous map from patterns to rotations, but the space it must answer in, SO(3) modulo
the Laue group, has no continuous section: somewhere near the fundamental zone's faces the
right answer jumps from one symmetry equivalent to another, and a network trained on
uniformly random orientations learns that slowly (``docs/models.md``, ``sped-orientation``).
A softmax over orientations sampled in the fundamental zone has no such jump: each bin is a
class, the label is a smooth bump over the bins near it (near under symmetry, so the bump
wraps across the zone's faces), and several answers that look alike can share probability
until the network tells them apart. The bins are orix's ``get_sample_fundamental`` of the
Laue group's proper part; the rotation the model reports is the probability-weighted mean of
the most likely bin and its nearest neighbours (each moved to the symmetry equivalent next to
it), which resolves finer than the grid. A model orienting phases of several Laue groups
(``ebsd-lattice``: m-3m Ni and Fe, 6/mmm Ti) carries one grid per group (``GridHeads``).
"""
from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
from orix.crystal_map import Phase
from orix.sampling import get_sample_fundamental
from torch import nn

from .orientation import laue_operators, rotation_6d_to_matrix

NEIGHBOURS = 32
"""Bins averaged into the reported rotation: the most likely one and its 31 nearest, the
first two shells around a point of a uniform grid in three dimensions. Decoding the exact
label bumps of 1,000 random LiNiO2 orientations on the 10° grid gives back the orientation
to a median of 1.7° with 16, 1.0° with 32 and 0.9° with 64 neighbours (fewer shells
truncate the bump on one side and pull the mean towards the most likely bin)."""
KERNEL_WIDTH = 0.5
"""Width of the label's bump over the bins, as a fraction of the grid resolution: one bin
spacing away a bin still gets exp(−2) of the peak, so neighbouring bins share the gradient."""


@functools.lru_cache(maxsize=4)
def orientation_grid(point_group: str, resolution_deg: float) -> np.ndarray:
    """(G, 3, 3) rotation matrices sampling the fundamental zone of ``point_group``'s Laue
    group at ``resolution_deg`` (orix's cubochoric sampling): every orientation lies within
    about one resolution of a bin, counting symmetry equivalents."""
    laue = Phase(point_group=point_group).point_group.laue.proper_subgroup
    grid = get_sample_fundamental(resolution=float(resolution_deg), point_group=laue).to_matrix()
    out = np.ascontiguousarray(grid.reshape(-1, 3, 3))
    out.setflags(write=False)
    return out


def neighbour_table(grid: np.ndarray, operators: np.ndarray, count: int = NEIGHBOURS,
                    chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """For each bin, the ``count`` nearest bins under symmetry (itself first): their indices
    (G, count) and the matrices (G, count, 3, 3) of each one's symmetry equivalent nearest the
    bin, so that a weighted mean over a row averages rotations that lie together."""
    equivalents = np.einsum("kil,hlj->khij", operators, grid)
    flat = equivalents.reshape(-1, 9).T
    index = np.empty((len(grid), count), dtype=np.int64)
    matrices = np.empty((len(grid), count, 3, 3))
    for start in range(0, len(grid), chunk):
        rows = grid[start : start + chunk]
        traces = (rows.reshape(-1, 9) @ flat).reshape(len(rows), *equivalents.shape[:2]).transpose(0, 2, 1)
        best_operator = traces.argmax(axis=2)
        nearest = np.argsort(-traces.max(axis=2), axis=1, kind="stable")[:, :count]
        index[start : start + chunk] = nearest
        matrices[start : start + chunk] = equivalents[np.take_along_axis(best_operator, nearest, axis=1), nearest]
    return index, matrices


def soft_targets(target: torch.Tensor, grid: torch.Tensor, operators: torch.Tensor, resolution_deg: float
                 ) -> torch.Tensor:
    """(N, G) label distributions over the bins: exp(κ(cos θ − 1)) normalised, θ the angle
    from each bin to the nearest symmetry equivalent of ``target`` (N, 3, 3) under
    ``operators`` (N, K, 3, 3), κ = 1/σ² with σ = ``KERNEL_WIDTH`` × the resolution (a
    Gaussian in θ for small angles, without the arccos whose gradient the loss does not need
    but whose value it would otherwise pay for)."""
    equivalents = operators @ target[:, None]
    cos_theta = (torch.einsum("gij,nkij->ngk", grid, equivalents).amax(dim=2) - 1.0) * 0.5
    kappa = 1.0 / np.radians(KERNEL_WIDTH * resolution_deg) ** 2
    return torch.softmax(kappa * cos_theta, dim=1)


def grid_loss(logits: torch.Tensor, target: torch.Tensor, operators: torch.Tensor, grid: GridRotation
              ) -> torch.Tensor:
    """Per-sample KL divergence (N,) of the bin softmax from the label's bump (``soft_targets``):
    zero when the network puts the bump's exact shape on the bins, so the value reads like
    the other losses (0 is perfect) whatever the bins' count."""
    target_p = soft_targets(target, grid.grid, operators, grid.resolution_deg)
    terms = target_p * (torch.log(target_p.clamp_min(1e-30)) - torch.log_softmax(logits, dim=1))
    return torch.where(target_p > 0, terms, torch.zeros_like(terms)).sum(dim=1)


class GridRotation(nn.Module):
    """Bin logits (N, G) → rotation matrices (N, 3, 3), exportable to ONNX (ArgMax, Gather,
    a weighted sum and Gram–Schmidt: no SVD, which ONNX lacks)."""

    def __init__(self, point_group: str, resolution_deg: float) -> None:
        super().__init__()
        self.point_group = point_group
        self.resolution_deg = float(resolution_deg)
        grid = orientation_grid(point_group, self.resolution_deg)
        index, matrices = neighbour_table(grid, laue_operators(point_group))
        self.register_buffer("grid", torch.tensor(grid, dtype=torch.float32), persistent=False)
        self.register_buffer("neighbour_index", torch.from_numpy(index), persistent=False)
        self.register_buffer("neighbour_matrices", torch.tensor(matrices, dtype=torch.float32), persistent=False)

    @property
    def bins(self) -> int:
        return len(self.grid)

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        best = logits.argmax(dim=1)
        neighbours = self.neighbour_index[best]
        weights = torch.softmax(logits, dim=1).gather(1, neighbours)
        mean = (weights[..., None, None] * self.neighbour_matrices[best]).sum(dim=1)
        return rotation_6d_to_matrix(torch.cat((mean[..., 0], mean[..., 1]), dim=-1))


class GridHeads(nn.Module):
    """One ``GridRotation`` per Laue group of a model's orientation phases, their bins side by
    side in the network's output.

    A frame's rotation comes from the head of the class the network rates most likely among
    the classes holding an orientation phase: the live map reads a frame's orientation under
    its class's point group, so the rotation must be that group's. Training scores each frame
    on its own phase's head only."""

    def __init__(self, point_groups: Sequence[str], classes: Sequence[int], num_classes: int,
                 resolution_deg: float) -> None:
        super().__init__()
        if len(point_groups) != len(classes) or not point_groups:
            raise ValueError("grid heads: one point group and one class per orientation phase")
        laue = [Phase(point_group=g).point_group.laue.name for g in point_groups]
        distinct = list(dict.fromkeys(laue))
        self.heads = nn.ModuleList(GridRotation(point_groups[laue.index(name)], resolution_deg) for name in distinct)
        class_head = torch.full((num_classes,), -1, dtype=torch.int64)
        for name, c in zip(laue, classes):
            if class_head[c] not in (-1, distinct.index(name)):
                raise ValueError(f"grid heads: class {c} holds orientation phases of two Laue groups")
            class_head[c] = distinct.index(name)
        self.register_buffer("phase_head", torch.tensor([distinct.index(n) for n in laue]), persistent=False)
        self.register_buffer("class_head", class_head, persistent=False)
        ends = np.cumsum([head.bins for head in self.heads])
        self.slices = [(int(end - head.bins), int(end)) for head, end in zip(self.heads, ends)]

    @property
    def bins(self) -> int:
        return self.slices[-1][1]

    def forward(self, bin_logits: torch.Tensor, class_logits: torch.Tensor) -> torch.Tensor:
        rotations = [head(bin_logits[:, a:b]) for head, (a, b) in zip(self.heads, self.slices)]
        if len(rotations) == 1:
            return rotations[0]
        oriented_logits = class_logits.masked_fill(self.class_head < 0, float("-inf"))
        choice = self.class_head[oriented_logits.argmax(dim=1)]
        stacked = torch.stack(rotations, dim=1)
        return stacked.gather(1, choice[:, None, None, None].expand(-1, 1, 3, 3)).squeeze(1)

    def loss(self, bin_logits: torch.Tensor, target: torch.Tensor, operators: torch.Tensor,
             phase_rows: torch.Tensor) -> torch.Tensor:
        """Per-sample ``grid_loss`` (N,), each frame on the head of its phase (``phase_rows``:
        the index of each frame's phase among the orientation phases)."""
        heads = self.phase_head[phase_rows]
        out = bin_logits.new_zeros(len(target))
        for h, (head, (a, b)) in enumerate(zip(self.heads, self.slices)):
            mine = heads == h
            if mine.any():
                out[mine] = grid_loss(bin_logits[mine, a:b], target[mine], operators[mine], head)
        return out
