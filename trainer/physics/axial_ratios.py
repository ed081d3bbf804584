"""A material's cell with its axial ratios changed and its Bravais lattice kept.

Why: a lattice network trained on two materials per lattice learns those materials' axial
ratios, not the lattice (``diffstream evaluate --axial-sweep``: the shipped model is right on
95 % of its hexagonal and tetragonal training frames and on 61 % once c is 20 % shorter),
while the materials of one lattice differ in their ratios by far more than that. Training
frames from each material's cell with its free axes rescaled (``DataConfig.axial_jitter``)
show the network a lattice's range of metrics with real atoms in the cell: each draw is a
hypothetical compound isostructural with the material.

Free axes: none of a cubic cell; c of a tetragonal, hexagonal or rhombohedral one (hexagonal
axes); b and c of the rest. a and the angles are kept, so the cell keeps the material's size
and its orientation frame (the same rotation turns each cell alike). A rescaled cell may not
come nearer to a cell of higher symmetry than the material itself is (``MARGIN``, relative,
of a special ratio: c/a 1 makes tP cubic; 1 or √2 make tI cubic; √1.5 or √6 make hR cubic;
any edge ratio of 1, √2 or √3 may add symmetry to a lower one), so that no draw is another
lattice in disguise while a material that already is near one (AuSn4's c/a is 1.001) may
move away from it.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from .catalogue import PhaseEntry
from .errors import PhysicsInputError
from .random_structures import MARGIN, RHOMBOHEDRAL_CUBIC_C_OVER_A, SPECIAL_RATIOS

AXES = "abc"

MAX_DRAWS = 1000
"""Draws of one cell before its bins count as impossible: a bin spans more than the
2 × ``MARGIN`` a refusal rules out, so a handful suffice in practice."""

_C_OVER_A = ((2, 0),)
_EVERY_PAIR = tuple((i, j) for i in range(3) for j in range(3) if i != j)

SPECIAL: dict[str, tuple[tuple[tuple[int, int], ...], tuple[float, ...]]] = {
    "tP": (_C_OVER_A, (1.0,)),
    "tI": (_C_OVER_A, (1.0, math.sqrt(2.0))),
    "hP": ((), ()),
    "hR": (_C_OVER_A, RHOMBOHEDRAL_CUBIC_C_OVER_A),
}
"""Per lattice: the edge ratios (axis indices, numerator first) and the values at which the
cell takes a higher symmetry; every lattice of lower symmetry uses all ratios against
``SPECIAL_RATIOS``."""


def free_axes(lattice: str) -> tuple[int, ...]:
    """Indices (0 a, 1 b, 2 c) of the edges that may be rescaled in a cell of ``lattice``."""
    if lattice[0] == "c":
        return ()
    if lattice[0] in "th":
        return (2,)
    return (1, 2)


def rescaled(entry: PhaseEntry, b: float = 1.0, c: float = 1.0) -> PhaseEntry:
    """``entry`` with its b and c edges multiplied by ``b`` and ``c`` (fractional coordinates
    and angles kept); refused where an axis is not free in its lattice (b of a hexagonal
    cell stays a) or where the new cell comes nearer to a more symmetric one."""
    scales = (1.0, float(b), float(c))
    if min(scales) <= 0:
        raise PhysicsInputError(f"axial ratios: scales must be positive, got b {b:g}, c {c:g}")
    fixed = [AXES[i] for i in range(3) if scales[i] != 1.0 and i not in free_axes(entry.bravais_lattice)]
    if fixed:
        raise PhysicsInputError(f"axial ratios: {entry.name} is {entry.bravais_lattice}, whose {', '.join(fixed)} "
                                f"cannot be rescaled alone (free: {_axis_names(entry.bravais_lattice)})")
    edges = [edge * scale for edge, scale in zip(entry.lattice[:3], scales)]
    strained = dataclasses.replace(entry, lattice=(*edges, *entry.lattice[3:]))
    if (problem := _nearer_symmetry(entry, strained)) is not None:
        raise PhysicsInputError(f"axial ratios: scaling {entry.name}'s b by {b:g} and c by {c:g} gives {problem}; "
                                "choose other scales")
    return strained


def rescaled_series(entry: PhaseEntry, jitter: float, count: int, seed: int) -> tuple[PhaseEntry, ...]:
    """``count`` cells of ``entry`` with each free axis scaled by a factor within
    [1/(1 + jitter), 1 + jitter], log-uniform and stratified: each axis's range is cut into
    ``count`` equal bins (in log) and each bin is used once, in an order of its own per axis
    (a Latin hypercube), so that a material's few cells span the range instead of bunching
    by chance. A draw that ``rescaled`` refuses is drawn again within its bins."""
    axes = free_axes(entry.bravais_lattice)
    if not axes or jitter == 0:
        return (entry,) * count
    rng = np.random.default_rng(seed)
    bounds = np.linspace(-math.log1p(jitter), math.log1p(jitter), count + 1)
    bins = np.stack([rng.permutation(count) for _ in axes], axis=1)
    series = []
    for row in bins:
        for _ in range(MAX_DRAWS):
            scales = dict(zip(axes, np.exp(rng.uniform(bounds[row], bounds[row + 1]))))
            try:
                series.append(rescaled(entry, b=float(scales.get(1, 1.0)), c=float(scales.get(2, 1.0))))
                break
            except PhysicsInputError:
                continue
        else:
            raise PhysicsInputError(f"axial ratios: no cell of {entry.name} in bins {row.tolist()} of {count} "
                                    f"within ±{jitter:g} keeps its lattice {entry.bravais_lattice}")
    return tuple(series)


def _nearer_symmetry(before: PhaseEntry, after: PhaseEntry) -> str | None:
    """What brings ``after`` within ``MARGIN`` of a special ratio that ``before`` was farther
    from (e.g. "Sn c/a 1.000, within 5 % of 1.000, where a tI cell is more symmetric"), or None."""
    lattice = before.bravais_lattice
    pairs, values = SPECIAL.get(lattice, (_EVERY_PAIR, SPECIAL_RATIOS))
    for i, j in pairs:
        old, new = before.lattice[i] / before.lattice[j], after.lattice[i] / after.lattice[j]
        for value in values:
            distance = abs(new / value - 1.0)
            if distance <= MARGIN and distance < abs(old / value - 1.0):
                return (f"{before.name} {AXES[i]}/{AXES[j]} {new:.3f}, within {MARGIN * 100:g} % of {value:.3f}, "
                        f"where a {lattice} cell is more symmetric")
    return None


def _axis_names(lattice: str) -> str:
    return ", ".join(AXES[i] for i in free_axes(lattice)) or "none"
