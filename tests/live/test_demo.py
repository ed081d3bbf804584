"""``diffstream demo``: the main job, end to end, exactly as a newcomer runs it (on a smaller scan)."""
from __future__ import annotations

import json

import numpy as np

from conftest import run_diffstream
from diffstream.engines import read_card, shipped_models

OUTPUTS = ("map.h5", "map.ang", "phase.png", "ipf_z.png", "confidence.png", "summary.json")


def test_shipped_models_are_listed_with_their_cards():
    assert "ebsd-lattice" in shipped_models()
    card = read_card(shipped_models()["ebsd-lattice"])
    assert card.input_shape == (60, 60) and card.input_dtype == "uint8"
    assert {"cF", "cI", "hP"} <= set(card.class_names) and len(card.class_names) == 14
    listed = run_diffstream("models", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "ebsd-lattice" in {record["name"] for record in json.loads(listed.stdout)}


def test_demo_maps_the_simulated_scan_and_scores_it_against_the_truth(tmp_path):
    out = tmp_path / "demo"
    result = run_diffstream("demo", "--headless", "--out", str(out), "--scan", "24x30", "--rate", "4000",
                            timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in OUTPUTS:
        assert (out / name).is_file(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames_received"] == 24 * 30
    assert summary["frames_dropped"] == 0 and summary["frames_rejected"] == 0
    assert summary["accuracy_vs_truth"] >= 0.9
    rows = [line for line in (out / "map.ang").read_text().splitlines() if not line.startswith("#")]
    assert len(rows) == 24 * 30
    assert "lattice accuracy against the simulator's truth" in result.stdout
    assert summary["median_disorientation_deg"] < 6.0  # the shipped grid heads (3.2° on the default scan)
    assert "from the truth (median disorientation" in result.stdout


def test_demo_screenshot_saves_the_window_with_the_filled_maps_offscreen(tmp_path, monkeypatch):
    from matplotlib.image import imread

    from diffstream.engines import load_card
    from diffstream.gui.colouring import to_uint8
    from diffstream.live.map_images import class_colours

    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    shot = tmp_path / "window.png"
    result = run_diffstream("demo", "--screenshot", str(shot), "--out", str(tmp_path / "demo"), "--scan", "24x30",
                            "--rate", "4000", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    pixels = to_uint8(imread(shot)[..., :3])
    assert pixels.shape[0] >= 500 and pixels.shape[1] >= 800
    colours, counts = np.unique(pixels.reshape(-1, 3), axis=0, return_counts=True)
    assert len(colours) > 200  # IPF colours vary point by point
    card = load_card("ebsd-lattice")
    phase_colours = dict(zip(card.class_names, to_uint8(class_colours(card.classes))))
    seen = {tuple(c): n for c, n in zip(colours, counts)}
    # Each specimen phase fills many scan points of the phase map: far more pixels than its 14×14 legend swatch.
    assert all(seen.get(tuple(phase_colours[name]), 0) >= 2000 for name in ("cF", "cI", "hP")), result.stderr[-2000:]
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary["frames_received"] == 24 * 30
