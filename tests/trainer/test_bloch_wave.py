"""The Bloch-wave (dynamical) master patterns: the physics' constants, the Lambert layout the
projectors read, the crystal's symmetry, and EMsoft's Ni master pattern as the reference."""
from __future__ import annotations

from pathlib import Path

import kikuchipy
import numpy as np
import pytest
from diffpy.structure import Atom, Lattice, Structure
from kikuchipy.signals.util._master_pattern import _lambert2vector
from orix.crystal_map import Phase
from orix.vector import Vector3d

from conftest import high_passed
from diffstream.live.scan_render import DEFAULT_EBSD_GEOMETRY
from diffstream.trainer.physics.bloch_wave import (
    BlochWaveSimulator,
    atomic_numbers,
    electron_wavenumber,
    lambert_directions,
)
from diffstream.trainer.physics.catalogue import get_phase_entry
from diffstream.trainer.physics.ebsd_projection import project_patterns, sample_master_pattern
from diffstream.trainer.physics.errors import PhysicsInputError
from diffstream.trainer.physics.master_pattern import (
    dynamical_master_pattern,
    kinematical_master_pattern,
    load_emsoft_master_pattern,
    master_pattern_cache_key,
    simulated_master_pattern,
)
from diffstream.trainer.physics.sampling import uniform_quaternions

EMSOFT_NI = Path(kikuchipy.data.__path__[0]) / "emsoft_ebsd_master_pattern" / "ni_mc_mp_20kv_uint8_gzip_opts9.h5"


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("master_patterns")


def test_wavelength_is_relativistic() -> None:
    """Tabulated electron wavelengths: 8.588 pm at 20 kV, 2.508 pm at 200 kV."""
    for kv, wavelength in ((20.0, 0.085885), (200.0, 0.025079)):
        wavenumber, gamma = electron_wavenumber(kv)
        assert 1.0 / wavenumber == pytest.approx(wavelength, rel=2e-4)
        assert gamma == pytest.approx(1.0 + kv / 510.999, rel=1e-6)


def test_atomic_numbers_come_from_the_scattering_factors() -> None:
    assert atomic_numbers(("H", "O", "Ni", "Au")).tolist() == [1, 8, 28, 79]


def test_lambert_directions_are_kikuchipys() -> None:
    size = 9
    axis = np.linspace(-1, 1, size)
    x, y = np.meshgrid(axis, axis)
    expected = _lambert2vector(x.ravel(), y.ravel())
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.allclose(lambert_directions(size), expected, atol=1e-12)


def test_each_pixel_holds_the_intensity_towards_its_direction(cache) -> None:
    """The layout the projectors read, on a P1 crystal, where no symmetry hides a swapped
    axis or hemisphere: sampling the master pattern at a pixel's direction gives back the
    simulator's intensity there."""
    structure = Structure([Atom("Fe", [0, 0, 0]), Atom("O", [0.21, 0.13, 0.37])],
                          lattice=Lattice(3.1, 3.6, 4.2, 80, 95, 105))
    phase = Phase(name="P1", space_group=1, structure=structure)
    master = dynamical_master_pattern(phase, 20.0, half_size=16, min_dspacing=1.0, cache_dir=cache)
    upper = lambert_directions(master.size)
    directions = np.vstack([upper, upper * [1, 1, -1]])[::7]
    direct = BlochWaveSimulator(master.phase, 20.0, min_dspacing=1.0).intensities(directions)
    sampled = sample_master_pattern(master, directions)
    ratio = direct / sampled
    assert np.allclose(ratio, ratio[0], rtol=1e-4)
    assert not np.allclose(master.upper, master.lower, rtol=0.05)
    again = dynamical_master_pattern(phase, 20.0, half_size=16, min_dspacing=1.0, cache_dir=cache)
    assert np.array_equal(again.hemispheres, master.hemispheres) and "Bloch" in master.source


def test_intensities_have_the_point_group_symmetry() -> None:
    """Hexagonal Ti (6/mmm): every operation of the point group, proper or not, maps a
    direction onto one of equal intensity, to rounding; a general other direction differs."""
    phase = get_phase_entry("Ti").phase()
    simulator = BlochWaveSimulator(phase, 20.0, min_dspacing=0.8)
    rng = np.random.default_rng(5)
    directions = rng.normal(size=(40, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    reference = simulator.intensities(directions)
    for operation in phase.point_group:
        moved = (operation * Vector3d(directions)).data
        assert np.allclose(simulator.intensities(moved), reference, rtol=1e-6)
    assert not np.allclose(simulator.intensities(rng.normal(size=(40, 3))), reference, rtol=0.05)


def test_bloch_wave_ni_looks_like_emsofts(cache) -> None:
    """The reference: frames of kikuchipy's EMsoft Ni master pattern (20 kV) against frames of
    ours, orientation for orientation at the demo geometry, background removed as the network
    sees them. Measured when written, over these 60 orientations at half size 50: Pearson r
    0.83 for the Bloch waves, 0.48 for the kinematical master pattern (0.93 and 0.55 at
    half size 100)."""
    emsoft = load_emsoft_master_pattern(EMSOFT_NI, 20.0)
    rotations = uniform_quaternions(60, np.random.default_rng(3))
    reference = high_passed(project_patterns(emsoft, rotations, DEFAULT_EBSD_GEOMETRY))

    def similarity(master) -> float:
        return float((high_passed(project_patterns(master, rotations, DEFAULT_EBSD_GEOMETRY)) * reference).mean())

    dynamical = simulated_master_pattern("Ni", 20.0, simulation="dynamical", half_size=50, cache_dir=cache)
    kinematical = kinematical_master_pattern("Ni", 20.0, half_size=50, cache_dir=cache)
    assert similarity(dynamical) > 0.75
    assert similarity(dynamical) > similarity(kinematical) + 0.2


def test_dynamical_master_patterns_have_their_own_cache_key() -> None:
    kinematical = master_pattern_cache_key("Ni", 20.0, half_size=50)
    dynamical = master_pattern_cache_key("Ni", 20.0, simulation="dynamical", half_size=50)
    assert dynamical != kinematical
    assert dynamical == master_pattern_cache_key("Ni", 20.0, simulation="dynamical", half_size=50)
    assert dynamical != master_pattern_cache_key("Ni", 15.0, simulation="dynamical", half_size=50)
    with pytest.raises(PhysicsInputError, match="simulation: must be one of kinematical, dynamical"):
        master_pattern_cache_key("Ni", simulation="multislice")
    with pytest.raises(PhysicsInputError, match="beams"):
        BlochWaveSimulator(get_phase_entry("Ni").phase(), 20.0, beams=1)
