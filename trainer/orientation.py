"""Rotations for the orientation head: the 6D representation, crystal symmetry as rotation
matrices, the symmetry-aware loss and the disorientation metric.

Conventions are orix's throughout (``docs/physics.md``): a rotation maps the sample frame to
the crystal frame, quaternions are (w, x, y, z), and the matrix of a label is orix's
``Rotation.to_matrix()``, which is a homomorphism (M(a·b) = M(a)·M(b)). Crystal symmetry
acts in the crystal frame, i.e. on the left: the orientations S·g for S in the proper part of
the Laue group all give the same diffraction pattern. A network therefore cannot know which
of them it sees, and paper 2's raw Euler-angle regression (which treats them as different
targets) makes predictions flip between equivalents inside a grain. Here the loss and the
metric take the minimum over the equivalents, so any of them is a perfect answer.

The loss and the 6D map are torch (they are differentiated); the operators and the metric
are numpy, so that scoring an ONNX model's outputs needs no tensors.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
from orix.crystal_map import Phase
from orix.quaternion import Orientation, Rotation


def rotation_6d_to_matrix(x: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (N, 3, 3) from the continuous 6D representation (N, 6) of Zhou et al.
    (CVPR 2019): two 3-vectors made orthonormal by Gram–Schmidt, the third their cross
    product. Unlike quaternions or Euler angles this map is continuous, so a network can
    regress it without jumps; the two vectors are the matrix's first two columns."""
    a1, a2 = x[..., 0:3], x[..., 3:6]
    b1 = torch.nn.functional.normalize(a1, dim=-1, eps=1e-6)
    b2 = torch.nn.functional.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1, eps=1e-6)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack((b1, b2, b3), dim=-1)


EULER_RANGES = (2 * np.pi, np.pi, 2 * np.pi)
"""Range of the Bunge angles (φ1, Φ, φ2) as orix gives them; dividing by it puts each angle
on [0, 1], paper 2's normalised regression targets (the paper normalises but does not say
how; this is the natural choice for angles with fixed ranges)."""


def euler_to_matrix(angles: torch.Tensor) -> torch.Tensor:
    """Rotation matrices (N, 3, 3) of Bunge Euler angles (N, 3) in radians, equal to orix's
    ``Rotation.from_euler(angles).to_matrix()``: the output of a network regressing Euler
    angles as paper 2 does, in the model contract's form."""
    c1, c, c2 = torch.cos(angles).unbind(-1)
    s1, s, s2 = torch.sin(angles).unbind(-1)
    rows = (
        (c1 * c2 - s1 * s2 * c, s1 * c2 + c1 * s2 * c, s2 * s),
        (-c1 * s2 - s1 * c2 * c, -s1 * s2 + c1 * c2 * c, c2 * s),
        (s1 * s, -c1 * s, c),
    )
    return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)


def indexed_euler(quaternions: np.ndarray, point_group: str) -> np.ndarray:
    """(N, 3) Bunge angles (radians) of (N, 4) quaternions as an indexing program reports them:
    one symmetry equivalent per orientation, inside the Euler fundamental region of the Laue
    group (for -3m φ1 < 360°, Φ ≤ 90°, φ2 < 120°). Paper 2's labels are such indexing results
    (ASTAR's), so its regression target and its R² compare against these, not against
    whichever equivalent the simulator drew.

    orix's ``reduce`` first picks the equivalent of smallest rotation angle, then
    ``in_euler_fundamental_region`` (MTEX's ``project2EulerFR``) writes it in the region: the
    region alone is not enough, as for cubic groups it holds each orientation three times."""
    quaternions = np.asarray(quaternions, dtype=np.float64).reshape(-1, 4)
    if not len(quaternions):
        return np.zeros((0, 3))
    orientations = Orientation(quaternions, symmetry=Phase(point_group=point_group).point_group)
    return np.asarray(orientations.reduce().in_euler_fundamental_region()).reshape(-1, 3)


def quaternions_to_matrices(quaternions: np.ndarray) -> np.ndarray:
    """orix's ``Rotation.to_matrix()`` of (N, 4) quaternions (w, x, y, z), as (N, 3, 3) float64:
    the exact target the exported ``rotation_matrix`` output promises."""
    return Rotation(np.asarray(quaternions, dtype=np.float64)).to_matrix().reshape(-1, 3, 3)


@functools.lru_cache(maxsize=None)
def laue_operators(point_group: str) -> np.ndarray:
    """The proper rotations of the Laue group of ``point_group`` (orix name, e.g. "m-3m",
    "6/mmm") as (K, 3, 3) float64 matrices, identity first. Improper elements are left out:
    on rotations they duplicate the proper ones (the pattern is centrosymmetric by Friedel)."""
    laue = Phase(point_group=point_group).point_group.laue.proper_subgroup
    matrices = laue.to_matrix().reshape(-1, 3, 3)
    identity = np.argmin(np.abs(matrices - np.eye(3)).sum(axis=(1, 2)))
    order = [identity] + [i for i in range(len(matrices)) if i != identity]
    out = np.ascontiguousarray(matrices[order])
    out.setflags(write=False)
    return out


def operator_table(point_groups: list[str] | tuple[str, ...]) -> np.ndarray:
    """(P, K_max, 3, 3) operators for P point groups, each padded with identities to the
    largest group: a repeated operator cannot change a minimum, and one dense tensor lets a
    batch mixing phases of different symmetry be scored in one gather."""
    groups = [laue_operators(pg) for pg in point_groups]
    k_max = max(len(g) for g in groups)
    table = np.tile(np.eye(3), (len(groups), k_max, 1, 1))
    for i, g in enumerate(groups):
        table[i, : len(g)] = g
    return table


def symmetry_aware_loss(predicted: torch.Tensor, target: torch.Tensor, operators: torch.Tensor) -> torch.Tensor:
    """Per-sample loss (N,) in [0, 1]: min over the K operators S of (1 − cos θ)/2, θ the angle
    between ``predicted`` and S·``target`` (all (N, 3, 3); ``operators`` (N, K, 3, 3)).

    (1 − cos θ)/2 = ‖R − S·T‖²_F / 8, the squared chordal distance: smooth everywhere
    (the geodesic angle's gradient blows up at θ = 0) and zero exactly when the prediction
    is one of the label's symmetry equivalents."""
    equivalents = operators @ target[:, None]
    cos_theta = (predicted[:, None] * equivalents).sum(dim=(-2, -1)).sub(1.0).mul(0.5)
    return (1.0 - cos_theta.max(dim=1).values) * 0.5


def nearest_operator(predicted: np.ndarray, target: np.ndarray, operators: np.ndarray) -> np.ndarray:
    """(N,) index k of the operator for which S_k·``target`` lies nearest ``predicted`` (both
    (N, 3, 3); ``operators`` (K, 3, 3)): which symmetry equivalent of the label a prediction
    answers with. The largest trace of Pᵀ·S·T is the smallest angle."""
    traces = np.einsum("nij,kil,nlj->nk", np.asarray(predicted, dtype=np.float64), operators, target)
    return traces.argmax(axis=1)


def disorientation_deg(predicted: np.ndarray, target: np.ndarray, operators: np.ndarray) -> np.ndarray:
    """Disorientation angles (N,) in degrees between (N, 3, 3) rotation matrices under the
    Laue group ``operators`` ((K, 3, 3) shared, or (N, K, 3, 3) per sample): the smallest
    rotation angle taking the prediction onto any symmetry equivalent of the target. For one
    phase, min over S1, S2 of the angle of (S1·P)(S2·T)⁻¹ reduces to min over S of the angle
    between P and S·T, because the rotation angle is invariant under conjugation."""
    predicted = np.asarray(predicted, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    ops = np.asarray(operators, dtype=np.float64)
    if ops.ndim == 3:
        ops = np.broadcast_to(ops, (len(target), *ops.shape))
    equivalents = ops @ target[:, None]
    traces = (predicted[:, None] * equivalents).sum(axis=(-2, -1))
    cos_theta = np.clip((traces.max(axis=1) - 1.0) / 2.0, -1.0, 1.0)
    return np.degrees(np.arccos(cos_theta))
