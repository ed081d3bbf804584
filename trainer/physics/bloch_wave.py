"""Dynamical EBSD intensities by many-beam Bloch waves: what real (dynamical) master patterns
look like, computed here for any phase, where EMsoft's ``EMEBSDmaster`` is not available.

Why: every network here was trained on kinematical master patterns, and the shipped
``ebsd-lattice`` classes 11 of 200 frames of kikuchipy's EMsoft Ni master pattern cF
(docs/models.md, "Dynamical patterns"); re-rendering kinematical patterns did not close that
gap. kikuchipy reads EMsoft's files but simulates only kinematically, and EMsoft is not on
the package registries, so this is diffstream's own, checked against EMsoft's Ni
(``tests/trainer/test_bloch_wave.py``).

The model (Winkelmann et al., Ultramicroscopy 107 (2007) 414; De Graef's EMsoft), per
direction d of the sphere, in the crystal frame, Å and Å⁻¹ without 2π:

1. **Reciprocity**: the electrons that leave towards d are computed as a plane wave entering
   along k = −K d (K the refraction-free wavenumber at the voltage, relativistic), with the
   crystal surface normal to it, as EMsoft does for master patterns.
2. **Bloch waves**: the ``beams`` reflections g (d ≥ ``min_dspacing``, systematic absences
   and those weaker than ``MIN_RELATIVE_POTENTIAL`` left out) nearest their Bragg condition
   relative to their strength, Bethe's criterion |2K s_g| / |U_g|, with the direct beam.
   The forward-scattering eigenproblem [diag(2K s_g) + U_(g−h)] C = 2Kγ C, with
   U_g = γ_rel F_g / (π Ω) from the package's own electron structure factors (Lobato
   scattering factors, Debye–Waller damped), is Hermitian and solved directly; absorption
   is a proportional imaginary potential U' = ``absorption`` · U (U'_0 included), added to
   each γ to first order.
3. **Sources**: backscattering is incoherent and localised at the nuclei (Rutherford, Z²):
   the intensity is the Bloch-wave density at the atoms, thermally smeared by each site's
   Debye–Waller factor, summed over the cell, I = Σ_ij D_ij (Cᵀ P C*)_ij with
   P_gh = Σ_n Z_n² occ_n exp(−B_n |g−h|²/4) exp(2πi (g−h)·x_n) (a structure factor of the
   sources) and D_ij = α_i α_j* ∫ w(z) exp(2πi (γ_i − γ_j*) z) dz, α the excitation of each
   Bloch wave at the surface, w an exponential depth distribution of mean ``depth_nm``.

What it leaves out: the Monte Carlo energy and depth distribution of the backscattered
electrons (one energy; an exponential in depth), weak beams beyond the ``beams`` strongest
(EMsoft adds them as Bethe perturbations) and absorptive form factors computed from thermal
diffuse scattering (a proportional model instead).
"""
from __future__ import annotations

import numpy as np
from diffsims.utils.lobato_scattering_params import ATOMIC_SCATTERING_PARAMS_LOBATO
from orix.crystal_map import Phase

from .errors import check_integer, check_number
from .sped_geometry import electron_wavelength, lorentz_factor
from .structure_factors import (
    full_cell_sites,
    is_extinct,
    reflections_within,
    structure_factors,
)

DEFAULT_BEAMS = 32
DEFAULT_DEPTH_NM = 10.0
DEFAULT_ABSORPTION = 0.1
MIN_RELATIVE_POTENTIAL = 0.05
"""Candidate beams need |U_g| at least this share of the strongest: weaker ones enter a
many-beam solution only on their exact Bragg condition, and large cells (anorthite: 45,000
reflections with d ≥ 0.5 Å, 4,400 above the cut) would spend most of the time ranking them."""
_CHUNK = 1024
"""Directions per eigen-solve batch: bounds memory at chunk × beams² complex numbers, a few
tens of MB at the default beam count."""

_BOHR_RADIUS = 0.529177210903
"""Å. Lobato's electron scattering factors fall as Z / (8π² a₀ s²) at large s, which gives
each element's Z from the table itself (exact to 1e-6 for every element)."""


def electron_wavenumber(voltage_kv: float) -> tuple[float, float]:
    """K = 1/λ (Å⁻¹) of electrons at ``voltage_kv`` (the SPED simulator's relativistic
    wavelength) and their γ = m/m₀, which scales the crystal potential they feel."""
    check_number("voltage_kv", voltage_kv, 1.0, 1000.0, "kV")
    return 1.0 / electron_wavelength(voltage_kv), lorentz_factor(voltage_kv)


def atomic_numbers(elements: tuple[str, ...]) -> np.ndarray:
    """Z of each element from its Lobato parameters' large-angle limit (see ``_BOHR_RADIUS``)."""
    params = np.array([ATOMIC_SCATTERING_PARAMS_LOBATO[e] for e in elements], dtype=float).reshape(-1, 5, 2)
    return np.rint(2.0 * np.pi**2 * _BOHR_RADIUS * np.sum(params[..., 0] / params[..., 1], axis=1))


class BlochWaveSimulator:
    """Dynamical backscatter intensities of one phase at one voltage, for any directions.

    Built once per phase (the reflection tables), then :meth:`intensities` per batch of
    directions; :func:`dynamical_hemispheres` fills the two Lambert squares of a master
    pattern with it.
    """

    def __init__(self, phase: Phase, voltage_kv: float, *, min_dspacing: float = 0.5,
                 beams: int = DEFAULT_BEAMS, depth_nm: float = DEFAULT_DEPTH_NM,
                 absorption: float = DEFAULT_ABSORPTION) -> None:
        check_number("min_dspacing", min_dspacing, 0.2, 5.0, "Å")
        check_integer("beams", beams, 2, 400)
        check_number("depth_nm", depth_nm, 0.1, 1000.0, "nm")
        check_number("absorption", absorption, 0.0, 1.0)
        self.beams, self.depth, self.absorption = int(beams), 10.0 * float(depth_nm), float(absorption)
        self.wavenumber, gamma = electron_wavenumber(voltage_kv)
        sites = full_cell_sites(phase)
        lattice = phase.structure.lattice

        hkl = reflections_within(phase, 1.0 / min_dspacing)
        factors = structure_factors(sites, hkl)
        magnitude = np.abs(factors)
        allowed = ~is_extinct(factors, sites)
        allowed &= magnitude >= MIN_RELATIVE_POTENTIAL * magnitude[allowed].max(initial=0.0)
        self.hkl = hkl[allowed]
        self.g = self.hkl @ np.asarray(lattice.recbase, dtype=float).T
        potential = gamma / (np.pi * lattice.volume)

        # U and the source factor P depend only on the difference of two beams' hkl, which
        # lies in a box twice as wide as the beams'; tabulated densely, a difference is one
        # look-up at a linear index (lin(g) − lin(h) + centre).
        reach = np.abs(np.vstack([self.hkl, np.zeros((1, 3), dtype=int)])).max(axis=0) * 2
        shape = 2 * reach + 1
        self._strides = np.array([shape[1] * shape[2], shape[2], 1])
        self._centre = int(reach @ self._strides)
        box = np.stack(np.meshgrid(*[np.arange(-r, r + 1) for r in reach], indexing="ij"), axis=-1).reshape(-1, 3)
        self._potential = potential * structure_factors(sites, box)
        # P(Δg): the sources' structure factor, Z² (Rutherford) in place of f(g)
        self._sources = structure_factors(sites, box, atomic_numbers(sites.elements) ** 2)
        self._beam_index = self.hkl @ self._strides
        self.mean_potential = float(self._potential[self._centre].real)
        strength = np.abs(self._potential[self._centre + self._beam_index])
        self._strength = np.maximum(strength, 1e-12 * strength.max(initial=1.0))

    def intensities(self, directions: np.ndarray) -> np.ndarray:
        """Backscattered intensity towards each of the (M, 3) crystal-frame ``directions``
        (normalised here), in arbitrary but consistent units, as (M,) float64."""
        directions = np.asarray(directions, dtype=float)
        directions = directions / np.linalg.norm(directions, axis=1, keepdims=True)
        return np.concatenate([self._chunk(directions[lo:lo + _CHUNK])
                               for lo in range(0, len(directions), _CHUNK)] or [np.zeros(0)])

    def _chunk(self, directions: np.ndarray) -> np.ndarray:
        two_k = 2.0 * self.wavenumber
        incident = -self.wavenumber * directions
        # 2K s_g = K² − |k + g|² for every candidate beam
        excitation = -(2.0 * incident @ self.g.T + np.sum(self.g**2, axis=1))
        count = min(self.beams - 1, len(self.hkl))
        chosen = np.argpartition(np.abs(excitation) / self._strength, count - 1, axis=1)[:, :count]
        rows = np.arange(len(directions))[:, None]
        diagonal = np.concatenate([np.zeros((len(directions), 1)), excitation[rows, chosen]], axis=1)
        linear = np.concatenate([np.zeros((len(directions), 1), dtype=int), self._beam_index[chosen]], axis=1)
        difference = self._centre + linear[:, :, None] - linear[:, None, :]

        matrix = self._potential[difference]
        index = np.arange(diagonal.shape[1])
        matrix[:, index, index] = diagonal
        eigenvalues, vectors = np.linalg.eigh(matrix)

        # First-order absorption of each Bloch wave: C† U' C with U' = absorption · U,
        # where C† U_off C = eigenvalue − Σ_g |C_g|² 2K s_g.
        weights = np.abs(vectors) ** 2
        off_diagonal = eigenvalues - np.einsum("bgj,bg->bj", weights, diagonal)
        damping = self.absorption * (off_diagonal + self.mean_potential) / two_k
        gamma = eigenvalues / two_k

        excitations = np.conj(vectors[:, 0, :])
        depth = self.depth
        denominator = (1.0 + 2.0 * np.pi * depth * (damping[:, :, None] + damping[:, None, :])
                       - 2j * np.pi * depth * (gamma[:, :, None] - gamma[:, None, :]))
        interference = excitations[:, :, None] * np.conj(excitations)[:, None, :] / denominator
        densities = np.transpose(vectors, (0, 2, 1)) @ self._sources[difference] @ np.conj(vectors)
        return np.real(np.sum(interference * densities, axis=(1, 2)))


def lambert_directions(size: int) -> np.ndarray:
    """Unit vectors (size², 3) of the upper hemisphere's square Lambert pixels, row-major
    with x along columns and y along rows, both from −1 to 1 (kikuchipy's layout, which the
    projectors sample); the lower hemisphere's are these with z negated."""
    axis = np.linspace(-1.0, 1.0, size) * np.sqrt(np.pi / 2)
    x, y = (a.ravel() for a in np.meshgrid(axis, axis))
    out = np.zeros((x.size, 3))
    # Roşca & Graef's inverse of the square Lambert map, one branch per pair of triangles
    x_major = np.abs(x) > np.abs(y)
    major = np.where(x_major, x, y)
    minor = np.where(x_major, y, x)
    safe = np.where(major == 0, 1.0, major)
    q = 2.0 * major * np.sqrt(np.pi - major**2) / np.pi
    angle = minor * np.pi / (4.0 * safe)
    out[:, 0] = np.where(x_major, q * np.cos(angle), q * np.sin(angle))
    out[:, 1] = np.where(x_major, q * np.sin(angle), q * np.cos(angle))
    out[:, 2] = 1.0 - 2.0 * major**2 / np.pi
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def dynamical_hemispheres(simulator: BlochWaveSimulator, half_size: int) -> np.ndarray:
    """Both Lambert hemispheres (2, n, n), n = 2·``half_size`` + 1, float32 scaled to a
    maximum of 1, upper (z ≥ 0) first."""
    check_integer("half_size", half_size, 2, 2000)
    size = 2 * half_size + 1
    upper = lambert_directions(size)
    values = np.maximum(simulator.intensities(np.vstack([upper, upper * np.array([1.0, 1.0, -1.0])])), 0.0)
    return (values / values.max()).reshape(2, size, size).astype(np.float32)
