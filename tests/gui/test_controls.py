"""The window driven from its own controls (offscreen Qt): connect, patterns under the mouse,
IPF direction and confidence overlay, save, close mid-scan, and the states it shows for bad input."""
from __future__ import annotations

import json

import numpy as np
from orix import io as orix_io
from PySide6.QtCore import QPointF

from diffstream.gui.colouring import to_uint8
from diffstream.gui.controls import OPEN_MODEL
from diffstream.gui.map_window import MapWindow
from diffstream.gui.panels import MapPanel
from diffstream.live.commands.demo import free_tcp_port
from diffstream.live.map_images import class_point_groups, ipf_colours
from fixture_model import CLASSES, frame_of_class

from .conftest import start

NAMES = [c.name for c in CLASSES]
WAIT_MS = 20_000




def hover(panel: MapPanel, row: int, col: int) -> None:
    panel.graphics.scene().sigMouseMoved.emit(panel.view.mapViewToScene(QPointF(col + 0.5, row + 0.5)))


def screen_colour(window: MapWindow, image, panel: MapPanel, row: int, col: int) -> tuple[int, int, int]:
    """The colour of scan point (row, col) of ``panel`` in a grab of the whole window."""
    scene = panel.view.mapViewToScene(QPointF(col + 0.5, row + 0.5))
    at = panel.graphics.viewport().mapTo(window, panel.graphics.mapFromScene(scene))
    colour = image.pixelColor(at)
    return colour.red(), colour.green(), colour.blue()


def test_the_window_maps_from_its_controls_shows_patterns_saves_and_closes_mid_scan(
        window, qtbot, publisher, classes, fixture_path, tmp_path):
    session = window.session
    rows, cols = publisher.start.scan_shape
    start(window, publisher.url, str(fixture_path))
    assert session.running and window.controls.start.text() in ("Start", "Stop")
    publisher.announce_until(lambda: session.pipeline.receiver_stats().scan_id == "scan-1")
    publisher.frames(classes, range(30))
    qtbot.waitUntil(lambda: window.painted_points == 30 and window.colours.pending == 0, timeout=WAIT_MS)
    assert window.controls.start.text() == "Stop"
    assert "fixture" in window.status.engine.text() and "onnxruntime (cpu)" in window.status.engine.text()
    assert window.status.latency.text().startswith("latency ")

    # The screenshot shows the assembler's map: each sampled point in its class's legend colour.
    snapshot = session.pipeline.snapshot()
    image = window.grab().toImage()
    for index in range(0, rows * cols, 3):
        row, col = divmod(index, cols)
        code = int(snapshot.class_id[row, col])
        expected = window.legend.colours[NAMES[code] if code >= 0 else "not yet received"]
        assert screen_colour(window, image, window.phase_panel, row, col) == expected, index
    assert len({screen_colour(window, image, window.phase_panel, *divmod(i, cols)) for i in range(30)}) == 3

    # The latest pattern, then the pattern under the mouse, then a pinned one.
    latest = window.pattern_panel
    assert latest.heading.text() == "<b>latest pattern</b>"
    last = int(np.flatnonzero(snapshot.received.ravel())[-1])
    assert (latest.frame == frame_of_class(int(classes[last]), (24, 24), seed=last)).all()
    hover(window.ipf_panel, 0, 7)
    assert (latest.frame == frame_of_class(int(classes[7]), (24, 24), seed=7)).all()
    assert latest.caption.text().startswith(f"row 0, col 7: {NAMES[classes[7]]}, confidence 0.")
    window.phase_panel.clicked.emit(1, 2)
    window.phase_panel.graphics.scene().sigMouseMoved.emit(QPointF(-1000, -1000))
    assert latest.heading.text().startswith("<b>pinned pattern")
    assert (latest.frame == frame_of_class(int(classes[10]), (24, 24), seed=10)).all()
    hover(window.phase_panel, 5, 7)
    assert latest.frame is None and latest.caption.text() == "row 5, col 7: not yet received"

    # IPF along x: the fixture's identity orientation gets the x colour, the title follows.
    window.controls.direction.setCurrentText("IPF-X")
    qtbot.waitUntil(lambda: window.painted_points == 30 and window.colours.pending == 0, timeout=WAIT_MS)
    assert window.ipf_panel.heading.text() == "<b>IPF-X</b>"
    groups = dict(zip(NAMES, class_point_groups(CLASSES)))
    for index in range(30):
        x_colour = to_uint8(ipf_colours(np.array([[1.0, 0, 0, 0]]), groups[NAMES[classes[index]]], "x"))[0]
        assert tuple(window.ipf_panel.image[divmod(index, cols)]) == tuple(x_colour), index

    # Confidence as brightness darkens the phase map by each point's confidence.
    window.controls.overlay.setChecked(True)
    phase, confidence = window.colours.phase, snapshot.confidence
    expected = (phase * confidence[..., None]).astype(np.uint8)
    assert (window.phase_panel.image == expected).all() and not (window.phase_panel.image == phase).all()

    # Save: in the background, the message says where; an unwritable folder says why.
    window.save(str(tmp_path / "saved"))
    qtbot.waitUntil(lambda: window.status.message.text().startswith("saved to"), timeout=WAIT_MS)
    xmap = orix_io.load(tmp_path / "saved" / "map.h5")
    assert xmap.size == rows * cols and [n for n in xmap.phases.names if n != "not_indexed"] == NAMES
    assert (xmap.phase_id >= 0).sum() == 30
    assert json.loads((tmp_path / "saved" / "summary.json").read_text())["frames_received"] == 30
    (tmp_path / "blocked").write_text("a file, not a folder")
    window.save(str(tmp_path / "blocked" / "maps"))
    qtbot.waitUntil(lambda: "could not save to" in window.status.message.text(), timeout=WAIT_MS)

    # Closing while the scan runs stops the pipeline cleanly.
    worker = session.worker
    window.close()
    worker.join(timeout=30)
    assert not worker.is_alive() and worker.error is None
    (report,) = worker.reports
    assert report.summary["ended_by"] == "stopped" and report.summary["frames_received"] == 30


def test_a_server_that_does_not_answer_shows_connecting_and_retries(window, qtbot, fixture_path):
    url = f"tcp://127.0.0.1:{free_tcp_port()}"
    start(window, url, str(fixture_path))
    qtbot.waitUntil(lambda: window.status.state.text() == "connecting", timeout=WAIT_MS)
    assert window.status.message.text() == f"no answer from {url} yet; retrying"
    qtbot.wait(500)  # still trying, and the window still paints
    assert window.session.running and window.status.state.text() == "connecting"
    window.controls.start.trigger()  # the button reads Stop while mapping
    assert not window.session.running and window.controls.start.text() == "Start"
    start(window, "nonsense", str(fixture_path))
    assert not window.session.running
    assert "nonsense" in window.status.message.text()


def test_a_model_that_does_not_load_names_the_file_and_the_reason(window, tmp_path, publisher):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a model")
    start(window, publisher.url, str(bad))
    assert window.status.state.text() == "no model"
    assert str(bad) in window.status.message.text() and "not an ONNX file" in window.status.message.text()
    assert not window.session.running


def test_points_missing_when_the_scan_ends_are_marked_as_never_received(window, qtbot, publisher, classes,
                                                                        fixture_path):
    session = window.session
    rows, cols = publisher.start.scan_shape
    start(window, publisher.url, str(fixture_path))
    publisher.announce_until(lambda: session.pipeline.receiver_stats().scan_id == "scan-1")
    lost = {5, 17, 30, 47}
    publisher.frames(classes, [i for i in range(rows * cols) if i not in lost])
    publisher.end(rows * cols)
    never = f"never received {len(lost) / (rows * cols):.1%}"
    qtbot.waitUntil(lambda: window.legend is not None and window.legend.labels["never received"].text() == never,
                    timeout=WAIT_MS)
    assert window.legend.labels["not yet received"].text() == "not yet received 0.0%"
    magenta = window.legend.colours["never received"]
    for panel in (window.phase_panel, window.ipf_panel, window.confidence_panel):
        marked = {i for i in range(rows * cols) if tuple(panel.image[divmod(i, cols)]) == magenta}
        assert marked == lost
    assert "dropped 4" in window.status.counts.text()


def test_file_choices_open_non_blocking_dialogs_that_feed_the_controls(window, qtbot, fixture_path, tmp_path):
    model = window.controls.model
    model.activated.emit(model.findText(OPEN_MODEL))  # what choosing "open file…" does
    dialog = window.dialog
    assert dialog.isVisible() and not window.session.running  # the window goes on painting meanwhile
    dialog.fileSelected.emit(str(fixture_path))
    dialog.close()
    assert model.currentText() == str(fixture_path) and model.itemText(model.count() - 1) == OPEN_MODEL
    window.controls.save.trigger()
    window.dialog.fileSelected.emit(str(tmp_path / "maps"))
    window.dialog.close()
    assert window.session.save_message == "nothing to save: no scan has started yet"
    qtbot.waitUntil(lambda: window.status.message.text() == "nothing to save: no scan has started yet")
