"""``diffstream simulate`` end to end: the files it writes open in kikuchipy, HyperSpy and
orix and hold what the physics says they should."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import run_diffstream


def test_ebsd_patterns_match_kikuchipy_projection(tmp_path) -> None:
    import kikuchipy as kp

    from diffstream.trainer.physics.master_pattern import kinematical_master_pattern

    out = tmp_path / "p.h5"
    result = run_diffstream("simulate", "patterns", "--phase", "Ni", "--n", "16", "--size", "60",
                            "--clean", "--out", str(out))
    assert result.returncode == 0, result.stderr
    signal = kp.load(out)
    assert signal.data.shape == (16, 60, 60)
    assert signal.xmap.phases[0].name == "Ni"
    assert signal.detector.pc.shape == (16, 3)
    master = kinematical_master_pattern("Ni").to_kikuchipy()
    expected = master.get_patterns(signal.xmap.rotations, signal.detector, energy=20, compute=True,
                                   show_progressbar=False)
    for ours, theirs in zip(signal.data, expected.data):
        assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] >= 0.99


def test_noisy_ebsd_patterns_are_camera_integers(tmp_path) -> None:
    import kikuchipy as kp

    out = tmp_path / "noisy.h5"
    png = tmp_path / "gallery.png"
    result = run_diffstream("simulate", "patterns", "--phase", "Fe", "--n", "4", "--size", "40",
                            "--out", str(out), "--png", str(png))
    assert result.returncode == 0, result.stderr
    signal = kp.load(out)
    assert signal.data.dtype == np.uint8
    assert signal.data.std() > 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sped_patterns_hold_orientations(tmp_path) -> None:
    import hyperspy.api as hs

    out = tmp_path / "s.hspy"
    result = run_diffstream("simulate", "patterns", "--phase", "LiNiO2", "--kind", "4dstem", "--n", "5",
                            "--size", "64", "--out", str(out))
    assert result.returncode == 0, result.stderr
    signal = hs.load(out)
    assert signal.data.shape == (5, 64, 64)
    quaternions = np.asarray(signal.metadata.Simulation.orientations_wxyz)
    assert quaternions.shape == (5, 4)
    np.testing.assert_allclose(np.linalg.norm(quaternions, axis=1), 1.0, atol=1e-9)
    assert signal.metadata.Acquisition_instrument.TEM.beam_energy == 300.0


def test_specimen_is_an_orix_crystal_map(tmp_path) -> None:
    from orix import io

    out = tmp_path / "truth.h5"
    result = run_diffstream("simulate", "specimen", "--phases", "Ni:0.6,Ti:0.4", "--scan", "60x80",
                            "--grain-size", "8", "--out", str(out), "--png", str(tmp_path / "m.png"))
    assert result.returncode == 0, result.stderr
    xmap = io.load(out)
    assert xmap.shape == (60, 80)
    assert set(xmap.phases.names) == {"Ni", "Ti"}
    assert abs(np.mean(xmap.phase_id == xmap.phases.id_from_name("Ni")) - 0.6) < 0.1


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--phase", "Unobtainium"], "phase"),
        (["--phase", "Ni", "--pc", "1.5", "0.5", "0.5"], "pc"),
        (["--phase", "Ni", "--size", "0"], "shape"),
        (["--phase", "Ni", "--voltage", "-5"], "voltage"),
        (["--phase", "LiNiO2", "--kind", "4dstem", "--voltage", "0.001"], "voltage"),
        (["--phase", "Ni", "--n", "0"], "n"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, field) -> None:
    out = tmp_path / ("x.hspy" if "4dstem" in args else "x.h5")
    result = run_diffstream("simulate", "patterns", *args, "--out", str(out))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("diffstream: error: ")
    assert field in lines[0]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--phases", "Ni:0.5,Fe:0.2"], "phases"),
        (["--phases", "Ni:half"], "phases"),
        (["--phases", "Kryptonite:1"], "phase"),
        (["--scan", "0x10"], "scan_shape"),
        (["--scan", "ten-by-ten"], "scan"),
        (["--grain-size", "-1"], "grain_size"),
    ],
)
def test_bad_specimen_is_one_line_exit_2_and_writes_nothing(tmp_path, args, field) -> None:
    result = run_diffstream("simulate", "specimen", *args, "--out", str(tmp_path / "t.h5"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"diffstream: error: {field}")
    assert list(tmp_path.iterdir()) == []
