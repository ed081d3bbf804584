"""``diffstream evaluate`` and the SPED export: a tiny quick-trained model of each kind is
exported and scored; the scores must have their keys and sane values, the confusion rows
must add up to the frames, the uint16 SPED graph must match torch, bad requests must be
one-line errors."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import kikuchipy
import numpy as np
import onnx
import pytest
import torch
from orix.quaternion import Rotation
from scipy import ndimage

from conftest import run_diffstream
from diffstream.engines.model_card import read_card, write_card
from diffstream.trainer.config import load_config
from diffstream.trainer.datasets import paper2_scores
from diffstream.trainer.evaluation import (
    EVALUATION_SEED_OFFSET,
    EvaluationError,
    disorientation_stats,
    equivalent_switches,
    euler_scores,
    evaluate_dose,
    evaluate_model,
    evaluate_voltage,
    half_turn_stats,
    lattice_system_accuracy,
    load_for_evaluation,
    precision_recall,
    simulate_split,
)
from diffstream.trainer.evaluation_axial import evaluate_axial, strained_master
from diffstream.trainer.evaluation_dynamical import evaluate_dynamical
from diffstream.trainer.evaluation_report import write_report, write_sweep_report
from diffstream.trainer.export import ExportWrapper, export_checkpoint, onnx_session, run_onnx
from diffstream.trainer.orientation import laue_operators, quaternions_to_matrices
from diffstream.trainer.physics.errors import PhysicsInputError
from diffstream.trainer.physics.sampling import random_quaternions, uniform_quaternions
from diffstream.trainer.sped_export import export_sped_checkpoint
from diffstream.trainer.training import load_checkpoint, model_from_checkpoint, train
from diffstream.trainer.view_ensemble import ViewEnsemble

CONFIGS = Path(__file__).resolve().parents[2] / "trainer" / "configs"


@pytest.fixture(scope="module")
def sped_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("sped")
    train(load_config(CONFIGS / "sped-orientation.toml", quick=True), folder / "run", progress=False)
    export_sped_checkpoint(folder / "run" / "best.pt", folder / "sped.onnx")
    return folder / "sped.onnx", folder / "run" / "best.pt"


@pytest.fixture(scope="module")
def lattice_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("lattice")
    train(load_config(CONFIGS / "ebsd-lattice.toml", quick=True), folder / "run", progress=False)
    export_checkpoint(folder / "run" / "best.pt", folder / "lattice.onnx")
    return folder / "lattice.onnx"


def test_sped_graph_takes_uint16_and_matches_torch(sped_model: tuple[Path, Path]) -> None:
    path, checkpoint = sped_model
    model = onnx.load(str(path))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.UINT16
    card = read_card(path)
    assert card.kind == "4dstem" and card.input_dtype == "uint16" and card.input_shape == (128, 128)
    assert [(c.name, c.point_group, c.orientation) for c in card.classes] == [("LiNiO2", "-3m", True)]
    assert card.training["history"] and card.training["history"][0]["epoch"] == 1
    assert card.preprocessing.startswith("inside the graph: cast uint16 frames to float32; resize (bilinear) to 64x64")
    assert "log(1 + counts)" in card.preprocessing and "Gaussian" not in card.preprocessing
    frames = np.random.default_rng(2).integers(0, 5000, (9, 128, 128)).astype(np.uint16)
    frames[0] = 0
    frames[1, 64, 64] = 65535  # a saturated direct beam
    ort = run_onnx(onnx_session(path, threads=1), frames, batch=4)
    wrapper = ExportWrapper(model_from_checkpoint(load_checkpoint(checkpoint))).eval()
    with torch.no_grad():
        reference = wrapper(torch.from_numpy(frames.astype(np.int32)))
    for ours, theirs in zip(ort, reference):
        assert np.abs(ours - theirs.numpy()).max() <= 1e-4


def test_views_export_for_sped_and_not_for_ebsd(sped_model: tuple[Path, Path], lattice_model: Path,
                                               tmp_path: Path) -> None:
    """``--views 8`` puts the view ensemble in a 4D-STEM graph (uint16 in, ONNX Runtime = torch)
    and says so on the card; an EBSD checkpoint refuses it in one line."""
    card = export_sped_checkpoint(sped_model[1], tmp_path / "views.onnx", views=8)
    assert "runs on 8 views of each frame" in card.preprocessing
    frames = np.random.default_rng(6).integers(0, 5000, (5, 128, 128)).astype(np.uint16)
    ort = run_onnx(onnx_session(tmp_path / "views.onnx", threads=1), frames, batch=4)
    checkpoint = load_checkpoint(sped_model[1])
    ensemble = ViewEnsemble(ExportWrapper(model_from_checkpoint(checkpoint)).eval(), 8, laue_operators("-3m"))
    with torch.no_grad():
        reference = ensemble(torch.from_numpy(frames.astype(np.int32)))
    for ours, theirs in zip(ort, reference):
        assert ours.shape == tuple(theirs.shape) and np.abs(ours - theirs.numpy()).max() <= 1e-4
    done = run_diffstream("export", str(lattice_model.parent / "run" / "best.pt"), "--out",
                          str(tmp_path / "ebsd.onnx"), "--views", "8")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "views:" in done.stderr, done.stderr
    assert not (tmp_path / "ebsd.onnx").exists()


def test_disorientation_stats_count_the_frames_within_ten_degrees() -> None:
    """Turns about the triad of -3m: 40° stays 40° (the next equivalent is 80° away)."""
    angles = np.radians([1.0, 5.0, 20.0, 40.0])
    quaternions = np.stack([np.cos(angles / 2), 0 * angles, 0 * angles, np.sin(angles / 2)], axis=1)
    stats = disorientation_stats(np.tile(np.eye(3), (4, 1, 1)), quaternions, "-3m")
    assert stats["within_10deg"] == 0.5 and stats["median"] == pytest.approx(12.5, abs=1e-3)


def test_half_turn_stats_split_the_twin_from_the_rest() -> None:
    """Two frames answered with the truth turned by 180° about the beam, two turned 20° about
    the sample's x axis: the twins count as right and keep the beam direction; the tilts tip
    the beam by 20°."""
    truth = Rotation(uniform_quaternions(4, np.random.default_rng(1)))
    tilt = Rotation.from_axes_angles([1, 0, 0], np.radians(20)).to_matrix()[0]
    half_turn = np.diag([-1.0, -1.0, 1.0])
    predicted = np.concatenate([truth[:2].to_matrix() @ half_turn, truth[2:].to_matrix() @ tilt])
    stats = half_turn_stats(predicted, truth.data, "-3m")
    assert disorientation_stats(predicted[:2], truth.data[:2], "-3m")["median"] > 10
    assert stats["within_10deg"] == 0.5 and stats["on_twin"] == 1.0
    assert stats["median"] == pytest.approx(10.0, abs=1e-3)  # 0, 0, 20, 20
    assert stats["beam_direction_median_deg"] == pytest.approx(10.0, abs=1e-3)


def test_sped_evaluation(sped_model: tuple[Path, Path]) -> None:
    result = evaluate_model(sped_model[0], frames=8)
    assert result["kind"] == "4dstem" and result["frames"] == 8 and result["split"] == "test"
    assert result["data_seed"] == 1003
    assert 0 <= result["median_disorientation_deg"] <= result["p95_disorientation_deg"] <= 180
    assert 0 <= result["mean_disorientation_deg"] <= 180 and 0 <= result["within_10deg"] <= 1
    assert result["half_turn"]["median"] <= result["median_disorientation_deg"]
    assert result["half_turn"]["within_10deg"] >= result["within_10deg"]
    for key in ("euler", "euler_raw"):
        assert result[key]["mae_deg"] >= 0 and result[key]["mse_deg2"] >= result[key]["mae_deg"] ** 2 - 1e-6
        assert result[key]["r2"] <= 1
    assert 0 <= result["confidence_accuracy"] <= 1
    with pytest.raises(EvaluationError, match="no blind materials"):
        evaluate_model(sped_model[0], blind=True)


def test_lattice_card_names_the_background_removal(lattice_model: Path) -> None:
    text = read_card(lattice_model).preprocessing
    assert text.startswith("inside the graph: cast uint8 frames to float32; resize (bilinear) to 60x60")
    assert "Gaussian blur of sigma 7.5 px" in text and "log" not in text


def test_lattice_evaluation(lattice_model: Path) -> None:
    for blind in (False, True):
        result = evaluate_model(lattice_model, blind=blind, frames=8)
        assert 0 <= result["accuracy"] <= 1
        materials = ["Al"] if blind else ["Ni", "Fe", "Ti"]
        assert sorted(result["materials"]) == sorted(materials) and result["frames"] == 8 * len(materials)
        by_material = np.array(result["confusion_by_material"])
        assert (by_material.sum(axis=1) == 8).all()
        confusion = np.array(result["confusion"])
        assert confusion.sum() == result["frames"]
        assert np.trace(confusion) / confusion.sum() == pytest.approx(result["accuracy"], abs=1e-4)
        for name, row in result["per_class"].items():
            assert row["frames"] == confusion[result["classes"].index(name)].sum()
        assert result["accuracy"] <= result["lattice_system_accuracy"] <= 1
    assert set(result["per_class"]) >= {"cF"}
    test = evaluate_model(lattice_model, frames=8)
    assert set(test["disorientation_deg"]) == {"Ni", "Fe", "Ti"}
    assert all(0 <= s["median"] <= s["p95"] <= 180 for s in test["disorientation_deg"].values())


def test_refined_evaluation(lattice_model: Path) -> None:
    """The quick model's orientations are far off; refinement against the master patterns the
    frames came from must bring most of them close, and say how many it matched."""
    result = evaluate_model(lattice_model, frames=6, refine=True)
    refined = result["refined_disorientation_deg"]
    assert set(refined) == set(result["disorientation_deg"]) == {"Ni", "Fe", "Ti"}
    for name, stats in refined.items():
        assert stats["frames"] == 6 and 0 <= stats["matched"] <= 1 and 0 <= stats["from_dictionary"] <= 1
        assert stats["frames_per_second"] > 0
        assert stats["median"] < min(2.0, result["disorientation_deg"][name]["median"]), (name, stats)
    with pytest.raises(EvaluationError, match="test materials; leave out --blind"):
        evaluate_model(lattice_model, blind=True, frames=2, refine=True)


def test_refined_sped_evaluation(sped_model: tuple[Path, Path]) -> None:
    """The quick model has learnt next to nothing of the orientation; template matching, with
    its answers among the candidates, must index most frames within a degree, and the
    reliable ones within two."""
    result = evaluate_model(sped_model[0], frames=12, refine=True)
    stats = result["refined_disorientation_deg"]["LiNiO2"]
    assert stats["frames"] == 12 and stats["frames_per_second"] > 0
    assert stats["median"] < min(1.0, result["median_disorientation_deg"]), stats
    kept = stats["reliable"]
    assert 0.5 <= kept["share"] <= 1 and kept["frames"] == round(12 * kept["share"]) and kept["p95"] < 2.0
    assert kept["euler"]["r2"] > 0.9
    assert stats["euler"]["r2"] > result["euler"]["r2"] and stats["euler"]["mae_deg"] >= 0
    done = run_diffstream("evaluate", "--model", str(sped_model[0]), "--n", "4", "--refine")
    assert done.returncode == 0, done.stderr
    assert "LiNiO2 template matching: median" in done.stdout and "reliable" in done.stdout


def test_precision_and_recall() -> None:
    confusion = np.array([[3, 1, 0], [0, 0, 0], [2, 0, 4]])
    scores = precision_recall(confusion, ("a", "b", "c"))
    assert scores["a"] == {"precision": 0.6, "recall": 0.75, "frames": 4}
    assert scores["b"] == {"precision": 0.0, "recall": None, "frames": 0}
    assert scores["c"] == {"precision": 1.0, "recall": round(4 / 6, 4), "frames": 6}


def test_lattice_system_accuracy_forgives_the_centring_only() -> None:
    classes = ("aP", "mP", "mC", "oP", "oC", "oI", "oF", "tP", "tI", "hP", "hR", "cP", "cI", "cF")
    confusion = np.zeros((14, 14), dtype=np.int64)
    index = {name: i for i, name in enumerate(classes)}
    for truth, predicted, frames in [("cI", "cF", 3), ("cP", "cI", 2), ("mC", "mP", 1), ("tI", "tI", 4),
                                     ("hP", "hR", 5), ("tP", "cP", 6), ("oF", "oP", 7)]:
        confusion[index[truth], index[predicted]] += frames
    assert lattice_system_accuracy(confusion, classes) == pytest.approx((3 + 2 + 1 + 4 + 7) / 28, abs=1e-4)


def test_euler_scores_forgive_symmetry_only_when_moved() -> None:
    quaternions = random_quaternions(200, 5)
    truth = quaternions_to_matrices(quaternions)
    operators = laue_operators("-3m")
    equivalent = operators[np.arange(200) % len(operators)] @ truth
    scores = euler_scores(equivalent, quaternions, "-3m")
    assert scores["euler"]["mae_deg"] < 1e-6 and scores["euler"]["r2"] == pytest.approx(1.0)
    assert scores["euler_raw"]["mae_deg"] > 10 and scores["euler_raw"]["r2"] < 0.9
    target = np.array([[10.0, 20.0, 30.0], [50.0, 60.0, 70.0]])
    assert paper2_scores(target + 2.0, target) == {"mae_deg": 2.0, "mse_deg2": 4.0, "r2": pytest.approx(1 - 4 / 400)}


def test_equivalent_switches_count_alternation_not_error() -> None:
    grains = np.repeat(np.arange(10), 20)
    grains[:5] = -1  # points without a pattern are not counted
    quaternions = random_quaternions(10, 6)[np.maximum(grains, 0)]
    truth = quaternions_to_matrices(quaternions)
    operators = laue_operators("-3m")
    rng = np.random.default_rng(0)
    per_grain = operators[(np.arange(10) % 6)[np.maximum(grains, 0)]] @ truth  # one equivalent per grain
    assert equivalent_switches(per_grain, quaternions, grains, "-3m") == 0.0
    alternating = operators[rng.integers(0, 2, len(grains))] @ truth  # identity or the second operator
    assert 0.3 < equivalent_switches(alternating, quaternions, grains, "-3m") <= 0.5
    assert equivalent_switches(per_grain, quaternions, np.full(len(grains), -1), "-3m") == 0.0


def test_report(sped_model: tuple[Path, Path], tmp_path: Path) -> None:
    result = evaluate_model(sped_model[0], frames=8)
    report = write_report(result, load_for_evaluation(sped_model[0]), tmp_path)
    assert report["files"] == ["training_curves.png", "ipf_maps.png"] and report["skipped"] == {}
    for name in report["files"]:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    stored = json.loads((tmp_path / "metrics.json").read_text())
    assert stored["median_disorientation_deg"] == result["median_disorientation_deg"]
    assert 0 <= stored["specimen_median_disorientation_deg"] <= 180


def test_patterns_project_the_frames_from_the_kind_asked_for(lattice_model: Path, monkeypatch) -> None:
    """``--patterns``: the model's own kind at its own half size gives the plain evaluation
    exactly; the other kind, the same plan from other master patterns, other scores."""
    from diffstream.trainer import evaluation

    monkeypatch.setitem(evaluation.SIMULATION_HALF_SIZES, "kinematical", 32)  # the quick model's own
    monkeypatch.setitem(evaluation.SIMULATION_HALF_SIZES, "dynamical", 24)    # coarse: seconds, not a minute
    plain = evaluate_model(lattice_model, frames=3)
    same = evaluate_model(lattice_model, frames=3, patterns="kinematical")
    other = evaluate_model(lattice_model, frames=3, patterns="dynamical")
    assert plain["patterns"] == same["patterns"] == "kinematical" and other["patterns"] == "dynamical"
    assert same == plain
    assert other["frames"] == plain["frames"]
    assert other["disorientation_deg"] != plain["disorientation_deg"]


def test_cli_errors_are_one_line(sped_model: tuple[Path, Path]) -> None:
    for argv, message in ((["--model", "no-such-model"], "unknown model 'no-such-model'"),
                          (["--model", str(sped_model[0]), "--patterns", "dynamical"], "is not an EBSD model"),
                          (["--model", str(sped_model[0]), "--patterns", "dynamical", "--dose-sweep"],
                           "--patterns: scores a plain or --blind evaluation"),
                          (["--model", str(sped_model[0]), "--blind"], "no blind materials"),
                          (["--model", str(sped_model[0]), "--n", "0"], "n: must be a positive"),
                          (["--model", str(sped_model[0]), "--refine", "--dose-sweep"], "leave out the dose")):
        done = run_diffstream("evaluate", *argv, "--json")
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("diffstream: error: ")
        assert message in done.stderr


def test_cli_json(sped_model: tuple[Path, Path]) -> None:
    done = run_diffstream("evaluate", "--model", str(sped_model[0]), "--json", "--n", "4")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["frames"] == 4 and "median_disorientation_deg" in result


def test_shipped_sped_model_fits_the_simulator_and_is_listed() -> None:
    from diffstream.engines import shipped_models
    from diffstream.live.scan_render import DEFAULT_SPED_GEOMETRY

    path = shipped_models()["sped-orientation"]
    assert path.stat().st_size <= 20 * 2**20
    listed = run_diffstream("models", "--json")
    assert listed.returncode == 0, listed.stderr
    card = {r["name"]: r["card"] for r in json.loads(listed.stdout)}["sped-orientation"]
    assert card["kind"] == "4dstem" and card["input_dtype"] == "uint16"
    assert tuple(card["input_shape"]) == DEFAULT_SPED_GEOMETRY.shape  # detector-sim --kind 4dstem's frames
    assert [c["name"] for c in card["classes"]] == ["LiNiO2"] and card["classes"][0]["orientation"]
    assert 0 <= card["metrics"]["test"]["median_disorientation_deg"] <= 180


def test_dose_changes_only_the_noise() -> None:
    config = load_config(CONFIGS / "ebsd-lattice.toml", quick=True)
    data = dataclasses.replace(config.data, test_patterns_per_phase=8)
    low, high = simulate_split(data, "test", dose=5.0), simulate_split(data, "test", dose=5000.0)
    assert np.array_equal(low.quaternions, high.quaternions) and np.array_equal(low.pc, high.pc)
    assert np.array_equal(low.lattice, high.lattice)
    # the gain follows the dose, so the mean level holds and only the shot noise grows
    assert low.frames.mean() == pytest.approx(high.frames.mean(), rel=0.05)
    assert low.frames.std() > 1.5 * high.frames.std()


def test_dose_sweep(lattice_model: Path, tmp_path: Path) -> None:
    result = evaluate_dose(lattice_model, (5.0, 5000.0), frames=4)
    assert result["data_seed"] == 1 + EVALUATION_SEED_OFFSET and result["frames_per_material"] == 4
    assert result["sweep"] == "dose" and [row["dose"] for row in result["rows"]] == [5.0, 5000.0]
    for row in result["rows"]:
        assert row["frames"] == 12 and 0 <= row["accuracy"] <= 1
        assert set(row["median_disorientation_deg"]) == {"Ni", "Fe", "Ti"}
        assert all(0 <= angle <= 180 for angle in row["median_disorientation_deg"].values())
    report = write_sweep_report(result, tmp_path)
    assert report["files"] == ["dose.png"] and (tmp_path / "dose.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "metrics.json").read_text())["rows"] == result["rows"]
    with pytest.raises(EvaluationError, match="positive electrons per pixel"):
        evaluate_dose(lattice_model, (0.0, 10.0), frames=4)


def test_voltage_changes_only_the_pattern() -> None:
    """The same orientations, pattern centres and labels at every voltage, and each frame is
    the projection of its own voltage's master pattern (whose bands narrow as it rises)."""
    from diffstream.trainer.physics.ebsd_projection import project_patterns
    from diffstream.trainer.physics.geometry import EBSDGeometry
    from diffstream.trainer.physics.master_pattern import kinematical_master_pattern

    config = load_config(CONFIGS / "ebsd-lattice.toml", quick=True)
    data = dataclasses.replace(config.data, test_patterns_per_phase=8, high_res_fraction=1.0)
    shards = {kv: simulate_split(dataclasses.replace(data, voltage_kv=kv), "test") for kv in (10.0, 30.0)}
    low, high = shards.values()
    assert np.array_equal(low.quaternions, high.quaternions) and np.array_equal(low.pc, high.pc)
    assert np.array_equal(low.lattice, high.lattice)
    rows = low.phase == "Ni"
    geometry = EBSDGeometry(shape=data.frame_shape).with_pc(low.pc[rows])
    clean = {kv: project_patterns(kinematical_master_pattern("Ni", kv, half_size=data.master_half_size),
                                  low.quaternions[rows], geometry).reshape(rows.sum(), -1) for kv in shards}

    def r(frames: np.ndarray, kv: float) -> np.ndarray:
        """Per frame, Pearson r with the clean pattern at ``kv``, the camera's background
        (a blur of σ = width/8, as the networks remove it) taken off first."""
        bands = frames - ndimage.gaussian_filter(frames.astype(float), (0, 7.5, 7.5))
        return np.array([np.corrcoef(f, c)[0, 1] for f, c in zip(bands.reshape(len(frames), -1), clean[kv])])

    assert (r(low.frames[rows], 10.0) > r(low.frames[rows], 30.0)).all()
    assert (r(high.frames[rows], 30.0) > r(high.frames[rows], 10.0)).all()


def test_voltage_sweep_on_blind_materials(lattice_model: Path, tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    result = evaluate_voltage(lattice_model, (15.0, 25.0), frames=4, blind=True)
    assert result["sweep"] == "voltage_kv" and result["split"] == "blind"
    assert [row["voltage_kv"] for row in result["rows"]] == [15.0, 25.0]
    for row in result["rows"]:
        assert row["frames"] == 4 and 0 <= row["accuracy"] <= 1
        assert row["accuracy_without_ordered_superstructures"] == row["accuracy"]  # the quick blind set is Al
    report = write_sweep_report(result, tmp_path)
    assert report["files"] == ["voltage.png"]
    assert plt.imread(tmp_path / "voltage.png").shape[1] == 600, "no oriented blind phase: the accuracy panel only"
    with pytest.raises(EvaluationError, match=r"voltages: need beam voltages in \[1, 40\] kV"):
        evaluate_voltage(lattice_model, (20.0, 200.0), frames=4)


def test_axial_sweep_uses_the_hexagonal_and_tetragonal_materials(lattice_model: Path, tmp_path: Path) -> None:
    import matplotlib.pyplot as plt

    result = evaluate_axial(lattice_model, (0.9, 1.1), frames=4)
    assert result["sweep"] == "c_scale" and result["split"] == "test"
    assert [row["c_scale"] for row in result["rows"]] == [0.9, 1.1]
    for row in result["rows"]:  # the quick model's materials are Ni, Fe and Ti: Ti alone is hP
        assert row["frames"] == 4 and set(row["per_material_accuracy"]) == {"Ti"}
        assert set(row["median_disorientation_deg"]) == {"Ti"}
    assert write_sweep_report(result, tmp_path)["files"] == ["axial.png"]
    assert plt.imread(tmp_path / "axial.png").shape[1] == 1080, "accuracy and disorientation panels"
    with pytest.raises(EvaluationError, match="c scales: need positive factors"):
        evaluate_axial(lattice_model, (1.0, 0.0), frames=4)


def test_strained_master_scales_c_alone_and_keeps_the_lattice() -> None:
    from diffstream.trainer.physics.catalogue import get_phase_entry
    from diffstream.trainer.physics.master_pattern import kinematical_master_pattern

    data = load_config(CONFIGS / "ebsd-lattice.toml", quick=True).data
    plain, stretched = strained_master("Sn", 1.0, data), strained_master("Sn", 1.2, data)
    catalogued = kinematical_master_pattern("Sn", data.voltage_kv, half_size=data.master_half_size)
    assert np.array_equal(plain.hemispheres, catalogued.hemispheres)
    before, after = plain.phase.structure.lattice, stretched.phase.structure.lattice
    assert after.a == pytest.approx(before.a) and after.c == pytest.approx(1.2 * before.c)
    assert not np.allclose(plain.hemispheres, stretched.hemispheres, atol=1e-3)
    a, _, c, *_ = get_phase_entry("Sn").lattice
    with pytest.raises(PhysicsInputError, match=r"Sn c/a 1\.000, within 5 % of 1\.000"):
        strained_master("Sn", a / c, data)


def test_dose_cli(lattice_model: Path, sped_model: tuple[Path, Path]) -> None:
    done = run_diffstream("evaluate", "--model", str(lattice_model), "--doses", "20,2000", "--n", "2")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "accuracy" in lines[1] and [line.split()[0] for line in lines[2:4]] == ["20", "2000"]
    done = run_diffstream("evaluate", "--model", str(lattice_model), "--voltages", "15,25", "--blind", "--n", "2")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "blind frames" in lines[0] and "beam voltage (kV)" in lines[1] and "without ordered" in lines[1]
    assert [line.split()[0] for line in lines[2:4]] == ["15", "25"] and len(lines[2].split()) == 3
    done = run_diffstream("evaluate", "--model", str(lattice_model), "--c-scales", "0.9,1.1", "--n", "2")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "c scale (a and b kept)" in lines[1] and [line.split()[0] for line in lines[2:4]] == ["0.9", "1.1"]
    for argv, message in ((["--model", str(lattice_model), "--doses", "ten"], "doses: expected comma-separated"),
                          (["--model", str(lattice_model), "--axial-sweep", "--blind"], "--blind: the dose and axial"),
                          (["--model", str(lattice_model), "--c-scales", "1", "--voltages", "20"], "one study"),
                          (["--model", str(lattice_model), "--doses", "-5"], "must be positive"),
                          (["--model", str(lattice_model), "--dose-sweep", "--blind"], "--blind: the dose and axial"),
                          (["--model", str(sped_model[0]), "--dose-sweep"], "for EBSD lattice models"),
                          (["--model", str(sped_model[0]), "--voltage-sweep"], "voltage study is for EBSD"),
                          (["--model", str(lattice_model), "--voltages", "20,60"], "voltages: need beam voltages"),
                          (["--model", str(lattice_model), "--voltages", "x"], "voltages: expected comma-separated"),
                          (["--model", str(lattice_model), "--doses", "10", "--voltages", "20"], "one study")):
        done = run_diffstream("evaluate", *argv, "--n", "2")
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith("diffstream: error: ") and message in done.stderr


EMSOFT_NI = Path(kikuchipy.data.__path__[0]) / "emsoft_ebsd_master_pattern" / "ni_mc_mp_20kv_uint8_gzip_opts9.h5"


def test_dynamical_comparison(lattice_model: Path) -> None:
    """Two rows over the same plan, the model's own master patterns (kinematical) first; the
    EMsoft file must be Ni's crystal."""
    result = evaluate_dynamical(lattice_model, {"Ni": EMSOFT_NI}, frames=4)
    assert result["split"] == "test" and [row["master"] for row in result["rows"]] == ["kinematical", "EMsoft"]
    for row in result["rows"]:
        assert row["frames"] == 4 and sum(row["classed_as"]["Ni"].values()) == 4
        assert row["per_material_accuracy"]["Ni"] == row["accuracy"] == row["classed_as"]["Ni"].get("cF", 0) / 4
        assert set(row["median_disorientation_deg"]) == {"Ni"}
    for files, message in (({"Fe": EMSOFT_NI}, r"holds space group Fm-3m \(No. 225\); Fe is Im-3m"),
                           ({"W": EMSOFT_NI}, "must all be training materials"),
                           ({"Ni": EMSOFT_NI, "Al": EMSOFT_NI}, "or all blind ones")):
        with pytest.raises(EvaluationError, match=message):
            evaluate_dynamical(lattice_model, files, frames=2)


def _relabelled_mixed(model: Path, out: Path) -> Path:
    """``model`` (the same network) with a card saying its frames came from mixed master
    patterns: what a mixed model's evaluation makes of the card, without training one."""
    onnx_model = onnx.load(str(model))
    card = read_card(model)
    text = card.training["config_text"].replace("[data]\n", "[data]\nmaster_simulation = \"mixed\"\n", 1)
    write_card(onnx_model, dataclasses.replace(card, training={**card.training, "config_text": text}))
    onnx.save(onnx_model, str(out))
    return out


def test_dynamical_comparison_of_a_mixed_model(lattice_model: Path, tmp_path: Path) -> None:
    """A model trained on both kinds gets a row for each over the same plan: its kinematical
    row is the kinematical model's row, its Bloch-wave row another; refinement, which matches
    a frame against one master pattern, is refused in one line."""
    mixed = _relabelled_mixed(lattice_model, tmp_path / "mixed.onnx")
    rows = evaluate_dynamical(mixed, {"Ni": EMSOFT_NI}, frames=4)["rows"]
    assert [row["master"] for row in rows] == ["kinematical", "dynamical", "EMsoft"]
    plain = evaluate_dynamical(lattice_model, {"Ni": EMSOFT_NI}, frames=4)["rows"]
    assert rows[0] == plain[0] and rows[2] == plain[1]
    assert rows[1]["median_disorientation_deg"] != rows[0]["median_disorientation_deg"]
    with pytest.raises(EvaluationError, match="refinement matches a frame against one of them"):
        evaluate_model(mixed, frames=2, refine=True)


def test_dynamical_cli(lattice_model: Path) -> None:
    done = run_diffstream("evaluate", "--model", str(lattice_model), "--master", f"Ni={EMSOFT_NI}", "--n", "2")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1].split()[0] == "kinematical:" and lines[3].split()[0] == "EMsoft:"
    assert lines[2].split()[:3] == ["Ni", "classed", "as:"]
    for argv, message in ((["--master", f"Ni={EMSOFT_NI}", "--blind"], "--master: a comparison of its own"),
                          (["--master", "Ni"], "expected PHASE=FILE"),
                          (["--master", "Ni=/no/such.h5"], "no file at /no/such.h5")):
        done = run_diffstream("evaluate", "--model", str(lattice_model), *argv, "--n", "2")
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert message in done.stderr
