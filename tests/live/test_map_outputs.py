"""The scan's output files: orix HDF5 and .ang that read back, PNGs with content, a
summary with stable keys, and writes that never leave half a file."""
from __future__ import annotations

import json
import re

import numpy as np
import orix.io
import pytest
from matplotlib.colors import to_rgb
from matplotlib.image import imread
from orix.quaternion import Orientation, Rotation

from diffstream.engines.model_card import ModelCard, ModelClass
from diffstream.live import map_outputs
from diffstream.live.map_assembler import MapAssembler
from diffstream.live.map_outputs import FILE_NAMES, write_scan_outputs
from diffstream.live.truth import load_truth
from diffstream.trainer.physics.specimen import SpecimenSpec, make_specimen

CLASSES = (
    ModelClass("cF", "m-3m", orientation=True),
    ModelClass("hP", "6/mmm", orientation=True),
    ModelClass("tI", "4/mmm", orientation=False),
)
SHAPE = (6, 9)
SUMMARY_KEYS = ["scan_size", "frames_received", "frames_rejected", "frames_dropped", "rates", "latency_ms",
                "engine", "model", "points_mapped", "class_fractions", "accuracy_vs_truth",
                "median_disorientation_deg"]


def card(classes=CLASSES) -> ModelCard:
    return ModelCard(name="test-lattice", kind="ebsd", task=("lattice", "orientation"), input_shape=(60, 60),
                     input_dtype="uint8", classes=tuple(classes), outputs={})


@pytest.fixture(scope="module")
def assembler():
    """Three bands of classes down the rows; the first column not indexed; three points
    never received."""
    assembler = MapAssembler(SHAPE, CLASSES)
    indices = np.arange(SHAPE[0] * SHAPE[1] - 3)
    rows, cols = np.divmod(indices, SHAPE[1])
    rotations = Rotation(np.random.default_rng(0).standard_normal((len(indices), 4))).unit
    assembler.place(indices, rows // 2, np.full(len(indices), 0.9, np.float32), np.where(cols == 0, 0.1, 0.95),
                    rotations.to_matrix())
    return assembler


@pytest.fixture(scope="module")
def outputs(assembler, tmp_path_factory):
    summary = {"frames_received": 51, "frames_rejected": 1, "frames_dropped": 2, "engine": "onnxruntime-cpu",
               "rates": {"receive_fps": 900.0, "end_to_end_fps": np.float64(850.0)},
               "latency_ms": {"p50": 3.5, "p99": float("nan")}, "operator": "test"}
    return write_scan_outputs(tmp_path_factory.mktemp("scan"), assembler, card(), summary, step_size=0.5)


def test_all_six_files_are_written_and_no_temporary_is_left(outputs):
    assert set(outputs) == set(FILE_NAMES)
    folder = outputs["h5"].parent
    assert sorted(p.name for p in folder.iterdir()) == sorted(FILE_NAMES.values())
    assert all(path.stat().st_size > 0 for path in outputs.values())


def test_ang_has_a_row_per_scan_point_and_the_class_names(outputs):
    lines = outputs["ang"].read_text().splitlines()
    header = [line for line in lines if line.startswith("#")]
    rows = [line.split() for line in lines if line.strip() and not line.startswith("#")]
    assert len(rows) == SHAPE[0] * SHAPE[1] and {len(row) for row in rows} == {10}
    names = [re.match(r"# MaterialName\s+(\S+)", line) for line in header]
    assert sorted(m.group(1) for m in names if m) == ["cF", "hP", "tI"]
    assert any(re.match(r"# NROWS: 6$", line) for line in header)
    assert any(re.match(r"# NCOLS_ODD: 9$", line) for line in header)
    confidence_index = np.array([float(row[6]) for row in rows]).reshape(SHAPE)
    assert (confidence_index[:, 0] == -1).all() and (confidence_index.ravel()[-3:] == -1).all()
    np.testing.assert_allclose(confidence_index[:, 1:].ravel()[:-3], 0.9 * 0.95, atol=1e-5)


def test_ang_reads_back_with_orix_with_the_same_phases_and_rotations(outputs, assembler):
    expected = assembler.to_crystal_map(step_size=0.5)
    back = orix.io.load(outputs["ang"])
    assert back.shape == SHAPE and back.dx == pytest.approx(0.5)
    names_back = np.array([back.phases[i].name if i >= 0 else "-" for i in back.phase_id])
    names = np.array([expected.phases[i].name if i >= 0 else "-" for i in expected.phase_id])
    np.testing.assert_array_equal(names_back, names)
    for pid, phase in expected.phases:
        mask = expected.phase_id == pid
        if pid < 0 or not mask.any():
            continue
        written = Orientation(expected.rotations[mask], symmetry=phase.point_group)
        read = Orientation(back.rotations[mask], symmetry=phase.point_group)
        assert written.angle_with(read, degrees=True).max() < 1e-3


def test_h5_reads_back_with_orix(outputs, assembler):
    expected = assembler.to_crystal_map(step_size=0.5)
    back = orix.io.load(outputs["h5"])
    assert back.phases.names == expected.phases.names
    np.testing.assert_array_equal(back.phase_id, expected.phase_id)
    np.testing.assert_allclose(back.rotations.data, expected.rotations.data, atol=1e-6)
    np.testing.assert_array_equal(back.prop["received"], expected.prop["received"])


def _has_colour(image: np.ndarray, colour) -> bool:
    return bool(np.any(np.all(np.abs(image[..., :3] - np.array(colour)) < 1.5 / 255, axis=-1)))


def test_pngs_show_each_class_in_its_colour_and_vary(outputs):
    phase = imread(outputs["phase"])
    for colour in ("tab:blue", "tab:orange", "tab:green", "black", (0.5, 0.5, 0.5)):
        assert _has_colour(phase, to_rgb(colour)), colour
    ipf = imread(outputs["ipf_z"])[..., :3].reshape(-1, 3)
    assert len(np.unique(np.round(ipf * 255), axis=0)) > 50
    confidence = imread(outputs["confidence"])
    assert _has_colour(confidence, (0.5, 0.5, 0.5)) and confidence[..., :3].std() > 0.1


def test_summary_keys_values_and_strict_json(outputs):
    text = outputs["summary"].read_text()
    summary = json.loads(text, parse_constant=lambda name: pytest.fail(f"non-JSON constant {name}"))
    assert list(summary)[:len(SUMMARY_KEYS)] == SUMMARY_KEYS and list(summary)[len(SUMMARY_KEYS):] == ["operator"]
    assert summary["scan_size"] == {"rows": 6, "cols": 9, "points": 54}
    assert summary["model"] == "test-lattice" and summary["engine"] == "onnxruntime-cpu"
    assert summary["rates"] == {"end_to_end_fps": 850.0, "receive_fps": 900.0}
    assert summary["latency_ms"] == {"p50": 3.5, "p99": None}
    assert summary["points_mapped"] == 51
    assert set(summary["class_fractions"]) == {"not_indexed", "cF", "hP", "tI"}
    assert sum(summary["class_fractions"].values()) == pytest.approx(1.0)
    assert summary["accuracy_vs_truth"] is None and summary["median_disorientation_deg"] is None


def test_summary_scores_against_a_truth(tmp_path):
    spec = SpecimenSpec(scan_shape=(4, 5), phases=(("Ni", 0.6), ("Ti", 0.4)), grain_size=2.0, seed=2)
    specimen = make_specimen(spec)
    specimen.save(tmp_path / "truth.h5")
    truth = load_truth(tmp_path / "truth.h5")
    assembler = MapAssembler((4, 5), CLASSES)
    rotations = Rotation(specimen.quaternions.reshape(-1, 4))
    assembler.place(np.arange(20), np.where(specimen.phase_id.ravel() == 0, 0, 1), np.ones(20, np.float32), None,
                    rotations.to_matrix())
    paths = write_scan_outputs(tmp_path / "out", assembler, card(), {}, truth=truth)
    summary = json.loads(paths["summary"].read_text())
    assert summary["accuracy_vs_truth"] == 1.0
    assert summary["median_disorientation_deg"] == pytest.approx(0.0, abs=1e-3)
    assert summary["frames_received"] is None and summary["rates"] == {"end_to_end_fps": None}


def test_an_interrupted_write_leaves_the_previous_file_and_no_temporary(tmp_path, assembler, monkeypatch):
    first = write_scan_outputs(tmp_path, assembler, card(), {})
    before = first["ipf_z"].read_bytes()

    def fail(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(map_outputs, "save_ipf_png", fail)
    with pytest.raises(KeyboardInterrupt):
        write_scan_outputs(tmp_path, assembler, card(), {})
    assert first["ipf_z"].read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_a_card_that_does_not_match_the_map_is_refused(tmp_path, assembler):
    with pytest.raises(ValueError, match="card"):
        write_scan_outputs(tmp_path, assembler, card(CLASSES[:2]), {})
