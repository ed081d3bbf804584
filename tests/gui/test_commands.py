"""``diffstream gui`` and the window's wiring into ``live``/``demo``: the command maps the URL it
is given in the window, says why it cannot open one, and the terminal progress bar stays
quiet while a window shows the progress."""
from __future__ import annotations

import json
import sys
import threading
import time
from types import SimpleNamespace

import numpy as np
import shiboken6
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from conftest import run_diffstream
from diffstream.gui.map_window import MapWindow
from diffstream.live.cli import main
from diffstream.live.progress import ProgressPrinter

WAIT_S = 30


def test_gui_connect_maps_the_url_in_the_window(offscreen, publisher, classes, fixture_path, tmp_path):
    seen = {}

    def detector() -> None:
        deadline = time.monotonic() + WAIT_S
        while "window" not in seen and time.monotonic() < deadline:
            time.sleep(0.05)
        session = seen["window"].session
        publisher.announce_until(lambda: session.running and session.pipeline.receiver_stats().scan_id == "scan-1")
        publisher.frames(classes, range(classes.size))
        publisher.end(classes.size)

    def poll() -> None:
        windows = [w for w in QApplication.topLevelWidgets() if isinstance(w, MapWindow) and w.isVisible()]
        if not windows:
            return
        window = seen["window"] = windows[0]
        if window.painted_points == classes.size and window.colours.pending == 0:
            seen["url"] = window.controls.url.text()
            seen["phase"] = window.phase_panel.image.copy()
            window.close()
        elif time.monotonic() > deadline:
            window.close()  # the assertions below say what was missing

    deadline = time.monotonic() + WAIT_S
    timer = QTimer()
    timer.timeout.connect(poll)
    timer.start(50)
    feeder = threading.Thread(target=detector, daemon=True)
    feeder.start()
    try:
        code = main(["gui", "--connect", publisher.url, "--model", str(fixture_path), "--out", str(tmp_path / "maps")])
    finally:
        timer.stop()
        shiboken6.delete(timer)
        feeder.join(timeout=WAIT_S)
    assert code == 0 and seen.get("url") == publisher.url
    window = seen["window"]
    legend = [window.legend.colours[name] for name in window.class_names]
    expected = np.array(legend, dtype=np.uint8)[classes].reshape(*publisher.start.scan_shape, 3)
    assert np.array_equal(seen["phase"], expected)
    assert (tmp_path / "maps" / "map.h5").is_file()  # --out: each scan is written as it ends


def test_gui_without_a_display_is_a_one_line_error(monkeypatch):
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    if sys.platform in ("win32", "darwin"):
        return  # those always have a display
    result = run_diffstream("gui", timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "diffstream: error: no display for the live window (DISPLAY, WAYLAND_DISPLAY and QT_QPA_PLATFORM are unset)"]


class CountingPipeline:
    """Enough of a pipeline for the progress printer: a map that grows."""

    def __init__(self) -> None:
        self.mapped = 0

    def snapshot(self) -> SimpleNamespace:
        self.mapped += 10
        return SimpleNamespace(received=np.zeros(1000, dtype=bool), n_received=self.mapped)

    def receiver_stats(self) -> SimpleNamespace:
        return SimpleNamespace(state="receiving", rejected={})

    def stop(self) -> None:
        pass


def test_the_terminal_progress_bar_is_quiet_while_a_window_shows_progress(capsys):
    quiet = ProgressPrinter(CountingPipeline(), interval_s=0.02)
    quiet.drawing = False  # as live.py's _run sets it before it opens the window
    with quiet:
        time.sleep(0.3)
    assert capsys.readouterr().err == ""
    with ProgressPrinter(CountingPipeline(), interval_s=0.02):
        time.sleep(0.3)
    assert "mapping" in capsys.readouterr().err


def test_bench_gui_streams_into_the_window_and_reports_the_event_loop_delay(monkeypatch):
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    result = run_diffstream("bench", "gui", "--scan", "64x64", "--rate", "2000", "--seconds", "2", "--json",
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(result.stdout)
    assert record["frames_sent"] == 4000 and 0 < record["frames_mapped"] <= record["frames_received"] <= 4000
    assert record["paints"] > 10
    delay = record["event_loop_delay_ms"]
    assert 0 <= delay["p50"] <= delay["p99"] <= delay["max"]
    assert record["machine"]["cpu_cores"] >= 1
