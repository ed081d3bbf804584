"""The live window for real (offscreen Qt) on a live pipeline with the brightness fixture model,
fed over a loopback socket with frames whose classes are known."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np
import shiboken6
from PySide6.QtCore import QPointF, QTimer
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QApplication

from diffstream.engines import create_engine
from diffstream.gui.colouring import to_uint8
from diffstream.gui.map_window import MapWindow
from diffstream.gui.session import Session
from diffstream.gui.window import GuiUnavailable, display_available, run_window
from diffstream.live.map_images import NOT_RECEIVED_RGB, class_point_groups, ipf_colours
from diffstream.live.pipeline import LivePipeline
from diffstream.live.receiver import REJECT_REASONS, Receiver, ReceiverStats
from fixture_model import CLASSES, fixture_card

NAMES = [c.name for c in CLASSES]
WAIT_MS = 20_000
"""Longest wait for anything the pipeline or the window should do (it takes well under a second)."""
POLL_MS = 50


def make_pipeline(publisher, fixture_path, out_dir) -> LivePipeline:
    return LivePipeline(Receiver(publisher.url, batch_size=8, max_wait_s=0.01), create_engine(fixture_path),
                        model_name="fixture", out_dir=out_dir)


def opened(pipeline: LivePipeline):
    return lambda: pipeline.receiver_stats().scan_id == "scan-1"


@contextmanager
def ctrl_c_when(state: str) -> Iterator[dict[str, str]]:
    """While the block runs, press Ctrl-C (SIGINT to this process) once the live window shows
    ``state``, or after WAIT_MS so that the test ends anyway; yields the window's message then."""
    seen: dict[str, str] = {}
    polls = []

    def poll() -> None:
        polls.append(1)
        windows = [w for w in QApplication.topLevelWidgets() if isinstance(w, MapWindow) and w.isVisible()]
        if windows and windows[0].status.state.text() == state:
            seen["message"] = windows[0].status.message.text()
        elif len(polls) * POLL_MS < WAIT_MS:
            return
        timer.stop()
        os.kill(os.getpid(), signal.SIGINT)

    timer = QTimer()
    timer.timeout.connect(poll)
    timer.start(POLL_MS)
    try:
        yield seen
    finally:
        shiboken6.delete(timer)  # here, in the GUI thread, not by the garbage collector in some other thread


class FailingPipeline:
    """Stands in for a LivePipeline whose engine fails at once."""

    def __init__(self) -> None:
        self.engine = SimpleNamespace(card=fixture_card(), name="onnxruntime", device="cpu")
        self.model_name = "fixture"
        self.receiver = SimpleNamespace(url="tcp://127.0.0.1:5555")
        self.reports = []
        self.stopped = False

    def run(self) -> list:
        raise RuntimeError("the GPU fell off the bus")

    def stop(self) -> None:
        self.stopped = True

    def snapshot(self) -> None:
        return None

    def receiver_stats(self) -> ReceiverStats:
        return ReceiverStats("stopped", None, 0, 0, dict.fromkeys(REJECT_REASONS, 0), 0, 0, 0, None, 0)


def distinct_colours(image: QImage) -> int:
    image = image.convertToFormat(QImage.Format.Format_RGB32)
    pixels = np.frombuffer(image.constBits(), dtype=np.uint32, count=image.width() * image.height())
    return len(np.unique(pixels))


def test_the_window_paints_the_growing_map_and_closing_it_saves_the_partial_map(qtbot, publisher, classes,
                                                                                fixture_path, tmp_path):
    rows, cols = publisher.start.scan_shape
    pipeline = make_pipeline(publisher, fixture_path, tmp_path / "maps")
    session = Session(pipeline)
    window = MapWindow(session, title="diffstream test")
    worker = session.worker
    session.start_existing()
    window.show()
    try:
        publisher.announce_until(opened(pipeline))
        publisher.frames(classes, range(20))
        qtbot.waitUntil(lambda: window.painted_points == 20, timeout=WAIT_MS)
        publisher.frames(classes, range(20, 30))
        qtbot.waitUntil(lambda: window.painted_points == 30 and window.colours.pending == 0, timeout=WAIT_MS)
        qtbot.waitUntil(lambda: window.status.counts.text().startswith("received 30 "), timeout=WAIT_MS)

        phase = window.phase_panel.image
        for index in range(rows * cols):
            expected = NAMES[classes[index]] if index < 30 else "not yet received"
            assert tuple(phase[divmod(index, cols)]) == window.legend.colours[expected], index
        assert window.legend.labels["not yet received"].text() == f"not yet received {18 / 48:.1%}"
        identity_ipf = {name: tuple(to_uint8(ipf_colours(np.array([[1.0, 0, 0, 0]]), group))[0])
                        for name, group in zip(NAMES, class_point_groups(CLASSES))}
        ipf = window.ipf_panel.image
        assert all(tuple(ipf[divmod(i, cols)]) == identity_ipf[NAMES[classes[i]]] for i in range(30))
        confidence = window.confidence_panel.image.reshape(-1, 3)
        grey = tuple(to_uint8(NOT_RECEIVED_RGB))
        assert all(tuple(c) == grey for c in confidence[30:]) and not any(tuple(c) == grey for c in confidence[:30])

        status = window.status
        assert (status.progress.value(), status.progress.maximum()) == (30, rows * cols)
        assert status.scan.text() == "scan scan-1" and status.state.text() == "receiving"
        assert "rejected 0" in status.counts.text() and "dropped 0" in status.counts.text()

        row, col = divmod(7, cols)
        view = window.ipf_panel.view
        window.ipf_panel.graphics.scene().sigMouseMoved.emit(view.mapViewToScene(QPointF(col + 0.5, row + 0.5)))
        readout = window.readout.text()
        assert readout.startswith(f"row {row}, col {col}: {NAMES[classes[7]]}, confidence 0.")
        assert "(0.0°, 0.0°, 0.0°)" in readout  # the fixture model answers the identity orientation

        screenshot = tmp_path / "window.png"
        assert window.grab().toImage().save(str(screenshot))
        assert distinct_colours(QImage(str(screenshot))) >= 8

        window.close()
        worker.join(timeout=30)
    finally:
        pipeline.stop()
        shiboken6.delete(window)  # as run_window does: Qt objects must die in the GUI thread
    assert not worker.is_alive() and worker.error is None
    (report,) = worker.reports
    assert report.summary["ended_by"] == "stopped" and report.summary["frames_received"] == 30
    assert {p.name for p in report.files.values()} >= {"map.h5", "map.ang", "phase.png", "ipf_z.png"}
    assert all(p.is_file() for p in report.files.values())


def test_run_window_keeps_the_finished_map_until_ctrl_c_then_returns_the_reports(offscreen, publisher, classes,
                                                                                 fixture_path, tmp_path):
    pipeline = make_pipeline(publisher, fixture_path, tmp_path / "maps")

    def detector() -> None:
        publisher.announce_until(opened(pipeline))
        publisher.frames(classes, range(classes.size))
        publisher.end(classes.size)

    feeder = threading.Thread(target=detector, daemon=True)
    previous = signal.getsignal(signal.SIGINT)
    feeder.start()
    with ctrl_c_when("finished") as seen:
        try:
            reports = run_window(pipeline, title="diffstream test")
        finally:
            feeder.join(timeout=30)
    assert signal.getsignal(signal.SIGINT) is previous
    assert seen.get("message") == f"maps written to {tmp_path / 'maps'}"
    (report,) = reports
    assert report.summary["ended_by"] == "scan_end" and report.summary["frames_received"] == classes.size
    assert (tmp_path / "maps" / "summary.json").is_file()


def test_a_pipeline_that_fails_is_shown_then_its_error_raised(offscreen):
    pipeline = FailingPipeline()
    with ctrl_c_when("failed") as seen:
        try:
            run_window(pipeline, title="diffstream test")
        except RuntimeError as error:
            assert str(error) == "the GPU fell off the bus"
        else:
            raise AssertionError("run_window swallowed the pipeline's error")
    assert seen.get("message") == "the pipeline failed: the GPU fell off the bus"
    assert pipeline.stopped


def test_no_display_or_no_qt_is_a_one_line_gui_unavailable(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    assert not display_available()
    untouched = object()  # run_window must give up before it uses the pipeline
    try:
        run_window(untouched, title="x")
    except GuiUnavailable as error:
        assert "no display" in str(error) and "\n" not in str(error)
    else:
        raise AssertionError("run_window opened a window without a display")
    monkeypatch.setenv("WAYLAND_DISPLAY", "wayland-0")
    assert display_available()
    monkeypatch.setitem(sys.modules, "pyqtgraph", None)
    try:
        run_window(untouched, title="x")
    except GuiUnavailable as error:
        assert "pip install 'diffstream[gui]'" in str(error) and "pyqtgraph" in str(error)
        assert "\n" not in str(error)
    else:
        raise AssertionError("run_window went on without pyqtgraph")


def test_a_display_qt_cannot_use_is_gui_unavailable_not_an_abort():
    """Qt aborts a process whose platform plugin fails to start; run_window must find out first."""
    script = ("from diffstream.gui.window import GuiUnavailable, run_window\n"
              "try:\n    run_window(None, title='x')\n"
              "except GuiUnavailable as error:\n    print(error)\n    raise SystemExit(3)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "WAYLAND_DISPLAY")}
    env["DISPLAY"] = ":987"  # no X server there
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 3, result.stderr
    assert result.stdout.startswith("Qt cannot open a window on this display: ")
    assert len(result.stdout.strip().splitlines()) == 1


def test_the_entry_points_import_without_qt():
    """The command line imports them to choose between window and headless, even where Qt is broken."""
    script = ("import sys\nfrom diffstream.gui.window import GuiUnavailable, display_available, run_window\n"
              "print(sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'pyqtgraph')))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "[]", result.stdout + result.stderr
