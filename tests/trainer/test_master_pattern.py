"""Kinematical and EMsoft master patterns: physics, the disk cache and input validation."""
from __future__ import annotations

import sys
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import kikuchipy
import numba
import numpy as np
import pytest
import torch
from diffpy.structure import Atom, Lattice, Structure
from kikuchipy.simulations.kikuchi_pattern_simulator import get_pattern
from orix.crystal_map import Phase
from orix.vector import Vector3d

from conftest import high_passed
from diffstream.live.scan_render import DEFAULT_EBSD_GEOMETRY
from diffstream.trainer.models.preprocess import LocalContrastNormalise, PatternNormalise
from diffstream.trainer.physics import master_pattern as mp_module
from diffstream.trainer.physics.catalogue import get_phase_entry
from diffstream.trainer.physics.ebsd_projection import project_patterns, sample_master_pattern
from diffstream.trainer.physics.errors import PhysicsInputError
from diffstream.trainer.physics.master_pattern import (
    MasterPattern,
    band_family_scales,
    dynamical_contrast,
    fill_master_pattern_cache,
    kinematical_master_pattern,
    kinematical_reflectors,
    load_emsoft_master_pattern,
    master_pattern_cache_dir,
    master_pattern_cache_key,
)
from diffstream.trainer.physics.sampling import uniform_quaternions

SMALL = {"half_size": 60, "min_dspacing": 1.0}
"""Settings small enough for a master pattern in well under a second."""
EMSOFT_DIR = Path(kikuchipy.data.__path__[0]) / "emsoft_ebsd_master_pattern"


@pytest.fixture(scope="session")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("master_patterns")


@pytest.fixture(scope="session")
def ni(cache: Path) -> MasterPattern:
    return kinematical_master_pattern("Ni", 20.0, cache_dir=cache, **SMALL)


@pytest.fixture(scope="session")
def triclinic() -> Phase:
    """A P1 crystal: no symmetry hides a mirrored or swapped axis in the Lambert layout."""
    structure = Structure(
        [Atom("Fe", [0, 0, 0]), Atom("O", [0.21, 0.13, 0.37]), Atom("Ni", [0.6, 0.3, 0.8])],
        lattice=Lattice(4.1, 4.6, 5.2, 80, 95, 105),
    )
    return Phase(name="triclinic", space_group=1, structure=structure)


def test_master_pattern_holds_both_hemispheres(ni):
    assert ni.hemispheres.shape == (2, 121, 121)
    assert ni.hemispheres.dtype == np.float32
    assert ni.upper.shape == ni.lower.shape == (121, 121)
    assert ni.voltage_kv == 20.0 and ni.phase.point_group.name == "m-3m"
    assert ni.upper.max() > ni.upper.min() >= 0
    with pytest.raises(ValueError):
        ni.hemispheres[0, 0, 0] = 1.0


def test_both_hemispheres_agree_with_a_direct_kinematical_sum(triclinic, cache):
    """Read at random directions on the sphere, the master pattern equals the kinematical
    band sum evaluated directly at those directions: the Lambert layout of both hemispheres
    is right (a mirrored or swapped axis would decorrelate a P1 crystal)."""
    master = kinematical_master_pattern(triclinic, 20.0, cache_dir=cache, half_size=120, min_dspacing=0.9)
    reflectors = kinematical_reflectors(master.phase, 20.0, min_dspacing=0.9)
    directions = np.random.default_rng(3).normal(size=(3000, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    threads = numba.get_num_threads()
    numba.set_num_threads(1)  # kikuchipy's band sum races with more threads
    try:
        direct = get_pattern(
            np.abs(reflectors.structure_factor), directions, Vector3d(reflectors).unit.data, reflectors.theta
        )
    finally:
        numba.set_num_threads(threads)
    for mirror in ([1, 1, 1], [-1, 1, 1], [1, -1, 1]):
        read = sample_master_pattern(master, directions * mirror)
        for hemisphere in (directions[:, 2] >= 0, directions[:, 2] < 0):
            r = np.corrcoef(read[hemisphere], direct[hemisphere])[0, 1]
            assert (r > 0.9) if mirror == [1, 1, 1] else (r < 0.5), (mirror, r)


def test_to_kikuchipy_keeps_data_phase_and_layout(ni):
    signal = ni.to_kikuchipy()
    np.testing.assert_array_equal(signal.data, ni.hemispheres)
    assert signal.projection == "lambert" and signal.hemisphere == "both"
    assert signal.phase.point_group.name == "m-3m"


def test_cache_hit_returns_identical_arrays(ni, cache, monkeypatch):
    def no_simulation(*args, **kwargs):
        raise AssertionError("simulated although a cached master pattern exists")

    monkeypatch.setattr(mp_module, "_simulate", no_simulation)
    again = kinematical_master_pattern("Ni", 20.0, cache_dir=cache, **SMALL)
    np.testing.assert_array_equal(again.hemispheres, ni.hemispheres)


def test_simulation_is_deterministic(ni, tmp_path):
    fresh = kinematical_master_pattern("Ni", 20.0, cache_dir=tmp_path, **SMALL)
    np.testing.assert_array_equal(fresh.hemispheres, ni.hemispheres)


def test_cache_filled_on_two_processes_equals_serial_simulation(ni, triclinic, tmp_path):
    """The pool computes only what is missing, once per distinct request, and writes what
    the serial path would (the parent then reads it without simulating)."""
    settings = {"cache_dir": tmp_path, **SMALL}
    requests = [("Ni", 20.0, settings), ("Ni", 20.0, settings), ("Fe", 15.0, settings), (triclinic, 20.0, settings)]
    assert fill_master_pattern_cache(requests, workers=2, progress=False) == 3
    assert fill_master_pattern_cache(requests, workers=2, progress=False) == 0
    assert len(list(tmp_path.glob("*.npz"))) == 3
    np.testing.assert_array_equal(kinematical_master_pattern("Ni", 20.0, **settings).hemispheres, ni.hemispheres)
    serial = {**settings, "cache_dir": tmp_path / "serial"}
    fill_master_pattern_cache([(triclinic, 20.0, serial)], workers=1, progress=False)
    np.testing.assert_array_equal(kinematical_master_pattern(triclinic, 20.0, **settings).hemispheres,
                                  kinematical_master_pattern(triclinic, 20.0, **serial).hemispheres)


def test_dead_workers_leave_the_rest_to_this_process(tmp_path, monkeypatch):
    class DeadPool:
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def submit(self, *args):
            raise BrokenProcessPool("a child process terminated abruptly")

    monkeypatch.setattr(mp_module, "ProcessPoolExecutor", DeadPool)
    requests = [("Ni", 20.0, {"cache_dir": tmp_path, **SMALL}), ("Fe", 20.0, {"cache_dir": tmp_path, **SMALL})]
    with pytest.warns(RuntimeWarning, match="worker processes stopped .*simulating the rest in this process"):
        assert fill_master_pattern_cache(requests, workers=2, progress=False) == 2
    assert len(list(tmp_path.glob("*.npz"))) == 2


def test_kikuchipy_bars_are_hidden_and_other_text_shown(capsys):
    with mp_module._without_progress_bars():
        sys.stderr.write("\r 50%|#####     | 1/2 [00:01<00:01,  1.6s/it]\r100%|##########| 2/2\n")
        sys.stderr.write("UserWarning: something a user should see\n")
    assert capsys.readouterr().err == "UserWarning: something a user should see\n"


@pytest.mark.parametrize(
    "change",
    [
        {"voltage_kv": 15.0},
        {"half_size": 61},
        {"min_dspacing": 0.9},
        {"min_relative_intensity": 0.2},
        {"phase": "Fe"},
    ],
)
def test_every_setting_changes_the_key(change):
    base = {"phase": "Ni", "voltage_kv": 20.0, **SMALL}
    assert master_pattern_cache_key(**{**base, **change}) != master_pattern_cache_key(**base)


def test_band_jitter_scales_whole_families_and_keeps_the_bands():
    """Every Laue equivalent of a band must get the same factor (or the master pattern loses
    its symmetry), the set of bands must not change, and the families must differ."""
    plain = kinematical_reflectors(get_phase_entry("TiC").phase(), 20.0, min_dspacing=0.8)
    jittered = kinematical_reflectors(get_phase_entry("TiC").phase(), 20.0, min_dspacing=0.8,
                                      band_jitter=0.5, band_jitter_seed=7)
    assert np.array_equal(plain.hkl, jittered.hkl)
    ratio = np.abs(jittered.structure_factor) / np.abs(plain.structure_factor)
    families: dict[tuple[int, ...], float] = {}
    for hkl, r in zip(np.rint(np.abs(plain.hkl)).astype(int), ratio):
        family = tuple(sorted(hkl))
        assert families.setdefault(family, r) == pytest.approx(r, rel=1e-9), family
    # in a cubic rock salt, |g| and |F| depend on h² + k² + l² only: {333} and {511} share a factor
    shells = {sum(i * i for i in family) for family in families}
    assert len(shells) > 5 and len(set(np.round(list(families.values()), 6))) == len(shells)
    assert np.ptp(np.log(list(families.values()))) > 0.5


def test_band_jitter_is_seeded_and_log_normal():
    hkl = np.array([[h, 0, 0] for h in range(1, 2001)])
    factors = np.arange(1, 2001, dtype=complex)
    basis = np.eye(3) / 4.0
    scales = band_family_scales(hkl, factors, basis, 0.5, seed=3)
    assert np.array_equal(scales, band_family_scales(hkl, factors, basis, 0.5, seed=3))
    assert not np.allclose(scales, band_family_scales(hkl, factors, basis, 0.5, seed=4))
    assert np.std(np.log(scales)) == pytest.approx(0.5, abs=0.03)
    assert abs(np.median(np.log(scales))) < 0.05


def test_band_jitter_has_its_own_cache_entry_and_leaves_others_alone(ni, cache):
    """Unjittered keys must not move (they name every cached master pattern); a jittered
    master pattern is another picture of the same bands, made once per seed."""
    assert master_pattern_cache_key("Ni", 20.0, band_jitter=0.0, band_jitter_seed=9, **SMALL) == \
        master_pattern_cache_key("Ni", 20.0, **SMALL)
    jittered = kinematical_master_pattern("Ni", 20.0, cache_dir=cache, band_jitter=0.5, band_jitter_seed=9, **SMALL)
    keys = {master_pattern_cache_key("Ni", 20.0, band_jitter=0.5, band_jitter_seed=seed, **SMALL) for seed in (9, 10)}
    assert len(keys | {master_pattern_cache_key("Ni", 20.0, **SMALL)}) == 3
    assert "band jitter 0.5" in jittered.source and ni.source == "kinematical"
    correlation = np.corrcoef(ni.hemispheres.ravel(), jittered.hemispheres.ravel())[0, 1]
    assert 0.3 < correlation < 0.995
    assert np.allclose(jittered.upper, jittered.upper.T, atol=1e-3 * jittered.upper.max())
    with pytest.raises(PhysicsInputError, match="band_jitter"):
        master_pattern_cache_key("Ni", 20.0, band_jitter=3.0, **SMALL)


def test_key_depends_on_structure_not_on_how_it_is_given():
    """An asymmetric unit and its expanded cell are the same crystal, so share a key; a
    changed atom position is a different crystal."""
    asymmetric = get_phase_entry("Ti").phase()
    key = master_pattern_cache_key(asymmetric, 20.0, **SMALL)
    assert master_pattern_cache_key("Ti", 20.0, **SMALL) == key
    full = kinematical_reflectors(asymmetric, 20.0, min_dspacing=1.0).phase
    assert len(full.structure) == 2
    assert master_pattern_cache_key(full, 20.0, **SMALL) == key
    moved = asymmetric.deepcopy()
    moved.structure[0].xyz = [0.3333, 0.6667, 0.26]
    assert master_pattern_cache_key(moved, 20.0, **SMALL) != key


def test_unreadable_cache_file_is_recomputed(ni, tmp_path):
    key = master_pattern_cache_key("Ni", 20.0, **SMALL)
    path = tmp_path / f"Ni-{key}.npz"
    path.write_bytes(b"PK\x03\x04 truncated by a crash")
    again = kinematical_master_pattern("Ni", 20.0, cache_dir=tmp_path, **SMALL)
    np.testing.assert_array_equal(again.hemispheres, ni.hemispheres)
    assert np.load(path)["hemispheres"].shape == ni.hemispheres.shape


def test_interrupted_write_leaves_no_cache_file(tmp_path, monkeypatch):
    def interrupted(file, **arrays):
        file.write(b"PK\x03\x04 half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(mp_module.np, "savez", interrupted)
    with pytest.raises(KeyboardInterrupt):
        kinematical_master_pattern("Ni", 20.0, cache_dir=tmp_path, **SMALL)
    assert list(tmp_path.iterdir()) == []


def test_cache_directory_follows_argument_then_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFSTREAM_CACHE", str(tmp_path / "root"))
    assert master_pattern_cache_dir() == tmp_path / "root" / "master_patterns"
    assert master_pattern_cache_dir(tmp_path / "mine") == tmp_path / "mine"
    monkeypatch.delenv("DIFFSTREAM_CACHE")
    assert master_pattern_cache_dir() == Path.home() / ".cache" / "diffstream" / "master_patterns"


@pytest.mark.parametrize("voltage", [0.5, 45.0, 200.0, float("nan"), -20.0])
def test_voltage_outside_ebsd_range_is_refused(voltage, tmp_path):
    with pytest.raises(PhysicsInputError, match=r"^voltage:"):
        kinematical_master_pattern("Ni", voltage, cache_dir=tmp_path, **SMALL)
    with pytest.raises(PhysicsInputError, match=r"^voltage:"):
        load_emsoft_master_pattern(EMSOFT_DIR / "master_patterns.h5", voltage)


@pytest.mark.parametrize(
    ("field", "settings"),
    [
        ("half_size", {"half_size": 4}),
        ("half_size", {"half_size": 100.5}),
        ("min_dspacing", {"min_dspacing": 0.0}),
        ("min_relative_intensity", {"min_relative_intensity": 1.0}),
    ],
)
def test_bad_simulation_settings_name_the_field(field, settings, tmp_path):
    with pytest.raises(PhysicsInputError, match=rf"^{field}:"):
        kinematical_master_pattern("Ni", 20.0, cache_dir=tmp_path, **{**SMALL, **settings})


def test_unknown_phase_is_refused(tmp_path):
    with pytest.raises(PhysicsInputError, match=r"^phase:"):
        kinematical_master_pattern("unobtainium", 20.0, cache_dir=tmp_path, **SMALL)


def test_emsoft_file_is_read_at_the_requested_energy():
    master = load_emsoft_master_pattern(EMSOFT_DIR / "master_patterns.h5", 15.0)
    assert master.hemispheres.shape == (2, 13, 13) and master.voltage_kv == 15.0
    assert master.phase.point_group.name == "4/mmm"
    other = load_emsoft_master_pattern(EMSOFT_DIR / "master_patterns.h5", 12.0)
    assert not np.array_equal(master.hemispheres, other.hemispheres)


def test_emsoft_file_without_the_voltage_is_refused():
    with pytest.raises(PhysicsInputError, match=r"^voltage: 30 kV is not in"):
        load_emsoft_master_pattern(EMSOFT_DIR / "master_patterns.h5", 30.0)


def test_missing_emsoft_file_names_the_path(tmp_path):
    with pytest.raises(PhysicsInputError, match=r"^path:"):
        load_emsoft_master_pattern(tmp_path / "absent.h5", 20.0)


def test_dynamical_contrast_brings_kinematical_ni_closer_to_emsoft_ni(cache):
    """The point of the re-rendering: frames of the kinematical Ni master pattern must look
    more like those of kikuchipy's dynamical (EMsoft) Ni one, orientation for orientation."""
    dynamical = load_emsoft_master_pattern(EMSOFT_DIR / "ni_mc_mp_20kv_uint8_gzip_opts9.h5")
    kinematical = kinematical_master_pattern("Ni", 20.0, half_size=200, cache_dir=cache)
    rotations = uniform_quaternions(30, np.random.default_rng(3))

    def similarity(master: MasterPattern) -> float:
        a = high_passed(project_patterns(master, rotations, DEFAULT_EBSD_GEOMETRY))
        b = high_passed(project_patterns(dynamical, rotations, DEFAULT_EBSD_GEOMETRY))
        return float((a * b).mean())

    rendered = dynamical_contrast(kinematical, clip_quantile=0.97, edge_gain=3.0)
    assert similarity(rendered) > similarity(kinematical) + 0.05
    assert "dynamical contrast" in rendered.source and rendered.hemispheres.min() == 0.0
    assert np.allclose(rendered.upper, rendered.upper.T, atol=1e-3 * rendered.upper.max())


def test_local_contrast_layer_sees_kinematical_ni_closer_to_emsoft_ni(cache):
    """The other route to the same end, in the network's first layer: equalised band contrast
    (``preprocess = "background-local"``) makes kinematical and dynamical Ni frames of one
    orientation correlate more (r 0.59 → 0.74 over 200 orientations when this was written)."""
    dynamical = load_emsoft_master_pattern(EMSOFT_DIR / "ni_mc_mp_20kv_uint8_gzip_opts9.h5")
    kinematical = kinematical_master_pattern("Ni", 20.0, half_size=200, cache_dir=cache)
    rotations = uniform_quaternions(30, np.random.default_rng(3))

    def counts(master: MasterPattern) -> torch.Tensor:
        frames = project_patterns(master, rotations, DEFAULT_EBSD_GEOMETRY)
        low, high = frames.min(axis=(1, 2), keepdims=True), frames.max(axis=(1, 2), keepdims=True)
        return torch.from_numpy((60 + 120 * (frames - low) / (high - low)).astype(np.float32))

    def similarity(layer: type[PatternNormalise]) -> float:
        normalise = layer((60, 60))
        a, b = normalise(counts(kinematical)), normalise(counts(dynamical))
        return float((a * b).mean())

    assert similarity(LocalContrastNormalise) > similarity(PatternNormalise) + 0.1


def test_dynamical_contrast_clips_zone_axes_only_to_the_quantile(ni):

    clipped = dynamical_contrast(ni, clip_quantile=0.9, edge_gain=0.0).hemispheres
    expected = np.minimum(ni.hemispheres, np.quantile(ni.hemispheres, 0.9))
    assert np.allclose(clipped, expected - expected.min(), atol=1e-6)
    with pytest.raises(PhysicsInputError, match="clip_quantile"):
        dynamical_contrast(ni, clip_quantile=1.5, edge_gain=1.0)
