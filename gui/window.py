"""Entry points of the live window, importable without Qt.

The command line imports this module to decide between the window and a headless run, so it
must import even where PySide6 is missing or broken: Qt is imported by :func:`run_window`
only, and a failure there becomes :class:`GuiUnavailable` with a one-line reason.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

    from PySide6.QtWidgets import QWidget

    from diffstream.live.pipeline import LivePipeline, ScanReport

    from .session import Session, SessionSettings

_QT_MODULES = ("shiboken6", "PySide6.QtCore", "PySide6.QtGui", "PySide6.QtWidgets", "pyqtgraph")
_PROBE = "from PySide6.QtWidgets import QApplication; QApplication([])"


class GuiUnavailable(RuntimeError):
    """The live window cannot open here (no display, or PySide6/pyqtgraph missing or broken)."""


def display_available() -> bool:
    """Whether Qt has somewhere to draw: an X11 or Wayland display, a platform plugin chosen
    explicitly in ``QT_QPA_PLATFORM`` (such as offscreen), or Windows/macOS, which always have one.

    On Linux without any of these, creating the ``QApplication`` would abort the process,
    which no exception handler can catch, so callers must ask first.
    """
    if sys.platform in ("win32", "darwin"):
        return True
    return any(os.environ.get(name) for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"))


class PipelineWorker(threading.Thread):
    """Runs ``pipeline.run()`` off the GUI thread and keeps its reports or the exception it raised."""

    def __init__(self, pipeline: LivePipeline) -> None:
        super().__init__(name="diffstream-pipeline", daemon=True)
        self.pipeline = pipeline
        self.reports: list[ScanReport] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.reports = self.pipeline.run()
        except BaseException as error:  # handed to the GUI thread, which shows and re-raises it
            self.error = error


def run_window(pipeline: LivePipeline, *, title: str, screenshot: Path | None = None) -> list[ScanReport]:
    """Map with ``pipeline`` in a worker thread behind the live window; return its reports.

    Blocks until the window is closed: by the user, by Ctrl-C (SIGINT) or by SIGTERM, which
    close it the same way. Closing stops the pipeline, which saves the scan in progress as
    it stands; the window stays open after the last scan ends, showing the final map, until
    the user closes it, or, with ``screenshot``, saves a picture of itself there and closes.
    An exception raised by the pipeline is re-raised here, after the window is closed.
    Raises :class:`GuiUnavailable` before starting anything when there is no display, Qt
    cannot be imported or Qt cannot start on this display. Call it from the main thread:
    only the main thread can install the signal handlers (elsewhere they are left alone).
    """
    _check_display()
    from .session import Session

    return run_session(Session(pipeline), title=title, screenshot=screenshot)


def run_session(session: Session, *, title: str, settings: SessionSettings | None = None,
                screenshot: Path | None = None) -> list[ScanReport]:
    """Open the window on ``session`` (see :func:`run_window`) and return the reports of the
    pipeline it ran last. A session made with a pipeline runs it at once; otherwise
    ``settings`` fill the controls and, when they name a URL, mapping starts at once."""
    _check_display()
    import shiboken6
    from PySide6.QtCore import QEventLoop
    from PySide6.QtWidgets import QApplication

    from .map_window import MapWindow

    if QApplication.instance() is None:  # PySide6 keeps the application alive; no reference needed
        if sys.platform.startswith("linux"):
            _probe_platform()
        QApplication([sys.argv[0] if sys.argv else "diffstream"])
    window = MapWindow(session, title=title, screenshot=screenshot)
    loop = QEventLoop()
    window.closed.connect(loop.quit)
    previous = _close_on_signals(window)
    try:
        if session.worker is not None:
            session.start_existing()
        elif settings is not None:
            window.show_settings(settings)
            if settings.url:
                window.start()
        window.show()
        loop.exec()
    finally:
        if window.isVisible():
            window.close()
        _restore_signals(previous)
        session.close()  # a second Ctrl-C, back with its previous handler, interrupts the wait
        # Delete the window's Qt objects here, in the GUI thread: left to the garbage collector
        # (pyqtgraph's items hold reference cycles) they could be freed by whichever thread
        # collects next, and Qt crashes on widgets deleted outside their own thread.
        problem = window.screenshot_error
        shiboken6.delete(window)
    if session.worker is not None and session.worker.error is not None:
        raise session.worker.error
    if problem:
        raise OSError(problem)
    return [] if session.worker is None else session.worker.reports


def _check_display() -> None:
    """Raise :class:`GuiUnavailable` unless Qt has a display and imports."""
    if not display_available():
        raise GuiUnavailable("no display for the live window (DISPLAY, WAYLAND_DISPLAY and QT_QPA_PLATFORM are unset)")
    _import_qt()


def _import_qt() -> None:
    """Import Qt and pyqtgraph, turning any failure into a one-line :class:`GuiUnavailable`."""
    for name in _QT_MODULES:
        try:
            __import__(name)
        except ImportError as error:
            raise GuiUnavailable(f"the live window needs PySide6 and pyqtgraph (pip install 'diffstream[gui]'): "
                                 f"importing {name} failed: {error}") from None


def _probe_platform() -> None:
    """Start Qt in a child process first (about 0.2 s): where Qt's platform plugin cannot
    start (an unreachable display, or the xcb plugin without libxcb-cursor0, common on a
    fresh Linux install) Qt aborts the process that tries, which no exception handler can catch."""
    try:
        result = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise GuiUnavailable("Qt did not start within a minute on this display") from None
    if result.returncode != 0:
        lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        qpa = [line.split(": ", 1)[-1] for line in lines if line.startswith("qt.qpa")]
        reason = "; ".join(qpa) or (lines[-1] if lines else f"exit code {result.returncode}")
        raise GuiUnavailable(f"Qt cannot open a window on this display: {reason}")


def _close_on_signals(window: QWidget) -> dict[int, object]:
    """SIGINT and SIGTERM close the window; returns the handlers they replace (none off the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}
    for number in (signal.SIGINT, signal.SIGTERM):
        previous[number] = signal.signal(number, lambda *_: window.close())
    return previous


def _restore_signals(previous: dict[int, object]) -> None:
    for number, handler in previous.items():
        signal.signal(number, handler)
