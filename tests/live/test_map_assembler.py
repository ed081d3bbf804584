"""The map assembler: placement by scan index, codes, orientations, thread-safe snapshots
and the orix CrystalMap it hands to the file writers."""
from __future__ import annotations

import threading

import numpy as np
import orix.io
import pytest
from orix.quaternion import Rotation

from diffstream.engines.model_card import ModelClass
from diffstream.live.map_assembler import NOT_INDEXED, NOT_RECEIVED, MapAssembler

CLASSES = (
    ModelClass("cF", "m-3m", orientation=True),
    ModelClass("hP", "6/mmm", orientation=True),
    ModelClass("tI", "4/mmm", orientation=False),
)
SHAPE = (5, 7)
IDENTITY = np.array([1.0, 0.0, 0.0, 0.0])


def random_rotations(n: int, seed: int = 0) -> Rotation:
    """Uniform over SO(3): normalised 4-D Gaussian quaternions."""
    return Rotation(np.random.default_rng(seed).standard_normal((n, 4))).unit


def _batch(indices, usable=None, seed=0):
    """Class = index mod 3, class probability from the index, random rotations."""
    indices = np.asarray(indices)
    rotations = random_rotations(len(indices), seed)
    probability = (0.5 + 0.5 * indices / indices.max()).astype(np.float32)
    return dict(indices=indices, class_id=indices % 3, class_probability=probability, usable=usable,
                rotation_matrices=rotations.to_matrix().astype(np.float32)), rotations


def test_places_shuffled_batches_by_index_and_leaves_missing_points_unreceived():
    assembler = MapAssembler(SHAPE, CLASSES)
    rng = np.random.default_rng(1)
    placed = rng.permutation(35)[:30]
    for part in np.array_split(placed, 4):
        batch, _ = _batch(part)
        assembler.place(**batch)
    snap = assembler.snapshot()
    flat = snap.class_id.ravel()
    assert snap.scan_shape == SHAPE and snap.class_id.dtype == np.int16
    np.testing.assert_array_equal(flat[placed], placed % 3)
    missing = np.setdiff1d(np.arange(35), placed)
    assert (flat[missing] == NOT_RECEIVED).all()
    np.testing.assert_array_equal(snap.received.ravel(), flat != NOT_RECEIVED)
    assert snap.n_received == 30
    row, col = divmod(int(placed[0]), SHAPE[1])
    assert snap.class_id[row, col] == placed[0] % 3
    assert (snap.confidence.ravel()[missing] == 0).all()


def test_usable_threshold_confidence_and_orientation_only_for_oriented_classes():
    assembler = MapAssembler(SHAPE, CLASSES, usable_threshold=0.5)
    indices = np.arange(35)
    usable = np.where(indices < 10, 0.2, 0.9).astype(np.float32)
    batch, rotations = _batch(indices, usable)
    assembler.place(**batch)
    snap = assembler.snapshot()
    flat_class, flat_quat = snap.class_id.ravel(), snap.quaternions.reshape(-1, 4)
    assert (flat_class[:10] == NOT_INDEXED).all()
    np.testing.assert_array_equal(flat_class[10:], indices[10:] % 3)
    np.testing.assert_allclose(snap.confidence.ravel(), usable * batch["class_probability"], rtol=1e-6)
    oriented = (indices >= 10) & (indices % 3 != 2)
    np.testing.assert_allclose(flat_quat[~oriented], np.tile(IDENTITY, (np.sum(~oriented), 1)))
    dots = np.abs(np.sum(flat_quat[oriented] * rotations.data[oriented], axis=1))
    np.testing.assert_allclose(dots, 1.0, atol=1e-5)
    fractions = snap.class_fractions
    assert list(fractions) == ["not_indexed", "cF", "hP", "tI"]
    assert fractions["not_indexed"] == pytest.approx(10 / 35)
    assert sum(fractions.values()) == pytest.approx(1.0)


def test_quaternions_equal_orix_from_matrix():
    rotations = random_rotations(500, seed=3)
    matrices = rotations.to_matrix()
    assembler = MapAssembler((20, 25), (CLASSES[0],))
    assembler.place(np.arange(500), np.zeros(500, int), np.ones(500, np.float32), None, matrices)
    found = assembler.snapshot().quaternions.reshape(-1, 4)
    expected = Rotation.from_matrix(matrices).data
    assert (found[:, 0] >= 0).all()
    np.testing.assert_allclose(found, expected, atol=1e-6)
    np.testing.assert_allclose(np.abs(np.sum(found * rotations.data, axis=1)), 1.0, atol=1e-6)


def test_repeated_indices_overwrite_and_keep_counts_consistent():
    assembler = MapAssembler((2, 2), CLASSES)
    ones = np.ones(3, np.float32)
    assembler.place(np.array([0, 1, 0]), np.array([0, 1, 2]), ones, None, None)
    assembler.place(np.array([1, 3]), np.array([0, 0]), ones[:2], None, None)
    snap = assembler.snapshot()
    np.testing.assert_array_equal(snap.class_id.ravel(), [2, 0, NOT_RECEIVED, 0])
    assert snap.n_received == 3
    assert snap.class_fractions == pytest.approx({"not_indexed": 0, "cF": 2 / 3, "hP": 0, "tI": 1 / 3})


@pytest.mark.parametrize("change, message", [
    (dict(indices=np.array([0, 35])), "scan index"),
    (dict(class_id=np.array([0, 3])), "class id"),
    (dict(class_probability=np.ones(3, np.float32)), "batch of 2"),
    (dict(rotation_matrices=np.zeros((2, 2, 2))), "rotation_matrices"),
])
def test_malformed_batches_are_refused_whole(change, message):
    assembler = MapAssembler(SHAPE, CLASSES)
    batch = dict(indices=np.array([0, 1]), class_id=np.array([0, 1]), class_probability=np.ones(2, np.float32),
                 usable=None, rotation_matrices=None)
    with pytest.raises(ValueError, match=message):
        assembler.place(**{**batch, **change})
    assert assembler.snapshot().n_received == 0


def test_snapshot_is_a_read_only_copy():
    assembler = MapAssembler(SHAPE, CLASSES)
    before = assembler.snapshot()
    batch, _ = _batch(np.arange(35))
    assembler.place(**batch)
    assert (before.class_id == NOT_RECEIVED).all() and before.n_received == 0
    with pytest.raises(ValueError):
        before.class_id[0, 0] = 1


def test_rows_snapshots_equal_those_rows_of_a_whole_snapshot_with_the_whole_counts():
    """Property-style: after each of several random batches (repeats, NaN usable scores), any
    span of rows copied alone equals the same rows of a whole snapshot, counts included."""
    shape = (13, 9)
    assembler = MapAssembler(shape, CLASSES)
    rng = np.random.default_rng(11)
    for seed in range(8):
        indices = rng.integers(0, shape[0] * shape[1], rng.integers(1, 60))
        usable = rng.random(indices.size).astype(np.float32)
        usable[rng.random(indices.size) < 0.1] = np.nan
        batch, _ = _batch(indices + 1, usable=usable, seed=seed)
        assembler.place(**{**batch, "indices": indices})
        whole = assembler.snapshot()
        for _ in range(5):
            first = int(rng.integers(0, shape[0] + 1))
            stop = int(rng.integers(first, shape[0] + 3))  # past the last row: clipped as a slice is
            part = assembler.snapshot_rows(first, stop)
            lines = slice(first, min(stop, shape[0]))
            assert (part.first_row, part.stop_row, part.scan_shape) == (first, lines.stop, shape)
            assert part.whole == (first == 0 and lines.stop == shape[0])
            np.testing.assert_array_equal(part.class_id, whole.class_id[lines])
            np.testing.assert_array_equal(part.confidence, whole.confidence[lines])
            np.testing.assert_array_equal(part.quaternions, whole.quaternions[lines])
            assert part.n_received == whole.n_received == int(whole.received.sum())
            assert part.class_fractions == whole.class_fractions and part.class_names == whole.class_names
            view = whole.rows(first, stop)
            assert view.first_row == first and np.array_equal(view.class_id, part.class_id)
            assert view.n_received == part.n_received and view.class_fractions == part.class_fractions
        counts = np.bincount(whole.class_id[whole.received] + 2, minlength=len(CLASSES) + 2)
        expected = {"not_indexed": counts[0] / whole.n_received,
                    **{c.name: counts[i + 2] / whole.n_received for i, c in enumerate(CLASSES)}}
        assert whole.class_fractions == pytest.approx(expected, abs=0)


def test_rows_snapshots_are_read_only_copies_and_refuse_negative_rows():
    assembler = MapAssembler(SHAPE, CLASSES)
    before = assembler.snapshot_rows(1, 3)
    assembler.place(**_batch(np.arange(35))[0])
    assert before.class_id.shape == (2, SHAPE[1]) and (before.class_id == NOT_RECEIVED).all()
    assert before.n_received == 0 and assembler.snapshot_rows(1, 3).n_received == 35
    with pytest.raises(ValueError):
        before.confidence[0, 0] = 1
    assert assembler.snapshot_rows(4, 2).class_id.shape == (0, SHAPE[1])  # an empty span: the counts only
    with pytest.raises(ValueError, match="rows must be counted from 0"):
        assembler.snapshot_rows(-1, 2)


def test_snapshots_are_never_torn_by_a_concurrent_writer():
    """Batch k writes the whole map with class k mod 3, confidence and quaternion made from
    k: any snapshot mixing two batches would show more than one value."""
    shape = (30, 40)
    n = shape[0] * shape[1]
    assembler = MapAssembler(shape, CLASSES)
    indices = np.arange(n)
    batches = 400

    def write() -> None:
        for k in range(1, batches + 1):
            angle = np.full(n, k * 1e-3)
            matrices = Rotation.from_axes_angles([0, 0, 1], angle).to_matrix()
            assembler.place(indices, np.full(n, k % 2), np.full(n, k / batches, np.float32), None, matrices)

    writer = threading.Thread(target=write)
    writer.start()
    seen = set()
    while writer.is_alive() or not seen:
        snap = assembler.snapshot()
        if snap.n_received == 0:
            continue
        k = round(float(snap.confidence[0, 0]) * batches)
        seen.add(k)
        assert (snap.class_id == k % 2).all()
        assert (snap.confidence == np.float32(k / batches)).all()
        np.testing.assert_allclose(snap.quaternions[..., 0], np.cos(k * 1e-3 / 2), atol=1e-6)
        assert snap.class_fractions[CLASSES[k % 2].name] == 1.0
    writer.join()
    assert len(seen) > 1


def test_crystal_map_has_a_phase_per_class_and_round_trips_through_orix_hdf5(tmp_path):
    assembler = MapAssembler(SHAPE, CLASSES)
    indices = np.arange(30)
    batch, _ = _batch(indices, usable=np.where(indices < 5, 0.1, 0.9))
    assembler.place(**batch)
    xmap = assembler.to_crystal_map(step_size=0.5)
    assert xmap.shape == SHAPE and xmap.dx == 0.5
    assert [(pid, p.name, p.point_group.name) for pid, p in xmap.phases if pid >= 0] == [
        (0, "cF", "m-3m"), (1, "hP", "6/mmm"), (2, "tI", "4/mmm")]
    assert xmap.phases[-1].name == "not_indexed"
    assert (xmap.phase_id[:5] == -1).all() and (xmap.phase_id[30:] == -1).all()
    np.testing.assert_array_equal(xmap.phase_id[5:30], indices[5:] % 3)
    np.testing.assert_array_equal(xmap.prop["received"], np.arange(35) < 30)
    orix.io.save(tmp_path / "map.h5", xmap)
    back = orix.io.load(tmp_path / "map.h5")
    assert back.phases.names == xmap.phases.names
    np.testing.assert_array_equal(back.phase_id, xmap.phase_id)
    np.testing.assert_allclose(back.rotations.data, xmap.rotations.data, atol=1e-6)
    np.testing.assert_allclose(back.prop["confidence"], xmap.prop["confidence"])
