"""Random crystal structures of a chosen Bravais lattice, to widen lattice training beyond materials.

Paper 1 trains on two materials per lattice, so a network can learn those materials rather
than their lattice; its blind accuracy is the test of that. A random structure of each
lattice, with its own cell and atoms, shows the network the lattice (the metric and the
centring, which set where the bands lie and which are absent) without any one material's
band intensities. Each is named ``random-<lattice>-<k>`` (e.g. ``random-cF-3``) and made
afresh from its name, so any process, and any later run, rebuilds the same structure:
:func:`~.catalogue.get_phase_entry` accepts these names wherever a material is named.

The space group of each lattice is its symmorphic holohedry (Fm-3m for cF, C2/m for mC …) in
the setting diffpy uses for that number. One to three sites hold different elements, each on
a position of full site symmetry (one atom per lattice point), so the structure has exactly
its lattice's translations, a cell holds a few atoms and its structure factors stay cheap.
Cell edges, angles and elements are drawn over the ranges real materials span.
"""
from __future__ import annotations

import functools
import re
import zlib
from fractions import Fraction

import numpy as np

from .catalogue import BRAVAIS_LATTICES, AtomSite, PhaseEntry
from .errors import PhysicsInputError

NAME = re.compile(r"random-(?P<lattice>[a-zA-Z]{2})-(?P<k>\d+)", re.IGNORECASE)

_HALF = Fraction(1, 2)
_CORNERS = tuple((x, y, z) for x in (0, _HALF) for y in (0, _HALF) for z in (0, _HALF))

SPACE_GROUPS: dict[str, tuple[int, tuple[tuple[Fraction | int, ...], ...]]] = {
    "aP": (2, _CORNERS),
    "mP": (10, _CORNERS),
    "mC": (12, ((0, 0, 0), (0, _HALF, 0), (0, 0, _HALF), (0, _HALF, _HALF))),
    "oP": (47, _CORNERS),
    "oC": (65, ((0, 0, 0), (_HALF, 0, 0), (_HALF, 0, _HALF), (0, 0, _HALF))),
    "oI": (71, ((0, 0, 0), (0, _HALF, _HALF), (_HALF, _HALF, 0), (_HALF, 0, _HALF))),
    "oF": (69, ((0, 0, 0), (0, 0, _HALF))),
    "tP": (123, ((0, 0, 0), (0, 0, _HALF), (_HALF, _HALF, 0), (_HALF, _HALF, _HALF))),
    "tI": (139, ((0, 0, 0), (0, 0, _HALF))),
    "hP": (191, ((0, 0, 0), (0, 0, _HALF))),
    "hR": (166, ((0, 0, 0), (0, 0, _HALF))),
    "cP": (221, ((0, 0, 0), (_HALF, _HALF, _HALF))),
    "cI": (229, ((0, 0, 0),)),
    "cF": (225, ((0, 0, 0), (_HALF, _HALF, _HALF))),
}
"""Per lattice: the space-group number, and the positions whose orbit holds one point per
lattice point (site symmetry the whole point group), so that with a different element on each
site the structure has no translation beyond its lattice's: a site of a larger orbit alone
(e.g. 8c of Fm-3m, a cubic lattice of half the edge) would be another lattice in disguise."""

ELEMENTS = ("C", "N", "O", "Na", "Mg", "Al", "Si", "P", "S", "Ca", "Ti", "Cr", "Mn", "Fe", "Co", "Ni", "Cu",
            "Zn", "Ga", "Ge", "Sr", "Zr", "Nb", "Mo", "Ag", "Sn", "Ba", "La", "Hf", "Ta", "W", "Pt", "Au", "Pb")
"""Elements drawn for the sites: light to heavy, so that band intensities vary as in real phases."""

EDGE_A = (2.8, 6.0)
"""Cell edges (Å) drawn uniformly: the range of the catalogue's simple metals and compounds."""

SPECIAL_RATIOS = (1.0, np.sqrt(2.0), np.sqrt(3.0))
"""Edge ratios at which a centred or tetragonal cell is another lattice in disguise."""

RHOMBOHEDRAL_CUBIC_C_OVER_A = (np.sqrt(1.5), np.sqrt(6.0))
"""c/a (hexagonal axes) of the rhombohedral cells that are cP and cF."""

MARGIN = 0.05
"""How far (relative) a drawn ratio keeps from each special one."""


def random_names(per_lattice: int) -> tuple[str, ...]:
    """The names of ``per_lattice`` random structures of each lattice, in lattice order."""
    return tuple(f"random-{lattice}-{k}" for lattice in BRAVAIS_LATTICES for k in range(per_lattice))


def is_random_name(name: str) -> bool:
    return NAME.fullmatch(name) is not None


@functools.lru_cache(maxsize=None)
def random_entry(name: str) -> PhaseEntry:
    """The structure called ``name`` (``random-<lattice>-<k>``), the same on every call."""
    match = NAME.fullmatch(name)
    lattice = match["lattice"] if match else ""
    known = {key.lower(): key for key in SPACE_GROUPS}
    if lattice.lower() not in known:
        raise PhysicsInputError(f"phase: {name!r} is not random-<lattice>-<k> with a lattice of "
                                f"{', '.join(BRAVAIS_LATTICES)} (e.g. random-cF-0)")
    lattice = known[lattice.lower()]
    canonical = f"random-{lattice}-{int(match['k'])}"
    rng = np.random.default_rng(zlib.crc32(canonical.encode()))
    space_group, positions = SPACE_GROUPS[lattice]
    n_sites = int(rng.integers(1, min(3, len(positions)) + 1))
    chosen = rng.choice(len(positions), size=n_sites, replace=False)
    elements = rng.choice(ELEMENTS, size=n_sites, replace=False)  # one element on two sites could add a centring
    atoms = tuple(AtomSite(str(element), tuple(float(v) for v in positions[i]), b_iso=float(rng.uniform(0.3, 1.0)))
                  for element, i in zip(elements, sorted(chosen)))
    return PhaseEntry(name=canonical, formula="".join(site.element for site in atoms), space_group=space_group,
                      lattice=_cell(lattice, rng), atoms=atoms, bravais_lattice=lattice,
                      source="random structure (diffstream trainer/physics/random_structures.py)")


def _cell(lattice: str, rng: np.random.Generator) -> tuple[float, float, float, float, float, float]:
    """Edges and angles obeying the lattice's metric and no more, so that no cell is by accident
    of higher symmetry (e.g. a tI cell with c = a√2 is cF)."""
    a, b, c = _edges(rng)
    system = lattice[0]
    if system == "c":
        return (a, a, a, 90.0, 90.0, 90.0)
    if system == "t":
        return (a, a, c, 90.0, 90.0, 90.0)
    if lattice == "hR":
        return (a, a, a * _c_over_a(rng), 90.0, 90.0, 120.0)
    if system == "h":
        return (a, a, c, 90.0, 90.0, 120.0)
    if system == "o":
        return (a, b, c, 90.0, 90.0, 90.0)
    if system == "m":
        return (a, b, c, 90.0, float(rng.uniform(95.0, 120.0)), 90.0)
    return (a, b, c, *(float(v) for v in rng.uniform(75.0, 105.0, 3)))


def _edges(rng: np.random.Generator) -> tuple[float, float, float]:
    """Three edges whose every ratio keeps clear of :data:`SPECIAL_RATIOS`."""
    while True:
        edges = rng.uniform(*EDGE_A, 3)
        if clear_of([edges[i] / edges[j] for i in range(3) for j in range(3) if i != j], SPECIAL_RATIOS):
            return tuple(float(v) for v in edges)


def _c_over_a(rng: np.random.Generator) -> float:
    """An hR cell's c/a (hexagonal axes), clear of :data:`RHOMBOHEDRAL_CUBIC_C_OVER_A`."""
    while True:
        value = float(rng.uniform(1.0, 4.0))
        if clear_of([value], RHOMBOHEDRAL_CUBIC_C_OVER_A):
            return value


def clear_of(ratios: list[float], special: tuple[float, ...]) -> bool:
    """Whether every ratio keeps more than :data:`MARGIN` (relative) from every special one."""
    return all(abs(ratio / value - 1.0) > MARGIN for ratio in ratios for value in special)
