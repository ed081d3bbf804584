"""Ground truth from a saved specimen, and the accuracy and orientation error of a map
scored against it."""
from __future__ import annotations

import numpy as np
import pytest
from orix.quaternion import Rotation
from orix.quaternion.symmetry import Oh

from diffstream.engines.model_card import ModelClass
from diffstream.live.map_assembler import NOT_INDEXED, MapAssembler
from diffstream.live.truth import OUTSIDE_MODEL, TruthError, accuracy, load_truth, orientation_error_deg
from diffstream.trainer.physics.specimen import SpecimenSpec, make_specimen

LATTICE_CLASSES = (
    ModelClass("cF", "m-3m", orientation=True),
    ModelClass("cI", "m-3m", orientation=True),
    ModelClass("hP", "6/mmm", orientation=True),
)
SHAPE = (6, 8)


@pytest.fixture(scope="module")
def specimen():
    spec = SpecimenSpec(scan_shape=SHAPE, phases=(("Ni", 0.5), ("Ti", 0.5)), grain_size=3.0, empty_fraction=0.15,
                        seed=1)
    return make_specimen(spec)


@pytest.fixture(scope="module")
def truth(specimen, tmp_path_factory):
    path = tmp_path_factory.mktemp("truth") / "truth.h5"
    specimen.save(path)
    return load_truth(path)


def predicted_map(truth, classes, expected, rotations=None, received=None):
    """A map that predicts ``expected`` (codes) with the truth's orientations unless given."""
    assembler = MapAssembler(SHAPE, classes)
    indices = np.flatnonzero(np.ones(SHAPE, bool) if received is None else received)
    codes = expected.ravel()[indices]
    rotations = Rotation(truth.quaternions.reshape(-1, 4)) if rotations is None else rotations
    assembler.place(indices, np.maximum(codes, 0), np.ones(len(indices), np.float32),
                    np.where(codes == NOT_INDEXED, 0.0, 1.0), rotations[indices].to_matrix())
    return assembler.snapshot()


def test_truth_holds_the_specimen_on_its_grid(specimen, truth):
    assert truth.scan_shape == SHAPE
    np.testing.assert_array_equal(truth.phase_id, specimen.phase_id)
    assert truth.phase_names == {0: "Ni", 1: "Ti"}
    np.testing.assert_allclose(truth.quaternions, specimen.quaternions)


def test_lattice_model_expects_bravais_lattices_and_not_indexed_where_empty(specimen, truth):
    expected = truth.expected_class_id([c.name for c in LATTICE_CLASSES])
    np.testing.assert_array_equal(expected, np.select([specimen.phase_id == 0, specimen.phase_id == 1],
                                                      [0, 2], NOT_INDEXED))


def test_phase_model_expects_phase_names_and_unknown_phases_match_nothing(specimen, truth):
    expected = truth.expected_class_id(["Ti", "Ni"])
    np.testing.assert_array_equal(expected[specimen.phase_id == 0], 1)
    np.testing.assert_array_equal(expected[specimen.phase_id == 1], 0)
    only_cubic = truth.expected_class_id(["cF", "cI"])
    assert (only_cubic[specimen.phase_id == 1] == OUTSIDE_MODEL).all()


def test_perfect_prediction_scores_one_and_zero_disorientation(truth):
    names = [c.name for c in LATTICE_CLASSES]
    expected = truth.expected_class_id(names)
    snapshot = predicted_map(truth, LATTICE_CLASSES, expected)
    assert accuracy(truth, snapshot, names) == 1.0
    assert orientation_error_deg(truth, snapshot, LATTICE_CLASSES) == pytest.approx(0.0, abs=1e-3)


def test_symmetrically_equivalent_orientations_are_not_errors_but_real_offsets_are(truth):
    names = [c.name for c in LATTICE_CLASSES]
    expected = truth.expected_class_id(names)
    rotations = Rotation(truth.quaternions.reshape(-1, 4))
    cubic = (expected == 0).ravel()
    equivalent = Rotation(rotations.data.copy())
    equivalent[cubic] = Rotation(Oh[5]) * rotations[cubic]
    snapshot = predicted_map(truth, LATTICE_CLASSES, expected, rotations=equivalent)
    assert orientation_error_deg(truth, snapshot, LATTICE_CLASSES) == pytest.approx(0.0, abs=1e-3)
    tilted = Rotation.from_axes_angles([1, 0, 0], np.radians(2.0)) * rotations
    snapshot = predicted_map(truth, LATTICE_CLASSES, expected, rotations=tilted)
    assert orientation_error_deg(truth, snapshot, LATTICE_CLASSES) == pytest.approx(2.0, abs=1e-3)


def test_wrong_and_unreceived_points_lower_the_accuracy(truth):
    names = [c.name for c in LATTICE_CLASSES]
    expected = truth.expected_class_id(names)
    wrong = expected.copy()
    wrong.ravel()[:5] = np.where(expected.ravel()[:5] == 1, 0, 1)
    received = np.ones(SHAPE, bool)
    received.ravel()[-3:] = False
    snapshot = predicted_map(truth, LATTICE_CLASSES, wrong, received=received)
    assert accuracy(truth, snapshot, names) == pytest.approx(1 - 8 / 48)


def test_no_orientation_error_without_oriented_correct_points(truth):
    classes = tuple(ModelClass(c.name, c.point_group, orientation=False) for c in LATTICE_CLASSES)
    expected = truth.expected_class_id([c.name for c in classes])
    assert orientation_error_deg(truth, predicted_map(truth, classes, expected), classes) is None


def test_shape_mismatch_is_refused(truth):
    snapshot = MapAssembler((2, 2), LATTICE_CLASSES).snapshot()
    with pytest.raises(ValueError, match="truth.h5"):
        accuracy(truth, snapshot, ["cF", "cI", "hP"])


def test_missing_and_unreadable_truth_files_name_their_path(tmp_path):
    missing = tmp_path / "nowhere.h5"
    with pytest.raises(FileNotFoundError, match="nowhere.h5"):
        load_truth(missing)
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"not an hdf5 file")
    with pytest.raises(TruthError, match="garbage.h5") as error:
        load_truth(garbage)
    assert "\n" not in str(error.value)
