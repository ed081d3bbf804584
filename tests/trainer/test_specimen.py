"""Synthetic specimens: the statistics they promise, their files and their refusals."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import orix.io
import pytest
from orix.quaternion import Orientation, Rotation
from orix.vector import Miller, Vector3d
from scipy import ndimage

from diffstream.trainer.physics.catalogue import get_phase_entry
from diffstream.trainer.physics.errors import PhysicsInputError
from diffstream.trainer.physics.specimen import (
    ComponentTexture,
    FibreTexture,
    RandomTexture,
    Specimen,
    SpecimenSpec,
    make_specimen,
)

THREE_PHASES = {"Ni": 0.5, "Fe": 0.3, "Ti": 0.2}


@pytest.fixture(scope="module")
def three_phase() -> Specimen:
    return make_specimen(SpecimenSpec(scan_shape=(200, 200), phases=THREE_PHASES, grain_size=8.0,
                                      empty_fraction=0.1, seed=3))


def one_per_grain(specimen: Specimen) -> np.ndarray:
    """The quaternion of one pixel of every grain (the grain's own when there is no spread)."""
    _, first = np.unique(specimen.grain_id.ravel(), return_index=True)
    first = first[specimen.grain_id.ravel()[first] >= 0]
    return specimen.quaternions.reshape(-1, 4)[first]


def test_phase_area_fractions_hit_the_targets(three_phase: Specimen) -> None:
    ids = three_phase.phase_id[three_phase.phase_id >= 0]
    measured = np.bincount(ids, minlength=3) / ids.size
    np.testing.assert_allclose(measured, list(THREE_PHASES.values()), atol=0.02)
    assert [p.name for _, p in three_phase.phase_list] == list(THREE_PHASES)


@pytest.mark.parametrize("grain_size, spread, tolerance",
                         [(6.0, 0.0, 0.03), (12.0, 0.3, 0.03), (12.0, 0.4, 0.05)])
def test_grain_count_follows_grain_size(grain_size: float, spread: float, tolerance: float) -> None:
    spec = SpecimenSpec(scan_shape=(240, 240), grain_size=grain_size, grain_size_spread=spread,
                        seed=1)
    specimen = make_specimen(spec)
    expected = 240 * 240 / (math.pi / 4 * grain_size**2)
    assert specimen.n_grains == pytest.approx(expected, rel=tolerance)
    assert set(np.unique(specimen.grain_id)) == set(range(specimen.n_grains))


@pytest.mark.parametrize("spread, low, high", [(0.0, 0.0, 0.15), (0.3, 0.24, 0.4)])
def test_grain_size_spread_sets_the_spread_of_log_diameters(spread: float, low: float,
                                                             high: float) -> None:
    spec = SpecimenSpec(scan_shape=(240, 240), grain_size=10.0, grain_size_spread=spread, seed=2)
    areas = np.bincount(make_specimen(spec).grain_id.ravel())
    assert low < np.std(np.log(np.sqrt(areas))) < high


@pytest.mark.parametrize("length", [0.0, 4.0], ids=["per-pixel", "smooth"])
def test_intragrain_spread_is_the_mean_misorientation_from_the_grain_mean(length: float) -> None:
    spec = SpecimenSpec(scan_shape=(120, 120), grain_size=15.0, intragrain_spread=1.5,
                        intragrain_length=length, seed=4)
    specimen = make_specimen(spec)
    symmetry = specimen.phase_list[0].point_group
    angles = []
    for grain in range(specimen.n_grains):
        members = Orientation(specimen.quaternions[specimen.grain_id == grain], symmetry)
        mean = Orientation(members.mean(), symmetry)
        angles.append(members.angle_with(mean, degrees=True))
    assert np.concatenate(angles).mean() == pytest.approx(1.5, rel=0.1)


def test_random_texture_is_uniform_over_rotations() -> None:
    spec = SpecimenSpec(scan_shape=(200, 200), grain_size=6.0, intragrain_spread=0.0, seed=5)
    quats = one_per_grain(make_specimen(spec))
    assert len(quats) > 800
    # uniform on SO(3): every squared component averages 1/4 and the rotation angle ω has
    # density (1 - cos ω)/π, so E[cos ω] = -1/2
    np.testing.assert_allclose((quats**2).mean(axis=0), 0.25, atol=0.03)
    assert np.cos(Rotation(quats).angle).mean() == pytest.approx(-0.5, abs=0.05)


def test_component_texture_concentrates_about_its_orientation() -> None:
    texture = ComponentTexture(euler=(30.0, 20.0, 10.0), spread=8.0)
    spec = SpecimenSpec(scan_shape=(200, 200), grain_size=8.0, texture=texture,
                        intragrain_spread=0.0, seed=6)
    specimen = make_specimen(spec)
    symmetry = specimen.phase_list[0].point_group
    ideal = Orientation.from_euler(np.radians(texture.euler), symmetry)
    angles = Orientation(one_per_grain(specimen), symmetry).angle_with(ideal, degrees=True)
    assert angles.mean() == pytest.approx(8.0, rel=0.1)
    assert angles.max() < 30.0


def test_fibre_texture_aligns_the_crystal_direction_in_a_hexagonal_phase() -> None:
    texture = FibreTexture(crystal_direction=(0, 0, 1), sample_direction=(1, 0, 0), spread=6.0)
    spec = SpecimenSpec(scan_shape=(200, 200), phases={"Ti": 1.0}, grain_size=8.0, texture=texture,
                        intragrain_spread=0.0, seed=7)
    specimen = make_specimen(spec)
    rotations = Rotation(one_per_grain(specimen))
    c_axis = Vector3d(Miller(uvw=[0, 0, 1], phase=get_phase_entry("Ti").phase()))
    tilt = np.degrees((rotations * Vector3d.xvector()).angle_with(c_axis))
    assert tilt.mean() == pytest.approx(math.pi / 4 * 6.0, rel=0.15)
    # free rotation about the fibre: where the sample y axis lands is spread all round it
    around = rotations * Vector3d.yvector()
    assert abs(around.x.mean()) < 0.1 and abs(around.y.mean()) < 0.1


def test_empty_regions_are_unindexed_at_the_fraction_and_in_blobs(three_phase: Specimen) -> None:
    empty = three_phase.phase_id == -1
    assert empty.sum() == round(0.1 * 200 * 200)
    assert (three_phase.grain_id[empty] == -1).all()
    assert (three_phase.quaternions[empty] == [1.0, 0.0, 0.0, 0.0]).all()
    assert not three_phase.boundary[empty].any()
    _, n_blobs = ndimage.label(empty)
    assert n_blobs < empty.sum() / 20


def test_boundary_flags_exactly_the_points_touching_another_grain(three_phase: Specimen) -> None:
    grains = np.pad(three_phase.grain_id, 1, mode="edge")
    centre = grains[1:-1, 1:-1]
    touching = np.zeros_like(centre, dtype=bool)
    for shifted in (grains[:-2, 1:-1], grains[2:, 1:-1], grains[1:-1, :-2], grains[1:-1, 2:]):
        touching |= shifted != centre
    np.testing.assert_array_equal(three_phase.boundary, touching & (centre >= 0))
    assert 0.1 < three_phase.boundary.mean() < 0.6


def test_crystal_map_round_trips_through_orix_hdf5(three_phase: Specimen, tmp_path: Path) -> None:
    path = tmp_path / "truth.h5"
    three_phase.save(path)
    loaded = orix.io.load(path)
    original = three_phase.to_crystal_map()
    np.testing.assert_array_equal(loaded.phase_id, original.phase_id)
    dots = np.abs(np.sum(loaded.rotations.data * original.rotations.data, axis=1))
    assert dots.min() > 1 - 1e-9
    np.testing.assert_array_equal(loaded.prop["grain_id"], three_phase.grain_id.ravel())
    np.testing.assert_array_equal(loaded.prop["boundary"], three_phase.boundary.ravel())
    assert loaded.shape == (200, 200) and loaded.dx == original.dx
    assert set(loaded.phases.names) == {"Ni", "Fe", "Ti", "not_indexed"}
    with pytest.raises(FileExistsError):
        three_phase.save(path)


def test_same_seed_same_specimen_other_seed_other_specimen() -> None:
    spec = SpecimenSpec(scan_shape=(64, 64), phases={"Ni": 0.5, "rutile": 0.5},
                        empty_fraction=0.05, seed=9)
    a, b = make_specimen(spec), make_specimen(spec)
    c = make_specimen(SpecimenSpec(scan_shape=(64, 64), phases={"Ni": 0.5, "rutile": 0.5},
                                   empty_fraction=0.05, seed=10))
    for name in ("phase_id", "grain_id", "quaternions", "boundary"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert (a.grain_id != c.grain_id).any()
    assert not np.allclose(a.quaternions, c.quaternions)


def test_phase_names_resolve_through_the_catalogue() -> None:
    spec = SpecimenSpec(phases={"ni": 0.25, "FE": 0.75}, texture=RandomTexture())
    assert spec.phase_names == ("Ni", "Fe")


@pytest.mark.parametrize("fields, field", [
    ({"scan_shape": (0, 10)}, "scan_shape"),
    ({"scan_shape": (10000, 10000)}, "scan_shape"),
    ({"scan_shape": (10.5, 10)}, "scan_shape"),
    ({"step_size": 0.0}, "step_size"),
    ({"phases": {}}, "phases"),
    ({"phases": {"Ni": 0.5, "Fe": 0.6}}, "phases"),
    ({"phases": {"Ni": -0.1, "Fe": 1.1}}, "phases"),
    ({"phases": {"Ni": 0.5, "ni": 0.5}}, "phases"),
    ({"phases": {"Unobtainium": 1.0}}, "phase"),
    ({"grain_size": 0.5}, "grain_size"),
    ({"grain_size_spread": 0.5}, "grain_size_spread"),
    ({"intragrain_spread": -1.0}, "intragrain_spread"),
    ({"intragrain_length": float("inf")}, "intragrain_length"),
    ({"empty_fraction": 1.0}, "empty_fraction"),
    ({"empty_size": 0.0}, "empty_size"),
    ({"seed": -1}, "seed"),
    ({"texture": "cube"}, "texture"),
])
def test_bad_specs_name_their_field(fields: dict, field: str) -> None:
    with pytest.raises(PhysicsInputError, match=f"^{field}:"):
        SpecimenSpec(**fields)


@pytest.mark.parametrize("make, field", [
    (lambda: ComponentTexture(euler=(0.0, 0.0, 0.0), spread=100.0), "texture.spread"),
    (lambda: ComponentTexture(euler=(0.0, 0.0)), "texture.euler"),
    (lambda: FibreTexture(crystal_direction=(0, 0, 0)), "texture.crystal_direction"),
    (lambda: FibreTexture(crystal_direction=(1, 1, 1), sample_direction=(0, 0)),
     "texture.sample_direction"),
])
def test_bad_textures_name_their_field(make, field: str) -> None:
    with pytest.raises(PhysicsInputError, match=f"^{field}:"):
        make()
