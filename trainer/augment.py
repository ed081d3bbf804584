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

A mirror of the frame is exact too: the frame with its columns reversed (x → −x) is the
frame of M · R_x(180°). Kinematical intensities are |F(g)|², equal at g and −g (Friedel), and
the excitation error depends on g_z and |g_xy|, which the mirror keeps; mirror times
inversion is the half turn about the mirror's normal. The four turns with and without the
mirror (the dihedral group of the square) are the views ``view_ensemble`` runs a trained
network on.
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


MIRROR = ((1, 0, 0), (0, -1, 0), (0, 0, -1))
"""R_x(180°): reversing a frame's columns turns its orientation M into M · MIRROR."""


def view_matrices(views: int) -> torch.Tensor:
    """(views, 3, 3) T_v: view v of the frame of orientation M (``view_frames``) is the frame
    of M · T_v. Views 0-3 are the quarter turns, 4-7 the same after the mirror."""
    turns = quarter_turn_matrices()
    mirrored = torch.tensor(MIRROR, dtype=torch.float32) @ turns
    return torch.cat((turns, mirrored))[:views]


def view_frames(frames: torch.Tensor, views: int) -> torch.Tensor:
    """(views · N, H, W): the frames (N, H, W) under each of the first ``views`` views, view-major."""
    return torch.cat([view_frame(frames, v) for v in range(views)])


def view_frame(frames: torch.Tensor, view: int) -> torch.Tensor:
    """The frames (N, H, W) under view ``view`` (0-7) of ``view_matrices``."""
    return quarter_turn(torch.flip(frames, dims=(-1,)) if view >= 4 else frames, view % 4)


def quarter_turn(frames: torch.Tensor, k: int) -> torch.Tensor:
    """``torch.rot90(frames, k, dims=(-2, -1))`` from flips and transposes, which the ONNX
    exporter takes (it has no rot90)."""
    k %= 4
    if k == 1:
        return frames.flip(-1).transpose(-2, -1)
    if k == 2:
        return frames.flip(-2, -1)
    if k == 3:
        return frames.transpose(-2, -1).flip(-1)
    return frames


def turn_about_beam(batch: dict[str, torch.Tensor], views: torch.Tensor) -> dict[str, torch.Tensor]:
    """The batch with frame i under view ``views[i]`` (0-3: quarter turns; 4-7: the same after
    the mirror) and its rotation label with it."""
    frames = batch["frames"]
    views = views.to(frames.device)
    grouped = torch.cat([view_frame(frames[views == v], v) for v in range(8)])
    back = torch.argsort(torch.argsort(views, stable=True))  # torch has no index_put for uint16 frames
    matrices = view_matrices(8).to(frames.device)[views]
    return {**batch, "frames": grouped[back], "rotation": batch["rotation"] @ matrices}


def epoch_turns(seed: int, epoch: int) -> torch.Generator:
    """The generator of an epoch's turns, fixed by (seed, epoch) so a resumed run turns the
    frames an uninterrupted one would."""
    return torch.Generator().manual_seed(seed * 100_003 + epoch + TURN_SEED_OFFSET)
