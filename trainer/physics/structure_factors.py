"""Kinematical electron structure factors, and the full unit cell they are summed over, for
every simulator in the package (SPED spot tables, EBSD master patterns).

diffsims 0.7 is not used for them: ``ReciprocalLatticeVector.calculate_structure_factor``
maps fractional coordinates through inv(stdbase · recbase) (from pyxem), which is not the
identity for orix's re-based hexagonal lattices (x ∥ a) and so moves the atoms. For LiNiO2
(R-3m, hexagonal axes) the R-centring-forbidden (100) gets |F| = 8.6 and forbidden (102) the
|F| of allowed (012). It also takes one F per symmetry set and no Debye–Waller damping.
Here F is summed over every atom of the cell in fractional coordinates, one reflection at a
time: nothing depends on the Cartesian frame orix picks for the lattice.

Scattering factors are Lobato & Van Dyck's electron ones (Acta Cryst. A70 (2014) 636, with
diffsims' table of their parameters) damped by each site's isotropic Debye–Waller factor.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from diffpy.structure import Atom, Structure
from diffsims.utils.lobato_scattering_params import ATOMIC_SCATTERING_PARAMS_LOBATO
from numpy.typing import ArrayLike
from orix.crystal_map import Phase

from .errors import PhysicsInputError

EXTINCTION_THRESHOLD = 1e-9
"""|F|² at or below this fraction of |F(000)|² counts as absent. Symmetry-forbidden
reflections come out below 1e-30 of it (rounding); the few allowed ones this weak (accidental
cancellation in large cells) could not show beside the others in any simulation either."""

_SAME_SITE_TOLERANCE = 1e-3
"""Fractional distance below which two symmetry images are one site: above the rounding of
published coordinates (4 decimals), far below any real interatomic distance."""

_REFLECTION_BLOCK = 8192
"""Reflections per structure-factor block: bounds memory at block × atoms complex numbers."""


@dataclass(frozen=True, eq=False)
class Sites:
    """Every atom of one unit cell and the cell's reciprocal basis: all a structure factor
    depends on, expanded once and reused for any number of reflections."""

    elements: tuple[str, ...]
    """Element symbols as the scattering-factor table spells them ('Ni', not 'Ni2+')."""
    xyz: np.ndarray
    """(A, 3) fractional coordinates in [0, 1)."""
    occupancy: np.ndarray
    """(A,)"""
    b_iso: np.ndarray
    """(A,) isotropic Debye–Waller B in Å²."""
    reciprocal_basis: np.ndarray
    """(3, 3) Å⁻¹, columns a*, b*, c*: gives |g| of hkl for the scattering factors."""


def full_cell_sites(phase: Phase) -> Sites:
    """Every atom of the unit cell of ``phase``, which may hold the asymmetric unit or the
    full cell: the space group's operations act on fractional coordinates (orix's own
    ``expand_asymmetric_unit`` misplaces atoms in hexagonal cells) and coincident images
    are merged, which makes the expansion idempotent on a full cell."""
    operations = list(phase.space_group.iter_symops()) if phase.space_group is not None else []
    rotations = np.array([op.R for op in operations]) if operations else np.eye(3)[None]
    translations = np.array([op.t for op in operations]) if operations else np.zeros((1, 3))
    elements: list[str] = []
    xyz, occupancy, b_iso = np.zeros((0, 3)), [], []
    for atom in phase.structure:
        element = _element_symbol(atom.element)
        orbit = np.mod(rotations @ np.asarray(atom.xyz, dtype=float) + translations, 1.0)
        # Keep a position unless an earlier one in its orbit, or an already kept site of the
        # same element, coincides with it.
        orbit = orbit[~np.triu(_coincide(orbit, orbit), k=1).any(axis=0)]
        same = np.array([e == element for e in elements], dtype=bool)
        orbit = orbit[~_coincide(orbit, xyz[same]).any(axis=1)]
        elements += [element] * len(orbit)
        xyz = np.vstack([xyz, orbit])
        occupancy += [float(atom.occupancy)] * len(orbit)
        b_iso += [float(atom.Bisoequiv)] * len(orbit)
    return Sites(
        tuple(elements), xyz, np.array(occupancy), np.array(b_iso),
        np.array(phase.structure.lattice.recbase, dtype=float),
    )


def full_cell_phase(phase: Phase) -> Phase:
    """A new ``Phase`` holding :func:`full_cell_sites` of ``phase``, for code that takes a
    phase but needs the whole cell (kikuchipy, diffsims' refraction correction, cache keys).

    Sites keep what the structure factors use: element symbol, occupancy and isotropic B.
    Assigning a structure makes orix re-base its lattice while keeping Cartesian positions;
    the lattice here is already in orix's base, and the fractional coordinates are set
    again afterwards so that rounding cannot move them.
    """
    sites = full_cell_sites(phase)
    full = phase.deepcopy()
    atoms = []
    for element, xyz, occupancy, b_iso in zip(sites.elements, sites.xyz, sites.occupancy, sites.b_iso):
        atom = Atom(element, list(xyz), occupancy=float(occupancy))
        atom.Bisoequiv = float(b_iso)
        atoms.append(atom)
    full.structure = Structure(atoms=atoms, lattice=full.structure.lattice, title=full.structure.title)
    for atom, xyz in zip(full.structure, sites.xyz):
        atom.xyz = xyz
    return full


def reflections_within(phase: Phase, max_g: float) -> np.ndarray:
    """All hkl ≠ 000 with |g| ≤ ``max_g`` (Å⁻¹), as an (N, 3) int array.

    The whole sphere, searched in the box |h| ≤ max_g·a (h = g·a), so it is closed under
    every symmetry of the lattice. diffsims' ``from_min_dspacing`` bounds its box by the
    (h00) spacings instead, which misses vectors of non-orthogonal cells (400 of LiNiO2's
    3380 with d ≥ 0.5 Å).
    """
    if not (np.isfinite(max_g) and max_g > 0):
        raise PhysicsInputError(f"max_g: {max_g!r} Å⁻¹ must be a positive number")
    lattice = phase.structure.lattice
    limits = [int(np.floor(max_g * length)) for length in (lattice.a, lattice.b, lattice.c)]
    axes = [np.arange(-n, n + 1) for n in limits]
    hkl = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    hkl = hkl[np.any(hkl != 0, axis=1)]
    g = np.linalg.norm(hkl @ lattice.recbase.T, axis=1)
    return hkl[g <= max_g]


def structure_factors(source: Phase | Sites, hkl: ArrayLike, site_weights: np.ndarray | None = None) -> np.ndarray:
    """Complex F(hkl) in Å, one per reflection (N,), of a phase or of its expanded sites:

    F(hkl) = Σ occ · f(g) · exp(−B g²/4) · exp(2πi h·x) over every atom of the cell.

    Pass :class:`Sites` when calling more than once, to expand the cell only once. With
    ``site_weights`` (one per site), those replace the scattering factors f(g): the same sum
    for other point-like scatterers, such as the backscattering sources of dynamical EBSD.
    """
    sites = source if isinstance(source, Sites) else full_cell_sites(source)
    indices = _miller_indices(hkl)
    g = np.linalg.norm(indices @ sites.reciprocal_basis.T, axis=1)
    species = sorted(set(sites.elements))
    species_of_site = np.array([species.index(e) for e in sites.elements], dtype=int)
    params = np.array([ATOMIC_SCATTERING_PARAMS_LOBATO[e] for e in species]).reshape(-1, 5, 2)
    out = np.empty(len(indices), dtype=complex)
    # In blocks of reflections, so that large cells (anorthite: 104 atoms) stay within memory.
    for lo in range(0, len(indices), _REFLECTION_BLOCK):
        block = slice(lo, lo + _REFLECTION_BLOCK)
        g2 = g[block] ** 2
        f = _lobato(params, g2)[:, species_of_site] if site_weights is None else site_weights[None, :]  # (G, A)
        debye_waller = np.exp(-0.25 * np.outer(g2, sites.b_iso))
        out[block] = (f * debye_waller * _phase_factors(indices[block], sites.xyz)) @ sites.occupancy
    return out


def is_extinct(factors: np.ndarray, source: Phase | Sites) -> np.ndarray:
    """Which structure factors (from :func:`structure_factors` of the same ``source``) are
    systematic absences: a zero sum only up to rounding, which no simulation should draw.
    The test is relative to F(000) so that it holds for light and heavy cells alike."""
    f000 = structure_factors(source, np.zeros((1, 3), dtype=int))[0]
    return np.abs(factors) ** 2 <= EXTINCTION_THRESHOLD * abs(f000) ** 2


def _miller_indices(hkl: ArrayLike) -> np.ndarray:
    """hkl as (N, 3) int64; diffsims hands out float indices with 1e-17 residues."""
    array = np.asarray(hkl, dtype=float)
    if array.ndim != 2 or array.shape[1] != 3 or not np.isfinite(array).all():
        raise PhysicsInputError(f"hkl: must be (N, 3) Miller indices, got shape {array.shape}")
    indices = np.rint(array)
    if not np.allclose(array, indices, rtol=0, atol=1e-6):
        raise PhysicsInputError("hkl: Miller indices must be integers")
    return indices.astype(np.int64)


def _coincide(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) whether fractional positions coincide modulo lattice translations."""
    difference = a[:, None, :] - b[None, :, :]
    difference -= np.round(difference)
    return np.all(np.abs(difference) < _SAME_SITE_TOLERANCE, axis=-1)


def _element_symbol(label: str) -> str:
    """'Ni', 'Ni2+' and 'NI' all scatter as Ni (ionic charge is beyond this model)."""
    match = re.match(r"[A-Za-z]{1,2}", str(label))
    symbol = match.group(0).capitalize() if match else ""
    if symbol not in ATOMIC_SCATTERING_PARAMS_LOBATO:
        raise PhysicsInputError(f"phase: no electron scattering factors for element {label!r}")
    return symbol


def _phase_factors(hkl: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """exp(2πi h·x) as a product of per-axis tables exp(2πi h x), exp(2πi k y), exp(2πi l z):
    three look-ups and two products instead of one complex exponential per (reflection, atom),
    several times faster for large cells."""
    factors = np.ones((len(hkl), len(xyz)), dtype=complex)
    for axis in range(3):
        index = hkl[:, axis]
        low = index.min(initial=0)
        orders = np.arange(low, index.max(initial=0) + 1)
        factors *= np.exp(2j * np.pi * np.outer(orders, xyz[:, axis]))[index - low]
    return factors


def _lobato(params: np.ndarray, g2: np.ndarray) -> np.ndarray:
    """Electron scattering factors (Å) of each species (E, 5, 2 parameters) at each g²."""
    a, b = params[None, :, :, 0], params[None, :, :, 1]
    bg2 = b * g2[:, None, None]
    return np.sum(a * (2 + bg2) / (1 + bg2) ** 2, axis=-1)
