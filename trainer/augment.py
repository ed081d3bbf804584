"""Quarter turns about the direct beam: an exact symmetry of simulated 4D-STEM training frames.

A 4D-STEM frame's spots sit at the lab-frame x, y of the excited reflections about the direct
beam, and the excitation errors depend on g_z and |g_xy| only, so turning the crystal about the
optic axis turns the spot pattern rigidly about the beam. On a square frame with the beam at
its centre (``sped_geometry``), a turn by a multiple of 90° maps the pixel grid onto itself,
and the halo, the probe discs and the cameras' noise are isotropic: the turned frame is
exactly a frame the simulator makes for the turned orientation, with no resampling. One
simulated pattern so teaches four orientations at no simulation cost.

``torch.rot90(frames, k, dims=(-2, -1))`` moves a spot at (x, y) from the beam to (y, −x)
per turn (x the column); the simulator draws that pattern for the orientation matrix
M · R_z(90° k) (orix's matrices, ``tests/trainer/test_augment.py`` checks it against
``simulate_spots``). Only the rotation label changes: the class, the usable flag and the
Laue-group operators stay. The Euler targets of paper 2's recipe would have to be indexed
again, so the config allows the turns with the symmetry-aware loss only.
"""
from __future__ import annotations

import math

import torch

TURN_SEED_OFFSET = 7_919
"""Moves the turns' generator off the batch order's, which is seeded the same way."""


def quarter_turn_matrices() -> torch.Tensor:
    """(4, 3, 3) R_z(90° k), k = 0..3, exact in float32."""
    turns = []
    for k in range(4):
        c, s = round(math.cos(k * math.pi / 2)), round(math.sin(k * math.pi / 2))
        turns.append([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    return torch.tensor(turns, dtype=torch.float32)


def turn_about_beam(batch: dict[str, torch.Tensor], turns: torch.Tensor) -> dict[str, torch.Tensor]:
    """The batch with frame i turned ``turns[i]`` quarter turns and its rotation label with it."""
    frames = batch["frames"]
    turns = turns.to(frames.device)
    grouped = torch.cat([torch.rot90(frames[turns == k], k, dims=(-2, -1)) for k in range(4)])
    back = torch.argsort(torch.argsort(turns, stable=True))  # torch has no index_put for uint16 frames
    matrices = quarter_turn_matrices().to(frames.device)[turns]
    return {**batch, "frames": grouped[back], "rotation": batch["rotation"] @ matrices}


def epoch_turns(seed: int, epoch: int) -> torch.Generator:
    """The generator of an epoch's turns, fixed by (seed, epoch) so a resumed run turns the
    frames an uninterrupted one would."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch + TURN_SEED_OFFSET)
