"""``diffstream refine``: a pattern file of Ni at known orientations is mapped by the shipped
``ebsd-lattice`` and refined; the refined map must hold those orientations to a fraction of a
degree where it says it matched, open in orix, and report against a ground truth. A 4D-STEM
file of LiNiO2 goes through ``sped-orientation`` and template matching the same way. Bad
requests are one-line errors; a stop request keeps what was refined."""
from __future__ import annotations

import dataclasses
import json
import threading
from pathlib import Path

import kikuchipy as kp
import numpy as np
import orix.io
import pytest
from orix.crystal_map import CrystalMap, PhaseList
from orix.quaternion import Orientation

from conftest import run_diffstream
from diffstream.engines.registry import load_card
from diffstream.live.scan_refinement import RefineError, refine_scan, refine_targets, write_refinement
from diffstream.live.truth import load_truth
from diffstream.trainer.physics.catalogue import get_phase_entry
from diffstream.trainer.physics.ebsd_patterns import simulate_ebsd_patterns
from diffstream.trainer.physics.master_pattern import load_emsoft_master_pattern
from diffstream.trainer.physics.refinement import MIN_NCC
from diffstream.trainer.physics.sped_indexing import MIN_RELIABILITY
from diffstream.trainer.physics.sped_patterns import simulate_sped_patterns, write_hspy

SCAN = (3, 4)
N = SCAN[0] * SCAN[1]


@pytest.fixture(scope="module")
def scan(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray]:
    """A 3×4 scan of Ni patterns on the training geometry as a kikuchipy h5ebsd file (the
    detector and beam energy in it), its ground truth as orix HDF5, and its orientations."""
    folder = tmp_path_factory.mktemp("refine")
    patterns = simulate_ebsd_patterns("Ni", N, 60, seed=4, pc=(0.5, 0.5, 0.5))
    signal = kp.signals.EBSD(patterns.patterns.reshape(*SCAN, 60, 60))
    signal.detector = patterns.geometry.to_kikuchipy()
    signal.metadata.set_item("Acquisition_instrument.SEM.beam_energy", patterns.voltage_kv)
    signal.save(folder / "ni.h5")
    y, x = np.mgrid[0:SCAN[0], 0:SCAN[1]].astype(float)
    truth = CrystalMap(rotations=patterns.rotations, x=x.ravel(), y=y.ravel(),
                       phase_list=PhaseList(get_phase_entry("Ni").phase()))
    orix.io.save(folder / "truth.h5", truth)
    return folder / "ni.h5", folder / "truth.h5", patterns.rotations.data


def test_refined_map_holds_the_true_orientations(scan: tuple[Path, Path, np.ndarray], tmp_path: Path) -> None:
    source, truth_path, quaternions = scan
    done = run_diffstream("refine", str(source), "--out", str(tmp_path), "--truth", str(truth_path),
                          "--no-progress")
    assert done.returncode == 0, done.stderr
    assert "points refined" in done.stdout
    xmap = orix.io.load(tmp_path / "refined.h5")
    refined = xmap.prop["refined"].astype(bool)
    matched = xmap.prop["matched"].astype(bool)
    assert refined.sum() >= N // 2 and (matched <= refined).all() and matched.any()
    assert {xmap.phases[pid].name for pid in np.unique(xmap.phase_id[refined])} == {"Ni"}
    laue = get_phase_entry("Ni").phase().point_group.laue
    errors = Orientation(quaternions[matched], symmetry=laue).angle_with(
        Orientation(xmap.rotations.data[matched], symmetry=laue), degrees=True)
    assert errors.max() < 0.5, errors
    summary = json.loads((tmp_path / "refined.json").read_text())
    assert summary["points_received"] == N and summary["points_refined"] == refined.sum()
    assert summary["phases"]["Ni"]["matched"] == matched.sum() and not summary["interrupted"]
    assert summary["truth"]["points_compared"] == refined.sum()
    assert summary["truth"]["median_disorientation_deg"] < 0.5 < summary["truth"]["network_median_disorientation_deg"]
    assert (tmp_path / "refined.ang").read_text().count("\n") > N
    assert (tmp_path / "refined_ipf_z.png").stat().st_size > 0


def test_a_stop_request_keeps_the_partial_map(scan: tuple[Path, Path, np.ndarray], tmp_path: Path) -> None:
    stop = threading.Event()
    stop.set()
    result = refine_scan(scan[0], "ebsd-lattice", progress=False, stop=stop)
    assert result.interrupted and not result.refined.any()
    paths = write_refinement(tmp_path, result, load_truth(scan[1]))
    summary = json.loads(paths["summary"].read_text())
    assert summary["interrupted"] and summary["points_refined"] == 0
    assert summary["truth"]["median_disorientation_deg"] is None


def test_phases_default_to_the_trained_orientation_phases() -> None:
    card = load_card("ebsd-lattice")
    names = [c.name for c in card.classes]
    assert refine_targets(card) == {"Ni": (names.index("cF"),), "Fe": (names.index("cI"),), "Ti": (names.index("hP"),)}
    assert refine_targets(card, [("cF", "Al"), ("cP", "Al")]) == {"Al": tuple(sorted([names.index("cF"),
                                                                                     names.index("cP")]))}
    assert refine_targets(card, [(None, "Ni")]) == {"Ni": tuple(range(len(names)))}
    with pytest.raises(RefineError, match="has no class 'Ni'"):
        refine_targets(card, [("Ni", "Ni")])
    with pytest.raises(RefineError, match="'Unobtainium' is not a catalogue phase"):
        refine_targets(card, [("cF", "Unobtainium")])


def test_dynamical_patterns_refined_against_every_named_phase(tmp_path: Path) -> None:
    """Patterns projected from kikuchipy's dynamical (EMsoft) Ni master pattern, which the
    kinematically trained network does not class as cF: refined against Ni and Fe wherever
    there is a pattern, each point keeps the better match, Ni, at the true orientation; the
    dynamical master pattern itself (--master) matches them better and lands closer."""
    emsoft = Path(kp.data.__path__[0]) / "emsoft_ebsd_master_pattern" / "ni_mc_mp_20kv_uint8_gzip_opts9.h5"
    patterns = simulate_ebsd_patterns("Ni", 8, 60, seed=11, pc=(0.5, 0.5, 0.5),
                                      master=load_emsoft_master_pattern(emsoft, 20.0))
    signal = kp.signals.EBSD(patterns.patterns.reshape(2, 4, 60, 60))
    signal.detector = patterns.geometry.to_kikuchipy()
    signal.metadata.set_item("Acquisition_instrument.SEM.beam_energy", 20.0)
    signal.save(tmp_path / "dynamical.h5")
    result = refine_scan(tmp_path / "dynamical.h5", "ebsd-lattice", phases=[(None, "Ni"), (None, "Fe")],
                         progress=False)
    matched = result.refined & (result.score >= MIN_NCC)
    assert matched.sum() >= 4 and set(np.array(result.phases)[result.phase_id[matched]]) == {"Ni"}
    laue = get_phase_entry("Ni").phase().point_group.laue
    errors = Orientation(patterns.rotations.data[matched], symmetry=laue).angle_with(
        Orientation(result.quaternions[matched], symmetry=laue), degrees=True)
    assert np.median(errors) < 0.5 and errors.max() < 1.0, errors
    dynamical = refine_scan(tmp_path / "dynamical.h5", "ebsd-lattice", phases=[(None, "Ni")], masters={"ni": emsoft},
                            progress=False)
    same = matched & dynamical.refined & (dynamical.score >= MIN_NCC)
    closer = Orientation(patterns.rotations.data[same], symmetry=laue).angle_with(
        Orientation(dynamical.quaternions[same], symmetry=laue), degrees=True)
    assert same.sum() >= 4 and np.median(dynamical.score[same]) > np.median(result.score[same])
    assert np.median(closer) < np.median(errors[np.isin(np.flatnonzero(matched), np.flatnonzero(same))])
    with pytest.raises(RefineError, match="master: Fe is not among the phases refined"):
        refine_scan(tmp_path / "dynamical.h5", "ebsd-lattice", phases=[(None, "Ni")], masters={"Fe": emsoft},
                    progress=False)


def test_bad_requests_are_one_line_errors(scan: tuple[Path, Path, np.ndarray], tmp_path: Path) -> None:
    source = str(scan[0])
    for argv, message in ((["no-such.h5"], "source: no file at no-such.h5"),
                          ([source, "--phases", "cF=Ni=Fe"], "expected PHASE or CLASS=PHASE items"),
                          ([source, "--master", "Ni"], "expected PHASE=FILE items"),
                          ([source, "--master", "Ni=absent.h5"], "master: no file at absent.h5"),
                          ([source, "--model", "sped-orientation"], "and a model of the same kind")):
        done = run_diffstream("refine", *argv, "--out", str(tmp_path / "out"), "--no-progress")
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and message in done.stderr


@pytest.fixture(scope="module")
def sped_scan(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, np.ndarray]:
    """A 3×4 scan of noisy LiNiO2 SPED frames (uint16 counts, as the detector sends them) as a
    HyperSpy file calibrated in Å⁻¹, and its ground truth as orix HDF5."""
    folder = tmp_path_factory.mktemp("refine_sped")
    patterns = simulate_sped_patterns("LiNiO2", 12, 128, seed=9)
    counts = np.clip(np.rint(patterns.patterns), 0, 65535).astype(np.uint16)
    write_hspy(dataclasses.replace(patterns, patterns=counts), folder / "lno.hspy", scan_shape=(3, 4))
    y, x = np.mgrid[0:3, 0:4].astype(float)
    truth = CrystalMap(rotations=patterns.rotations, x=x.ravel(), y=y.ravel(),
                       phase_list=PhaseList(get_phase_entry("LiNiO2").phase()))
    orix.io.save(folder / "truth.h5", truth)
    return folder / "lno.hspy", folder / "truth.h5", patterns.rotations.data


def test_a_4dstem_scan_is_indexed_by_template_matching(sped_scan: tuple[Path, Path, np.ndarray],
                                                       tmp_path: Path) -> None:
    source, truth_path, quaternions = sped_scan
    done = run_diffstream("refine", str(source), "--out", str(tmp_path), "--truth", str(truth_path),
                          "--no-progress")
    assert done.returncode == 0, done.stderr
    xmap = orix.io.load(tmp_path / "refined.h5")
    assert set(xmap.prop) >= {"index", "reliability", "reliable", "ci", "refined", "confidence", "received"}
    assert xmap.prop["refined"].all() and {xmap.phases[pid].name for pid in np.unique(xmap.phase_id)} == {"LiNiO2"}
    reliable = xmap.prop["reliable"].astype(bool)
    assert reliable.sum() >= 6 and (xmap.prop["reliability"][reliable] >= MIN_RELIABILITY).all()
    laue = get_phase_entry("LiNiO2").phase().point_group.laue
    errors = Orientation(quaternions, symmetry=laue).angle_with(Orientation(xmap.rotations.data, symmetry=laue),
                                                                degrees=True)
    assert errors[reliable].max() < 2.0 and np.median(errors) < 1.0, errors
    summary = json.loads((tmp_path / "refined.json").read_text())
    assert summary["kind"] == "4dstem" and summary["min_reliability"] == MIN_RELIABILITY
    assert summary["phases"]["LiNiO2"]["reliable"] == reliable.sum() and summary["points_refined"] == 12
    assert summary["truth"]["median_disorientation_deg"] < 1.0 < summary["truth"]["network_median_disorientation_deg"]
    assert (tmp_path / "refined_reliability.png").stat().st_size > 0 and not (tmp_path / "refined_ncc.png").exists()
    assert (tmp_path / "refined.ang").read_text().count("\n") > 12
    done = run_diffstream("refine", str(source), "--out", str(tmp_path / "pc"), "--pc", "0.5", "0.5", "0.5",
                          "--no-progress")
    assert done.returncode == 2 and "--master and --pc are for EBSD scans" in done.stderr
