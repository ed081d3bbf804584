"""Kinematic SPED spot patterns: diffsims agreement, physics checks, validation, rendering."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from diffsims.crystallography import ReciprocalLatticeVector
from diffsims.generators.simulation_generator import SimulationGenerator
from orix.crystal_map import Phase
from orix.quaternion import Rotation
from scipy.stats import spearmanr

from diffstream.trainer.physics.catalogue import catalogue, get_phase_entry
from diffstream.trainer.physics.errors import PhysicsInputError
from diffstream.trainer.physics.sped import (
    RenderSettings,
    SpotPatterns,
    log_unit_scale,
    precession_weight,
    render_patterns,
    simulate_spots,
)
from diffstream.trainer.physics.sped_geometry import (
    ARINA_96_GEOMETRY,
    PAPER2_GEOMETRY,
    ReflectionTable,
    SpedGeometry,
    electron_wavelength,
)

N_RANDOM = 24
THICKNESS_NM = 10.0
"""diffsims uses one number for the rel-rod width and the cut-off: max_excitation_error = 1/t."""


def nickel_spots(rotations: Rotation | np.ndarray, **options: float) -> SpotPatterns:
    return simulate_spots(get_phase_entry("Ni").phase(), rotations, PAPER2_GEOMETRY, **options)


def random_rotations(n: int, seed: int) -> Rotation:
    quaternions = np.random.default_rng(seed).normal(size=(n, 4))
    return Rotation(quaternions / np.linalg.norm(quaternions, axis=1, keepdims=True))


def full_cell(phase: Phase) -> Phase:
    """diffsims' own expansion (``sanitise_phase``), which is correct for hexagonal cells."""
    vectors = ReciprocalLatticeVector(phase.deepcopy(), hkl=[[1, 0, 0]])
    vectors.sanitise_phase()
    return vectors.phase


def diffsims_reference_phase(phase: Phase) -> Phase:
    """The full cell, with diffsims 0.7's structure-factor frame change undone.

    ``get_kinematical_intensities`` maps fractional coordinates through
    inv(stdbase · recbase) (from pyxem/pyxem#312, written for rotated diffpy lattices). For
    orix's re-based hexagonal lattices (x ∥ a) that matrix is not the identity, so diffsims
    moves the atoms at (2/3, 1/3, z) and gives, e.g., LiNiO2's R-centring-forbidden (100) an
    intensity; feeding it the coordinates pre-multiplied by the inverse makes its |F|² the
    true ones. It also uses only the atoms given (diffsims#234), hence the full cell.
    """
    expanded = full_cell(phase)
    lattice = expanded.structure.lattice
    undo = lattice.stdbase @ lattice.recbase
    for atom in expanded.structure:
        atom.xyz = np.asarray(atom.xyz) @ undo
    return expanded


def diffsims_pixels(xy_inv_angstrom: np.ndarray, geometry: SpedGeometry) -> np.ndarray:
    """diffsims' ``get_diffraction_pattern(fast=False)`` mapping of Å⁻¹ to pixels."""
    return xy_inv_angstrom / geometry.calibration + np.asarray(geometry.centre)


def matched_spots(
    phase_name: str, geometry: SpedGeometry
) -> list[tuple[float, float | None, float, int, int]]:
    """Per pattern: (max position error px, Spearman ρ or None, intensity-ratio spread,
    diffsims spots on the detector, how many of them this module also lists)."""
    phase = get_phase_entry(phase_name).phase()
    rotations = random_rotations(N_RANDOM, seed=11)
    ours = simulate_spots(
        phase, rotations, geometry, thickness_nm=THICKNESS_NM, with_direct_beam=False
    )
    reference = diffsims_reference_phase(phase)
    debye_waller = {atom.element: float(atom.Bisoequiv) for atom in reference.structure}
    generator = SimulationGenerator(
        accelerating_voltage=geometry.voltage_kv,
        precession_angle=geometry.precession_deg,
        minimum_intensity=1e-20,
        approximate_precession=True,
    )
    theirs = generator.calculate_diffraction2d(
        reference,
        rotation=rotations,
        reciprocal_radius=geometry.reciprocal_reach,
        max_excitation_error=1.0 / (THICKNESS_NM * 10.0),
        with_direct_beam=False,
        debye_waller_factors=debye_waller,
    )
    rows, cols = geometry.shape
    results = []
    for i in range(N_RANDOM):
        vectors = theirs.coordinates[i]
        their_xy = diffsims_pixels(vectors.data[:, :2], geometry)
        their_i = np.asarray(vectors.intensity)
        visible = (
            (their_xy[:, 0] >= -0.5) & (their_xy[:, 0] < cols - 0.5)
            & (their_xy[:, 1] >= -0.5) & (their_xy[:, 1] < rows - 0.5)
            & (their_i > 1e-9 * their_i.max())  # diffsims keeps extinct reflections at ~1e-17
        )
        xy, intensity, hkl = ours.pattern(i)
        by_hkl = {tuple(h): k for k, h in enumerate(hkl)}
        their_hkl = [tuple(h) for h in np.rint(vectors.hkl).astype(int)]
        pairs = [(by_hkl[h], j) for j, h in enumerate(their_hkl) if visible[j] and h in by_hkl]
        mine = np.array([p[0] for p in pairs], dtype=int)
        other = np.array([p[1] for p in pairs], dtype=int)
        error = float(np.max(np.linalg.norm(xy[mine] - their_xy[other], axis=1), initial=0.0))
        rho = spearmanr(intensity[mine], their_i[other]).statistic if len(mine) >= 3 else None
        ratio = intensity[mine] / their_i[other]
        spread = float(ratio.max() / ratio.min() - 1) if len(mine) else 0.0
        results.append((error, rho, spread, int(visible.sum()), len(mine)))
    return results


@pytest.mark.parametrize("geometry", [PAPER2_GEOMETRY, ARINA_96_GEOMETRY], ids=["paper2", "arina"])
@pytest.mark.parametrize("phase_name", ["LiNiO2", "Ni", "Ti"])
def test_agrees_with_diffsims(phase_name: str, geometry: SpedGeometry) -> None:
    results = matched_spots(phase_name, geometry)
    errors, rhos, spreads, visible, matched = zip(*results)
    # Every reflection diffsims puts on the detector is in our list too (ours reaches further
    # into the Lorentzian tails: min_weight 1e-3 against diffsims' cut at one width).
    assert matched == visible
    assert sum(matched) >= 3 * N_RANDOM
    assert max(errors) < 0.5
    # Spearman needs ≥ 3 spots to mean anything; patterns with fewer are covered by the
    # stronger check below, that intensities agree up to one factor per pattern (diffsims
    # does not normalise to the beam, this module does) within 2 %: diffsims swings s by
    # r·φ, this module by the exactly tilted sphere's amplitude, ~0.1 % larger at 2 Å⁻¹.
    ranked = [r for r in rhos if r is not None]
    assert len(ranked) >= N_RANDOM // 2
    assert min(ranked) >= 0.95
    assert max(spreads) < 0.02


def test_precession_weight_is_the_azimuthal_average_over_the_tilted_ewald_sphere() -> None:
    geometry = PAPER2_GEOMETRY
    k = 1.0 / geometry.wavelength
    phi = geometry.precession_rad
    rng = np.random.default_rng(5)
    radius = rng.uniform(0.2, 2.2, 200)
    azimuth = rng.uniform(0, 2 * np.pi, 200)
    g_xy = np.stack([radius * np.cos(azimuth), radius * np.sin(azimuth)], axis=1)
    s_on_axis = rng.uniform(-1.5, 1.5, 200) * radius * np.sin(phi)
    g_z = (k - np.sqrt(k**2 - radius**2)) - s_on_axis
    theta = np.linspace(0, 2 * np.pi, 20000, endpoint=False)
    # The sphere's centre circles the optic axis at the precession angle; s is measured along z.
    centre_xy = k * np.sin(phi) * np.stack([np.cos(theta), np.sin(theta)], axis=1)
    in_plane = np.linalg.norm(g_xy[:, None, :] - centre_xy[None], axis=2)
    s_theta = (k * np.cos(phi) - np.sqrt(k**2 - in_plane**2)) - g_z[:, None]
    for thickness_nm in (20.0, 50.0, 100.0):
        sigma = np.pi * thickness_nm * 10
        brute = np.mean(1.0 / (1.0 + (sigma * s_theta) ** 2), axis=1)
        closed = precession_weight(s_on_axis, radius, geometry, thickness_nm)
        # What is left is the cos² θ term of s(θ), ~5e-6 Å⁻¹, felt most by thick foils.
        np.testing.assert_allclose(closed, brute, rtol=0.015, atol=5e-4 * brute.max())
    still = SpedGeometry(precession_deg=0.0)
    unprecessed = precession_weight(np.array([0.0, 1e-3]), np.array([1.0, 1.0]), still, 50.0)
    np.testing.assert_allclose(unprecessed, 1 / (1 + (np.pi * 500 * np.array([0.0, 1e-3])) ** 2))


def test_nickel_001_zone_axis_is_fourfold() -> None:
    geometry = PAPER2_GEOMETRY
    spots = simulate_spots(get_phase_entry("Ni").phase(), Rotation.identity(), geometry)
    xy, intensity, hkl = spots.pattern(0)
    assert np.all(hkl[0] == 0) and np.allclose(xy[0], geometry.centre)
    xy, intensity, hkl = xy[1:], intensity[1:], hkl[1:]
    assert len(hkl) >= 20 and np.all(hkl[:, 2] == 0) and np.all(hkl[:, :2] % 2 == 0)
    a_star = 1 / 3.524
    (i200,) = np.flatnonzero((hkl == [2, 0, 0]).all(axis=1))
    expected_200 = np.add(geometry.centre, [2 * a_star / geometry.calibration, 0])
    np.testing.assert_allclose(xy[i200], expected_200, atol=1e-9)
    cx, cy = geometry.centre
    turned = np.stack([cx - (xy[:, 1] - cy), cy + (xy[:, 0] - cx)], axis=1)
    for point, value in zip(turned, intensity):
        match = np.flatnonzero(np.linalg.norm(xy - point, axis=1) < 1e-6)
        assert len(match) == 1
        assert intensity[match[0]] == pytest.approx(value, rel=1e-9)


def test_table_extinctions_and_idempotent_expansion() -> None:
    entry = get_phase_entry("LiNiO2")
    table = ReflectionTable.from_phase(entry.phase(), 2.0)
    assert np.all((table.hkl @ [-1, 1, 1]) % 3 == 0)  # R-centring, hexagonal axes: -h+k+l = 3n
    again = ReflectionTable.from_phase(full_cell(entry.phase()), 2.0)
    np.testing.assert_array_equal(table.hkl, again.hkl)
    np.testing.assert_allclose(table.intensity, again.intensity, rtol=1e-9)
    ti = ReflectionTable.from_phase(get_phase_entry("Ti").phase(), 2.0)
    basal = (ti.hkl[:, 0] == 0) & (ti.hkl[:, 1] == 0)
    assert np.all(ti.hkl[basal, 2] % 2 == 0)  # 6₃ screw: 00l needs l even


def test_expansion_agrees_with_the_catalogue_full_cells() -> None:
    """Asymmetric unit and the catalogue's own full cell give the same reflections, for every
    phase: two independent expansions (this module's and ``full_phase()``) cross-check."""
    for entry in catalogue().values():
        asymmetric = ReflectionTable.from_phase(entry.phase(), 1.0)
        full = ReflectionTable.from_phase(entry.full_phase(), 1.0)
        np.testing.assert_array_equal(asymmetric.hkl, full.hkl, err_msg=entry.name)
        np.testing.assert_allclose(
            asymmetric.intensity, full.intensity, rtol=1e-6, err_msg=entry.name
        )


def test_vectorised_blocks_equal_one_by_one() -> None:
    geometry = PAPER2_GEOMETRY
    lithium_nickelate = get_phase_entry("LiNiO2").phase()
    table = ReflectionTable.from_phase(lithium_nickelate, geometry.reciprocal_reach)
    rotations = random_rotations(300, seed=2)  # more than one vectorised block
    together = simulate_spots(table, rotations, geometry)
    assert np.all(np.diff(together.pattern_index) >= 0)
    for i in (0, 255, 256, 299):
        alone = simulate_spots(table, rotations[i], geometry)
        for got, want in zip(together.pattern(i), alone.pattern(0)):
            np.testing.assert_allclose(got, want, rtol=1e-12)
    from_quaternions = simulate_spots(table, rotations.data, geometry)
    np.testing.assert_array_equal(from_quaternions.hkl, together.hkl)
    np.testing.assert_allclose(from_quaternions.intensity, together.intensity, rtol=1e-12)


def test_direct_beam_takes_what_diffraction_leaves() -> None:
    nickel = get_phase_entry("Ni").phase()
    spots = simulate_spots(nickel, random_rotations(50, seed=3), PAPER2_GEOMETRY)
    direct = np.all(spots.hkl == 0, axis=1)
    assert direct.sum() == 50
    totals = np.bincount(spots.pattern_index, weights=spots.intensity)
    assert np.all(totals <= 1 + 1e-12)
    assert np.all(spots.intensity[direct] > 0) and np.all(spots.intensity[direct] < 1)


@pytest.mark.parametrize("profile", ["gaussian", "disc"])
def test_rendering_peaks_at_listed_positions(profile: str) -> None:
    geometry = SpedGeometry(direct_beam_px=(63.3, 64.7))
    settings = RenderSettings(profile=profile, background_fraction=0.0)
    spots = simulate_spots(get_phase_entry("Ni").phase(), Rotation.identity(), geometry)
    image = render_patterns(spots, geometry, settings)[0]
    xy, intensity, _ = spots.pattern(0)
    y, x = np.mgrid[0:128, 0:128]
    inner = np.all((xy > 6) & (xy < 121), axis=1) & (intensity > 1e-3 * intensity.max())
    assert inner.sum() >= 10
    for (sx, sy), value in zip(xy[inner], intensity[inner]):
        near = np.hypot(x - sx, y - sy) <= 8
        weights = np.where(near, image, 0.0)
        centroid = np.array([np.sum(weights * x), np.sum(weights * y)]) / weights.sum()
        np.testing.assert_allclose(centroid, (sx, sy), atol=0.05)
        if profile == "gaussian":
            row, col = np.unravel_index(np.argmax(weights), weights.shape)
            assert (col, row) == (round(sx), round(sy))
        assert weights.sum() == pytest.approx(value * settings.dose, rel=1e-3)


def test_render_is_deterministic_given_a_seed() -> None:
    geometry = ARINA_96_GEOMETRY
    spots = simulate_spots(get_phase_entry("LiNiO2").phase(), random_rotations(4, seed=9), geometry)
    noisy = RenderSettings(poisson=True, dose=2e4)
    first = render_patterns(spots, geometry, noisy, rng=7)
    assert first.shape == (4, 96, 96) and first.dtype == np.float32
    np.testing.assert_array_equal(first, render_patterns(spots, geometry, noisy, rng=7))
    assert not np.array_equal(first, render_patterns(spots, geometry, noisy, rng=8))
    assert np.all(first == np.round(first)) and first.sum() == pytest.approx(4 * 2e4, rel=0.2)


def test_log_unit_scale() -> None:
    images = np.stack([np.arange(16.0).reshape(4, 4), np.full((4, 4), 3.0)])
    scaled = log_unit_scale(images)
    assert scaled.dtype == np.float32
    assert scaled[0].min() == 0 and scaled[0].max() == pytest.approx(1)
    np.testing.assert_array_equal(scaled[1], 0)
    assert np.all(np.diff(scaled[0].ravel()) > 0)


def test_camera_length_round_trip_and_wavelength() -> None:
    assert electron_wavelength(300) == pytest.approx(0.019687, rel=1e-4)
    geometry = SpedGeometry.from_camera_length(250.0, 55.0, voltage_kv=200.0)
    # 55 µm / (λ · 250 mm), in m⁻¹, then Å⁻¹.
    expected = 55e-6 / (electron_wavelength(200) * 1e-10 * 0.25) * 1e-10
    assert geometry.calibration == pytest.approx(expected)
    assert geometry.camera_length_mm(55.0) == pytest.approx(250.0)
    assert ARINA_96_GEOMETRY.shape == (96, 96) and 0.02 < ARINA_96_GEOMETRY.calibration < 0.05


@pytest.mark.parametrize(
    ("field", "make"),
    [
        ("voltage_kv", lambda: SpedGeometry(voltage_kv=0.0)),
        ("voltage_kv", lambda: SpedGeometry(voltage_kv=-300.0)),
        ("voltage_kv", lambda: SpedGeometry(voltage_kv=float("nan"))),
        ("voltage_kv", lambda: SpedGeometry(voltage_kv=1e6)),
        ("calibration", lambda: SpedGeometry(calibration=0.0)),
        ("calibration", lambda: SpedGeometry(calibration=-0.01)),
        ("calibration", lambda: SpedGeometry(calibration=1.0)),
        ("shape", lambda: SpedGeometry(shape=(0, 128))),
        ("shape", lambda: SpedGeometry(shape=(128,))),
        ("shape", lambda: SpedGeometry(shape=128)),
        ("shape", lambda: SpedGeometry(shape=(128.0, 128))),
        ("precession_deg", lambda: SpedGeometry(precession_deg=-0.6)),
        ("semi_convergence_mrad", lambda: SpedGeometry(semi_convergence_mrad=-1.0)),
        ("direct_beam_px", lambda: SpedGeometry(direct_beam_px=(float("nan"), 0.0))),
        ("camera_length_mm", lambda: SpedGeometry.from_camera_length(0.0, 55.0)),
        ("detector_pixel_um", lambda: SpedGeometry.from_camera_length(250.0, -55.0)),
        ("profile", lambda: RenderSettings(profile="square")),
        ("dose", lambda: RenderSettings(dose=0.0)),
        ("sigma_px", lambda: RenderSettings(sigma_px=-1.0)),
        ("background_fraction", lambda: RenderSettings(background_fraction=1.0)),
        ("thickness_nm", lambda: nickel_spots(Rotation.identity(), thickness_nm=0.0)),
        ("rotations", lambda: nickel_spots(np.ones((3, 3)))),
        ("rotations", lambda: nickel_spots(np.zeros((2, 4)))),
        ("min_weight", lambda: nickel_spots(Rotation.identity(), min_weight=1.0)),
        ("max_g", lambda: ReflectionTable.from_phase(get_phase_entry("Ni").phase(), -1.0)),
    ],
)
def test_bad_input_names_the_field(field: str, make: Callable[[], object]) -> None:
    with pytest.raises(PhysicsInputError, match=f"^{field}: "):
        make()
