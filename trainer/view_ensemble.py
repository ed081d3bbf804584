"""A 4D-STEM network run on the symmetric views of each frame, their answers combined.

Turning a SPED frame by quarter turns about the beam, with and without a mirror, gives
exactly the frames of known other orientations (``augment.view_matrices``), so one frame is
eight questions with one answer. The shipped network answers each view about as well as the
frame itself, but not identically: where it hesitates between an orientation and its half
turn about the beam (the main error left, ``docs/models.md``), the views disagree, and a
majority vote settles it. Measured on ``sped-orientation``'s evaluation frames: median
disorientation 5.2° from one view, 3.7° from four and 3.0° from eight, at four and eight
times the inference.

Combining: each view's rotation is taken back to the frame's own (times T_v⁻¹); the view
with most others within ``AGREEMENT_DEG`` of it (under the Laue group) wins, the closest to
all of them among equals, and the answer is the mean of it and those others, each moved to
its symmetry equivalent nearest the winner, made a rotation by its polar factor (the nearest
rotation, as an SVD would give, but by Newton–Schulz iteration, which exports). Unlike
Gram–Schmidt on two columns, the polar factor commutes with turning the frame, so the
ensemble's answer for a turned frame is exactly its answer turned. All of it exports to
ONNX with MatMul, ArgMax, comparisons and sums: no SVD, Einsum, OneHot or advanced indexing,
which not every backend takes.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .augment import view_frames, view_matrices

VIEW_COUNTS = (1, 4, 8)
"""The frame alone, the four quarter turns, and those with the mirror."""
AGREEMENT_DEG = 10.0
"""Views closer than this to the winner join its mean: the grid head's resolution, inside
which one view's answer scatters about the truth (median 3.8° up to the half turn) and
outside which it is a different answer (the half turn is 180° away)."""
POLAR_ITERATIONS = 6
"""Newton–Schulz steps to the polar factor. The mean of rotations within 10° of each other
has singular values above 0.98, and each step squares the distance from 1."""
INDEX_PREFERENCE = 1e-5
"""Among views with as many others agreeing, the one closest to all of them (largest summed
cosine) wins; sums closer than this, far below any real difference but above float32's
rounding of a sum of eight, go to the lower view index, so that torch and ONNX Runtime pick
the same view where the answers tie (as an untrained network's do)."""


class ViewEnsemble(nn.Module):
    """``single`` (frames → class probabilities, rotations, confidence; ``export.ExportWrapper``)
    run on ``views`` views of each frame: probabilities and confidence averaged over the views,
    rotations combined under the Laue group ``operators`` (K, 3, 3) of the one oriented phase."""

    def __init__(self, single: nn.Module, views: int, operators: np.ndarray) -> None:
        super().__init__()
        if views not in VIEW_COUNTS:
            raise ValueError(f"views: {views} is not one of {', '.join(map(str, VIEW_COUNTS))}")
        self.single = single
        self.views = views
        self.register_buffer("back", view_matrices(views).transpose(1, 2).contiguous(), persistent=False)
        self.register_buffer("operators", torch.tensor(np.asarray(operators), dtype=torch.float32),
                             persistent=False)

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = frames.shape[0]
        probabilities, rotations, confidence = self.single(view_frames(frames, self.views))
        probabilities = probabilities.reshape(self.views, n, -1).mean(dim=0)
        confidence = confidence.reshape(self.views, n).mean(dim=0)
        rotations = rotations.reshape(self.views, n, 3, 3) @ self.back[:, None]
        return probabilities, combine_rotations(rotations, self.operators), confidence


def combine_rotations(rotations: torch.Tensor, operators: torch.Tensor,
                      agreement_deg: float = AGREEMENT_DEG) -> torch.Tensor:
    """(N, 3, 3) from (V, N, 3, 3) answers of V views of N frames (module docstring). Written
    with broadcast products, sums and comparisons only, operators every ONNX backend has."""
    views = rotations.shape[0]
    equivalents = operators[None, None] @ rotations[:, :, None]  # (V, N, K, 3, 3): S_k · R_v
    traces = (rotations[:, None, :, None] * equivalents[None]).sum(dim=(-2, -1))  # (V, V, N, K)
    cosines = (traces.amax(dim=3) - 1.0) * 0.5  # (V, V, N): cosine of the disorientation
    agree = (cosines > float(np.cos(np.radians(agreement_deg)))).to(rotations.dtype)
    votes = agree.sum(dim=1)  # (V, N)
    order = torch.arange(views, dtype=rotations.dtype, device=rotations.device)[:, None]
    closeness = cosines.sum(dim=1) - INDEX_PREFERENCE * order
    leading = votes == votes.amax(dim=0, keepdim=True)
    choice = torch.where(leading, closeness, torch.full_like(closeness, -1e9)).argmax(dim=0)
    winner = (order == choice[None].to(rotations.dtype)).to(rotations.dtype)  # (V, N), one-hot
    to_winner = (winner[:, None, :, None] * traces).sum(dim=0)  # (V, N, K): traces against the winner
    index = torch.arange(operators.shape[0], device=rotations.device)
    nearest = (index == to_winner.argmax(dim=2, keepdim=True)).to(rotations.dtype)  # (V, N, K), one-hot
    moved = (nearest[..., None, None] * equivalents).sum(dim=2)  # (V, N, 3, 3)
    weights = (winner[:, None] * agree).sum(dim=0)  # (V, N): the views agreeing with the winner
    mean = ((weights / weights.sum(dim=0))[..., None, None] * moved).sum(dim=0)
    return polar_rotation(mean)


def polar_rotation(matrices: torch.Tensor, iterations: int = POLAR_ITERATIONS) -> torch.Tensor:
    """The rotation nearest each of ``matrices`` (N, 3, 3), near-rotations such as a mean of
    close rotations: X ← X (3I − XᵀX) / 2, which converges for singular values in (0, √3)."""
    identity = torch.eye(3, dtype=matrices.dtype, device=matrices.device)
    for _ in range(iterations):
        matrices = matrices @ (3.0 * identity - matrices.transpose(-2, -1) @ matrices) * 0.5
    return matrices
