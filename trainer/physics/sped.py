"""Kinematic 4D-STEM / SPED spot patterns: spot lists for many orientations, then images.

Orientation convention: an orix ``Rotation`` (or ``Orientation``) g maps the sample frame to
the crystal frame, as orix and kikuchipy define orientations, so a reciprocal-lattice vector
with crystal-frame Cartesian components g_c (orix's frame: x ∥ a, z ∥ c*) lies along
``~g * g_c`` in the lab. diffsims 0.7 rotates its reciprocal lattice the same way
(``DiffractingVector.rotate_with_basis``), and the tests hold the two to agreement. The lab's
z axis is the optic axis and the Ewald sphere, through the origin, has its centre at +z/λ (the
beam runs along −z), as in diffsims; the identity orientation puts the crystal's [001] zone
axis on the beam. Detector axes: :mod:`.sped_geometry`.

Physics, per reflection g and orientation:
- excitation error s = z_sphere(r) − g_z, z_sphere = 1/λ − √(1/λ² − r²), r = |g_xy|
  (diffsims' sign);
- rel-rod: a Lorentzian 1 / (1 + (π t s)²) for a foil of thickness t (Palatinus et al.,
  Acta Cryst. B75 (2019) 512, eq. 6; it approximates the two-beam rocking curve);
- precession: the rel-rod averaged over the precession azimuth θ, along which s swings about
  r·sin(φ)·cos θ. The average has a closed form (Palatinus eq. 10, here divided by its
  constant 2t so that an exactly excited spot without precession weighs 1). The swing's centre
  and amplitude are taken from the exactly tilted Ewald sphere rather than Palatinus' r·φ;
  what remains (the cos² θ term) is below 1e-5 Å⁻¹ at 300 kV, and the tests check the closed
  form against a brute-force azimuthal integral over the tilted sphere;
- intensity, as a fraction of the beam: the kinematic (λ γ t |F| / V_cell)² × weight, with F
  from Lobato–Van Dyck scattering factors and each site's Debye–Waller factor. Kinematic
  theory over-predicts strong reflections and has no transmitted beam, so every pattern is
  renormalised by 1 + D, D the sum over its excited reflections: the direct beam keeps
  1 / (1 + D), weakly diffracting orientations leave it near 1 and zone axes deplete it.

Images: every spot is the probe's convergent-beam disc (or a Gaussian), on a Lorentzian
diffuse halo, in expected electrons at a given dose, Poisson-sampled on request;
:func:`log_unit_scale` is paper 2's preprocessing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from orix.crystal_map import Phase
from orix.quaternion import Rotation

from .errors import PhysicsInputError
from .sped_geometry import ReflectionTable, SpedGeometry

_CHUNK = 256
"""Orientations per vectorised block: bounds memory at a few chunk × reflections arrays."""


def precession_weight(
    excitation_error: np.ndarray,
    g_radius: np.ndarray,
    geometry: SpedGeometry,
    thickness_nm: float,
) -> np.ndarray:
    """The Lorentzian rel-rod averaged over the precession circle, for reflections at
    ``g_radius`` (Å⁻¹) from the optic axis with on-axis excitation error ``excitation_error``
    (Å⁻¹); 1 for an exactly excited reflection without precession."""
    excitation_error, g_radius = np.asarray(excitation_error), np.asarray(g_radius)
    centre, amplitude = _precession_swing(excitation_error, g_radius, geometry)
    return _mean_lorentzian(centre, amplitude, thickness_nm)


def _precession_swing(
    excitation_error: np.ndarray, g_radius: np.ndarray, geometry: SpedGeometry
) -> tuple[np.ndarray, np.ndarray]:
    """Centre s_c and amplitude a of s(θ) ≈ s_c − a·cos θ as the Ewald sphere, tilted by φ,
    circles the optic axis; exact to first order in cos θ: with k = 1/λ and P = k sin φ,
    a = r·P / √(k² − r² − P²)."""
    k = 1.0 / geometry.wavelength
    tilt = k * np.sin(geometry.precession_rad)
    r2 = g_radius**2
    root = np.sqrt(k**2 - r2 - tilt**2)
    sphere_shift = (k * np.cos(geometry.precession_rad) - root) - (k - np.sqrt(k**2 - r2))
    return excitation_error + sphere_shift, g_radius * tilt / root


def _mean_lorentzian(centre: np.ndarray, amplitude: np.ndarray, thickness_nm: float) -> np.ndarray:
    """Mean over θ of 1 / (1 + σ²(s_c − a cos θ)²), σ = πt, in closed form:
    Re[1/√((1 + iσs_c)² + (σa)²)]. Exact, so no azimuth sampling aliases a narrow rel-rod."""
    sigma = np.pi * thickness_nm * 10.0
    u = 1.0 + sigma**2 * (amplitude**2 - centre**2)
    z = np.sqrt(u**2 + 4.0 * sigma**2 * centre**2)
    return np.sqrt((z + u) / 2.0) / z


@dataclass(frozen=True, eq=False)
class SpotPatterns:
    """Spots of N patterns as flat arrays, grouped by ``pattern_index`` (non-decreasing).

    Flat rather than padded because spot counts vary several-fold between zone axes and
    general orientations; the direct beam, when present, is each pattern's first spot.
    """

    n_patterns: int
    pattern_index: np.ndarray
    """(M,) which pattern each spot belongs to."""
    xy: np.ndarray
    """(M, 2) detector position (x = column, y = row) in pixels."""
    intensity: np.ndarray
    """(M,) fraction of the incident beam."""
    hkl: np.ndarray
    """(M, 3) Miller indices; 000 is the direct beam."""
    excitation_error: np.ndarray
    """(M,) Å⁻¹ with the beam on the optic axis."""

    def pattern(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(xy, intensity, hkl) of pattern ``i``."""
        lo, hi = np.searchsorted(self.pattern_index, [i, i + 1])
        return self.xy[lo:hi], self.intensity[lo:hi], self.hkl[lo:hi]


def rotation_matrices(rotations: Rotation | np.ndarray) -> np.ndarray:
    """(N, 3, 3) matrices M with g_lab = Mᵀ g_crystal, from an orix rotation or (N, 4) w,x,y,z."""
    if not isinstance(rotations, Rotation):
        quaternions = np.asarray(rotations, dtype=float)
        well_formed = quaternions.ndim == 2 and quaternions.shape[1] == 4
        if not (well_formed and np.all(np.isfinite(quaternions))):
            raise PhysicsInputError(
                "rotations: expected an orix Rotation or finite (N, 4) quaternions, "
                f"got shape {quaternions.shape}"
            )
        if np.any(np.linalg.norm(quaternions, axis=1) == 0):
            raise PhysicsInputError("rotations: a zero quaternion is not a rotation")
        rotations = Rotation(quaternions)
    if rotations.size == 0:
        raise PhysicsInputError("rotations: no orientations given")
    return rotations.flatten().to_matrix().reshape(-1, 3, 3)


def simulate_spots(
    source: Phase | ReflectionTable,
    rotations: Rotation | np.ndarray,
    geometry: SpedGeometry,
    *,
    thickness_nm: float = 50.0,
    min_weight: float = 1e-3,
    with_direct_beam: bool = True,
) -> SpotPatterns:
    """Spot lists for every orientation, vectorised over orientations.

    Pass a :class:`ReflectionTable` built for ``geometry.reciprocal_reach`` when calling often
    with the same phase; a ``Phase`` is tabulated on each call. Spots whose centre falls off the
    detector, or whose precession weight is below ``min_weight``, are left out of the list
    (the former still take their share of the beam).
    """
    if not (np.isfinite(thickness_nm) and thickness_nm > 0):
        raise PhysicsInputError(f"thickness_nm: {thickness_nm!r} nm must be a positive number")
    if not (0 < min_weight < 1):
        raise PhysicsInputError(f"min_weight: {min_weight!r} must lie strictly between 0 and 1")
    if isinstance(source, ReflectionTable):
        table = source
    else:
        table = ReflectionTable.from_phase(source, geometry.reciprocal_reach)
    matrices = rotation_matrices(rotations)
    blocks = []
    for start in range(0, len(matrices), _CHUNK):
        block = matrices[start : start + _CHUNK]
        spots, depletion = _diffracted_spots(table, block, geometry, thickness_nm, min_weight)
        if with_direct_beam:
            spots = _with_direct_beams(spots, depletion, geometry)
        spots["pattern_index"] += start
        blocks.append(spots)
    merged = {key: np.concatenate([spots[key] for spots in blocks]) for key in blocks[0]}
    return SpotPatterns(n_patterns=len(matrices), **merged)


def _diffracted_spots(
    table: ReflectionTable,
    matrices: np.ndarray,
    geometry: SpedGeometry,
    thickness_nm: float,
    min_weight: float,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Diffracted spots of a block of orientations, ordered by pattern, and each pattern's
    1 + D (module docstring)."""
    g_norm = np.linalg.norm(table.g_crystal, axis=1)
    # Only g_z is needed to judge excitation, since r² = |g|² − g_z²; x and y are computed for
    # the few reflections that pass, which makes this step several times cheaper.
    g_z = matrices[:, :, 2] @ table.g_crystal.T  # (N, G): z row of Mᵀ g
    reach_s = np.sqrt(1.0 / min_weight - 1.0) / (np.pi * thickness_nm * 10.0)
    low, high = _excitable_band(g_norm, geometry, reach_s)
    n, g = np.nonzero((g_z >= low) & (g_z <= high))
    z = g_z[n, g]
    radius = np.sqrt(np.maximum(g_norm[g] ** 2 - z**2, 0.0))
    k = 1.0 / geometry.wavelength
    excitation = (k - np.sqrt(k**2 - radius**2)) - z
    weight = precession_weight(excitation, radius, geometry, thickness_nm)
    keep = weight >= min_weight
    n, g, weight, excitation = n[keep], g[keep], weight[keep], excitation[keep]
    # Kinematic peak intensity (π t / ξ_g)² with extinction distance ξ_g = π V / (λ γ |F|).
    per_f = geometry.wavelength * geometry.lorentz_factor * thickness_nm * 10.0 / table.cell_volume
    intensity = per_f**2 * table.intensity[g] * weight
    depletion = 1.0 + np.bincount(n, weights=intensity, minlength=len(matrices))
    g_xy = np.einsum("ki,kij->kj", table.g_crystal[g], matrices[n][:, :, :2])
    xy = g_xy / geometry.calibration + np.asarray(geometry.centre)
    on = _on_detector(xy, geometry)
    spots = {
        "pattern_index": n[on],
        "xy": xy[on],
        "intensity": intensity[on] / depletion[n[on]],
        "hkl": table.hkl[g[on]],
        "excitation_error": excitation[on],
    }
    return spots, depletion


def _excitable_band(
    g_norm: np.ndarray, geometry: SpedGeometry, reach_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per reflection, the g_z outside which the weight must fall below ``min_weight``.

    The weight never exceeds the rel-rod at the closest approach max(|s_c| − a, 0) ≤ reach_s;
    with r ≤ |g|, s_c lies in [−g_z, −g_z + curvature + shift] and a ≤ a(|g|), all of which
    grow with r, so evaluating them at r = |g| bounds every orientation at once.
    """
    k = 1.0 / geometry.wavelength
    curvature = k - np.sqrt(k**2 - g_norm**2)
    shift, amplitude = _precession_swing(np.zeros_like(g_norm), g_norm, geometry)
    slack = reach_s + amplitude
    return -slack, curvature + shift + slack


def _on_detector(xy: np.ndarray, geometry: SpedGeometry) -> np.ndarray:
    rows, cols = geometry.shape
    x, y = xy[:, 0], xy[:, 1]
    return (x >= -0.5) & (x < cols - 0.5) & (y >= -0.5) & (y < rows - 0.5)


def _with_direct_beams(
    spots: dict[str, np.ndarray], depletion: np.ndarray, geometry: SpedGeometry
) -> dict[str, np.ndarray]:
    """Each pattern's direct beam, carrying 1 / (1 + D), in front of its diffracted spots."""
    n = len(depletion)
    beams = {
        "pattern_index": np.arange(n),
        "xy": np.tile(np.asarray(geometry.centre, dtype=float), (n, 1)),
        "intensity": 1.0 / depletion,
        "hkl": np.zeros((n, 3), dtype=spots["hkl"].dtype),
        "excitation_error": np.zeros(n),
    }
    # The diffracted spots are already ordered by pattern; a stable sort slots each pattern's
    # direct beam in front of them.
    index = np.concatenate([beams["pattern_index"], spots["pattern_index"]])
    order = np.argsort(index, kind="stable")
    return {key: np.concatenate([beams[key], spots[key]])[order] for key in spots}


PROFILES = ("disc", "gaussian")


@dataclass(frozen=True)
class RenderSettings:
    """How spot lists become detector frames.

    Images are in expected electrons per pixel, so that log scaling and Poisson noise act on
    counts as they would on a counting detector.
    """

    profile: Literal["disc", "gaussian"] = "disc"
    """'disc': the convergent-beam disc of radius α/λ (anti-aliased edge);
    'gaussian': a Gaussian of ``sigma_px``, for detectors that blur the disc edge away."""
    sigma_px: float | None = None
    """Gaussian σ in pixels; ``None`` takes half the disc radius."""
    dose: float = 1e5
    """Electrons per pattern; those scattered beyond the detector are lost."""
    poisson: bool = False
    """Draw counts from a Poisson distribution around the expected image."""
    background_fraction: float = 0.1
    """Share of the dose in the diffuse (thermal-diffuse and inelastic) background."""
    background_width: float = 0.3
    """Å⁻¹ half-width of the background's Lorentzian fall-off from the direct beam."""

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise PhysicsInputError(f"profile: {self.profile!r} is not one of {PROFILES}")
        if self.sigma_px is not None and not (np.isfinite(self.sigma_px) and self.sigma_px > 0):
            raise PhysicsInputError(f"sigma_px: {self.sigma_px!r} pixels must be a positive number")
        if not (np.isfinite(self.dose) and self.dose > 0):
            raise PhysicsInputError(f"dose: {self.dose!r} electrons must be a positive number")
        if not (0.0 <= self.background_fraction < 1.0):
            raise PhysicsInputError(
                f"background_fraction: {self.background_fraction!r} must lie in [0, 1)"
            )
        if not (np.isfinite(self.background_width) and self.background_width > 0):
            raise PhysicsInputError(
                f"background_width: {self.background_width!r} Å⁻¹ must be a positive number"
            )


def render_patterns(
    spots: SpotPatterns,
    geometry: SpedGeometry,
    settings: RenderSettings = RenderSettings(),
    rng: np.random.Generator | int | None = None,
) -> np.ndarray:
    """(N, rows, cols) float32 frames; ``rng`` (Generator or seed) matters only for Poisson noise.

    Each spot's profile is normalised over its whole footprint, so light falling off the
    detector edge is lost rather than piled onto the edge pixels.
    """
    rows, cols = geometry.shape
    n = spots.n_patterns
    electrons = spots.intensity * settings.dose * (1 - settings.background_fraction)
    images = np.empty((n, rows, cols), dtype=np.float32)
    for first in range(0, n, _CHUNK):
        count = min(_CHUNK, n - first)
        lo, hi = np.searchsorted(spots.pattern_index, [first, first + count])
        local_index = spots.pattern_index[lo:hi] - first
        splat = _splat(spots.xy[lo:hi], electrons[lo:hi], local_index, count, geometry, settings)
        images[first : first + count] = splat
    background = settings.dose * settings.background_fraction * _background(geometry, settings)
    images += background.astype(np.float32)
    if settings.poisson:
        images = np.random.default_rng(rng).poisson(images).astype(np.float32)
    return images


def _splat(
    xy: np.ndarray,
    electrons: np.ndarray,
    local_index: np.ndarray,
    count: int,
    geometry: SpedGeometry,
    settings: RenderSettings,
) -> np.ndarray:
    """Add every spot's profile into ``count`` frames at once with one ``bincount``."""
    rows, cols = geometry.shape
    offsets = _window_offsets(geometry, settings)  # (P, 2)
    centre_px = np.floor(xy + 0.5).astype(np.int64)
    px = centre_px[:, None, :] + offsets[None, :, :]  # (M, P, 2)
    distance = np.hypot(px[..., 0] - xy[:, None, 0], px[..., 1] - xy[:, None, 1])
    profile = _profile(distance, geometry, settings)
    profile *= (electrons / profile.sum(axis=1))[:, None]
    inside = (px[..., 0] >= 0) & (px[..., 0] < cols) & (px[..., 1] >= 0) & (px[..., 1] < rows)
    flat = (local_index[:, None] * rows + px[..., 1]) * cols + px[..., 0]
    frames = np.bincount(flat[inside], weights=profile[inside], minlength=count * rows * cols)
    return frames.reshape(count, rows, cols)


def _spot_radius_px(geometry: SpedGeometry, settings: RenderSettings) -> float:
    """Disc radius, or Gaussian σ; never under half a pixel so every spot lights its own pixel."""
    disc = max(geometry.disc_radius_px, 0.5)
    if settings.profile == "disc":
        return disc
    return max(settings.sigma_px if settings.sigma_px is not None else disc / 2, 0.5)


def _window_offsets(geometry: SpedGeometry, settings: RenderSettings) -> np.ndarray:
    radius = _spot_radius_px(geometry, settings)
    half = int(np.ceil(radius + 1 if settings.profile == "disc" else 3 * radius))
    steps = np.arange(-half, half + 1)
    return np.stack(np.meshgrid(steps, steps, indexing="xy"), axis=-1).reshape(-1, 2)


def _profile(distance: np.ndarray, geometry: SpedGeometry, settings: RenderSettings) -> np.ndarray:
    radius = _spot_radius_px(geometry, settings)
    if settings.profile == "disc":
        return np.clip(radius + 0.5 - distance, 0.0, 1.0)
    return np.exp(-0.5 * (distance / radius) ** 2)


def _background(geometry: SpedGeometry, settings: RenderSettings) -> np.ndarray:
    """A Lorentzian halo round the direct beam, summing to 1 over the detector."""
    rows, cols = geometry.shape
    cx, cy = geometry.centre
    y, x = np.mgrid[0:rows, 0:cols]
    q = np.hypot(x - cx, y - cy) * geometry.calibration
    halo = 1.0 / (1.0 + (q / settings.background_width) ** 2)
    return halo / halo.sum()


def log_unit_scale(images: np.ndarray) -> np.ndarray:
    """Paper 2's preprocessing: log(1 + counts), then each pattern linearly onto [0, 1].

    Log scaling lets weak high-order spots, which carry most of the orientation information,
    compete with the direct beam; a constant frame maps to zeros rather than dividing by zero.
    """
    logged = np.log1p(np.maximum(np.asarray(images, dtype=np.float32), 0.0))
    low = logged.min(axis=(-2, -1), keepdims=True)
    span = logged.max(axis=(-2, -1), keepdims=True) - low
    return np.divide(logged - low, span, out=np.zeros_like(logged), where=span > 0)
