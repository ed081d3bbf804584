"""The numpy and torch EBSD projectors against kikuchipy's ``EBSDMasterPattern.get_patterns``,
plus the detector geometry's validation and kikuchipy round trip.

kikuchipy is the reference for every convention (pattern centre, detector tilts, which way
an orientation rotates, Lambert layout); seeded random orientations make sure agreement is
not an accident of symmetry.
"""
from __future__ import annotations

import subprocess
import sys

import kikuchipy
import numpy as np
import pytest
import torch
from orix.quaternion import Rotation

from diffstream.trainer.physics.ebsd_projection import measure_projection_rate, project_patterns
from diffstream.trainer.physics.ebsd_projection_torch import TorchEBSDProjector
from diffstream.trainer.physics.errors import PhysicsInputError
from diffstream.trainer.physics.geometry import EBSDGeometry
from diffstream.trainer.physics.master_pattern import (
    MasterPattern,
    kinematical_master_pattern,
    load_emsoft_master_pattern,
)
from diffstream.trainer.physics.sampling import random_quaternions

# m-3m, 6/mmm, 4/mmm and -3m: four Laue groups
PHASES = ("Ni", "Ti", "Sn", "LiNiO2")
N_ORIENTATIONS = 120
MIN_PEARSON = 0.99
MAX_RELATIVE_DEVIATION = 1e-3
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
EMSOFT_NI = (
    kikuchipy.data.__path__[0] + "/emsoft_ebsd_master_pattern/ni_mc_mp_20kv_uint8_gzip_opts9.h5"
)


@pytest.fixture(scope="session")
def masters() -> dict[str, MasterPattern]:
    """Small master patterns (201 px squares, few reflectors): fast, and enough detail
    for a convention error to destroy the correlation."""
    return {
        name: kinematical_master_pattern(name, 20.0, half_size=100, min_dspacing=0.7)
        for name in PHASES
    }


@pytest.fixture(scope="session")
def geometry() -> EBSDGeometry:
    """Off-centre pattern centre, every detector angle non-zero, non-square detector."""
    return EBSDGeometry(
        shape=(45, 60), pc=(0.42, 0.31, 0.58), sample_tilt=68.0, tilt=7.0, azimuthal=2.5, twist=1.0
    )


@pytest.fixture(scope="session")
def rotations() -> Rotation:
    return Rotation(random_quaternions(N_ORIENTATIONS, seed=20240601))


@pytest.fixture(scope="session")
def jittered(geometry: EBSDGeometry) -> EBSDGeometry:
    pcs = np.random.default_rng(7).uniform((0.35, 0.2, 0.5), (0.65, 0.45, 0.75), (N_ORIENTATIONS, 3))
    return geometry.with_pc(pcs)


@pytest.fixture(scope="session")
def references(masters, geometry, rotations) -> dict[str, np.ndarray]:
    return {name: kikuchipy_patterns(master, rotations, geometry) for name, master in masters.items()}


def kikuchipy_patterns(master: MasterPattern, rotations: Rotation, geometry: EBSDGeometry) -> np.ndarray:
    signal = master.to_kikuchipy().get_patterns(
        rotations, geometry.to_kikuchipy(), compute=True, show_progressbar=False
    )
    return np.asarray(signal.data, dtype=np.float64)


def torch_patterns(master: MasterPattern, rotations: Rotation, geometry: EBSDGeometry,
                   device: str, pc: np.ndarray | None = None) -> np.ndarray:
    projector = TorchEBSDProjector(master, geometry, device=device)
    quaternions = torch.tensor(rotations.data, dtype=torch.float32, device=device)
    pcs = None if pc is None else torch.tensor(pc, dtype=torch.float32, device=device)
    with torch.inference_mode():
        return projector(quaternions, pcs).cpu().numpy()


def pearson_per_pattern(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.reshape(len(a), -1).astype(np.float64)
    b = b.reshape(len(b), -1).astype(np.float64)
    a = a - a.mean(axis=1, keepdims=True)
    b = b - b.mean(axis=1, keepdims=True)
    return (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))


def assert_matches(ours: np.ndarray, reference: np.ndarray) -> None:
    assert ours.shape == reference.shape
    assert ours.dtype == np.float32
    r = pearson_per_pattern(ours, reference)
    assert r.min() >= MIN_PEARSON, f"worst pattern {r.argmin()}: r = {r.min():.5f}"
    deviation = np.abs(ours - reference).max() / np.abs(reference).max()
    assert deviation <= MAX_RELATIVE_DEVIATION, f"max deviation {deviation:.2e} of the peak"


@pytest.mark.parametrize("phase", PHASES)
def test_numpy_projection_matches_kikuchipy(masters, references, geometry, rotations, phase):
    assert_matches(project_patterns(masters[phase], rotations, geometry), references[phase])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("phase", PHASES)
def test_torch_projection_matches_kikuchipy(masters, references, geometry, rotations, phase, device):
    assert_matches(torch_patterns(masters[phase], rotations, geometry, device), references[phase])


def test_dynamical_emsoft_master_pattern_projects_like_kikuchipy(geometry, rotations):
    master = load_emsoft_master_pattern(EMSOFT_NI, 20.0)
    reference = kikuchipy_patterns(master, rotations, geometry)
    assert_matches(project_patterns(master, rotations, geometry), reference)
    assert_matches(torch_patterns(master, rotations, geometry, "cpu"), reference)


def test_per_pattern_pattern_centres_match_kikuchipy(masters, jittered, rotations):
    master = masters["Ti"]
    reference = kikuchipy_patterns(master, rotations, jittered)
    assert_matches(project_patterns(master, rotations, jittered), reference)
    assert_matches(torch_patterns(master, rotations, jittered, "cpu"), reference)


def test_torch_pattern_centre_argument_overrides_the_geometry(masters, geometry, jittered, rotations):
    master = masters["Ti"]
    assert_matches(
        torch_patterns(master, rotations, geometry, "cpu", pc=jittered.pc),
        kikuchipy_patterns(master, rotations, jittered),
    )


def test_inverse_rotations_do_not_match(masters, references, geometry, rotations):
    """The comparison can tell an orientation from its inverse, so agreement above is
    evidence of the right rotation direction, not of a symmetric test."""
    r = pearson_per_pattern(project_patterns(masters["Sn"], ~rotations, geometry), references["Sn"])
    assert np.median(r) < 0.5


def test_quaternion_array_equals_rotation_input(masters, geometry, rotations):
    master = masters["Ni"]
    np.testing.assert_array_equal(
        project_patterns(master, rotations.data, geometry), project_patterns(master, rotations, geometry)
    )


def test_wrong_number_of_pattern_centres_is_refused(masters, jittered, rotations):
    with pytest.raises(PhysicsInputError, match=r"^pc:"):
        project_patterns(masters["Ni"], rotations[:5], jittered)


@pytest.mark.parametrize(
    "orientations", [np.zeros((3, 4)), np.ones((3, 3)), np.ones((2, 6)), np.full((2, 4), np.nan), "w"]
)
def test_bad_orientations_are_refused(masters, geometry, orientations):
    with pytest.raises(PhysicsInputError, match=r"^orientations:"):
        project_patterns(masters["Ni"], orientations, geometry)


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("shape", {"shape": (0, 60)}),
        ("shape", {"shape": (-4, 60)}),
        ("shape", {"shape": (60,)}),
        ("pc", {"pc": (1.7, 0.5, 0.5)}),
        ("pc", {"pc": (0.5, -0.1, 0.5)}),
        ("pc", {"pc": (0.5, 0.5, 0.0)}),
        ("pc", {"pc": (0.5, 0.5, -0.6)}),
        ("pc", {"pc": (0.5, 0.5)}),
        ("pc", {"pc": np.array([[0.5, 0.5, 0.5], [0.5, 1.2, 0.5]])}),
        ("sample_tilt", {"sample_tilt": 120.0}),
        ("sample_tilt", {"sample_tilt": float("nan")}),
        ("tilt", {"tilt": 95.0}),
        ("azimuthal", {"azimuthal": -91.0}),
        ("twist", {"twist": float("inf")}),
        ("binning", {"binning": 0}),
        ("binning", {"binning": 1.5}),
        ("px_size", {"px_size": 0.0}),
    ],
)
def test_bad_geometry_names_the_field(field, kwargs):
    arguments = {"shape": (60, 80), **kwargs}
    with pytest.raises(PhysicsInputError, match=rf"^{field}:"):
        EBSDGeometry(**arguments)


def test_off_detector_message_gives_the_value():
    with pytest.raises(PhysicsInputError, match=r"x\*=1\.7 is off the detector"):
        EBSDGeometry(shape=(60, 60), pc=(1.7, 0.5, 0.5))


@pytest.mark.parametrize("pc", [(0.42, 0.31, 0.58), np.array([[0.4, 0.3, 0.5], [0.6, 0.2, 0.7]])])
def test_geometry_round_trips_through_kikuchipy(pc):
    original = EBSDGeometry(
        shape=(45, 60), pc=pc, sample_tilt=68.0, tilt=7.0, azimuthal=2.5, twist=1.0, binning=4, px_size=55.0
    )
    detector = original.to_kikuchipy()
    np.testing.assert_allclose(detector.pc.reshape(-1, 3), original.pc_array())
    back = EBSDGeometry.from_kikuchipy(detector)
    for name in ("shape", "sample_tilt", "tilt", "azimuthal", "twist", "binning", "px_size"):
        assert getattr(back, name) == getattr(original, name), name
    np.testing.assert_allclose(back.pc, original.pc)


def test_geometry_is_immutable():
    geometry = EBSDGeometry(shape=(60, 60))
    with pytest.raises(ValueError):
        geometry.pc[0] = 0.9


def test_rate_measurement_returns_patterns_per_second():
    assert measure_projection_rate(shape=(20, 30), n_patterns=64, repeats=1) > 0


def test_numpy_path_does_not_import_torch():
    code = (
        "import sys, diffstream.trainer.physics, diffstream.trainer.physics.ebsd_projection, "
        "diffstream.trainer.physics.master_pattern, diffstream.trainer.physics.geometry; "
        "sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=120).returncode == 0
