"""The Grad-CAM overlay of the pattern panel: offered only where torch is installed and the model
ships its torch program (.pt2), computed off the GUI thread for the newest frame, drawn over the
pattern and gone when turned off."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from diffstream.engines import shipped_models
from diffstream.gui import gradcam_overlay
from diffstream.gui.gradcam_overlay import LOADING, gradcam_offer
from diffstream.gui.pattern_panel import PatternPanel
from fixture_model import frame_of_class
from fixture_stream import Publisher, scan_classes

from .conftest import start

WAIT_MS = 120_000  # loading torch and the program takes seconds on the shared CPU
SHIPPED = "ebsd-lattice"  # ships ebsd-lattice.pt2 beside its ONNX file
needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="torch is not installed")




def test_the_offer_says_why_a_model_has_no_grad_cam(fixture_path, monkeypatch):
    assert gradcam_offer(str(fixture_path)) == (
        None, "Grad-CAM needs the model's torch program fixture.pt2 beside fixture.onnx; there is none")
    assert gradcam_offer("no-such-model")[0] is None
    monkeypatch.setattr(gradcam_overlay.importlib.util, "find_spec", lambda name: None)
    assert gradcam_offer(SHIPPED) == (None, "Grad-CAM needs torch, which is not installed here")


def test_the_box_is_disabled_with_the_reason_for_a_model_without_a_program(window, publisher, fixture_path):
    box = window.controls.gradcam
    assert not box.isEnabled() and box.toolTip() == "Grad-CAM: no model is loaded yet"
    start(window, publisher.url, str(fixture_path))
    assert window.session.running
    assert not box.isEnabled() and "fixture.pt2" in box.toolTip()
    box.setChecked(True)  # a disabled box cannot be ticked by the user; by code it draws nothing either
    assert not window.pattern_panel.gradcam.heat.isVisible()


@needs_torch
def test_the_panel_draws_the_newest_frames_grad_cam_over_it_and_removes_it(qapp, qtbot):
    panel = PatternPanel()
    qtbot.addWidget(panel)
    panel.show()
    overlay = panel.gradcam
    model = shipped_models()[SHIPPED]
    frames = [frame_of_class(k, (60, 60), seed=k) for k in range(3)]
    panel.show_frame("latest pattern", frames[0], "first")
    plain = panel.graphics.grab().toImage()
    overlay.set_model(model)
    assert overlay.note.text() == "" and not overlay.heat.isVisible()  # not asked for: nothing loads
    overlay.set_shown(True)
    assert overlay.note.text() == LOADING
    for k, frame in enumerate(frames[1:], 1):  # asked for while the program loads: only the newest counts
        panel.show_frame("latest pattern", frame, f"frame {k}")
    qtbot.waitUntil(lambda: overlay.heat.isVisible(), timeout=WAIT_MS)
    gradcam, names = overlay._gradcams[model]
    maps, logits = gradcam(frames[-1][None])
    assert overlay.heat.image.shape == (60, 60) and np.allclose(overlay.heat.image, maps[0])
    assert overlay.note.text() == f"Grad-CAM of {names[int(logits[0].argmax())]}, the predicted class"

    panel.show_frame("latest pattern", frames[0], "first")
    qtbot.waitUntil(lambda: np.allclose(overlay.heat.image, gradcam(frames[0][None])[0][0]), timeout=WAIT_MS)
    assert panel.graphics.grab().toImage() != plain  # the colour map is drawn over the pattern
    overlay.set_shown(False)
    assert not overlay.heat.isVisible() and overlay.note.text() == ""
    assert panel.graphics.grab().toImage() == plain
    panel.show_frame("latest pattern", None, "gone")
    assert not overlay.heat.isVisible()
    overlay.close()


@needs_torch
def test_ticking_the_box_overlays_the_latest_pattern_of_a_scan(window, qtbot):
    scan = (2, 3)
    publisher = Publisher(scan=scan, frame=(60, 60))
    try:
        start(window, publisher.url, SHIPPED)
        box = window.controls.gradcam
        assert box.isEnabled() and "ebsd-lattice.pt2" in box.toolTip()
        session = window.session
        publisher.announce_until(lambda: session.pipeline.receiver_stats().scan_id == "scan-1")
        publisher.frames(scan_classes(3, scan), range(scan[0] * scan[1]))
        qtbot.waitUntil(lambda: window.painted_points == scan[0] * scan[1], timeout=WAIT_MS)
        box.setChecked(True)
        overlay = window.pattern_panel.gradcam
        qtbot.waitUntil(lambda: overlay.heat.isVisible(), timeout=WAIT_MS)
        assert overlay.heat.image.shape == (60, 60) and overlay.heat.image.max() == pytest.approx(1.0)
        assert overlay.note.text().startswith("Grad-CAM of ")
        box.setChecked(False)
        assert not overlay.heat.isVisible()
    finally:
        publisher.close()
