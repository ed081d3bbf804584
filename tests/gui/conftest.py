"""GUI tests run for real on Qt's offscreen platform, with the brightness fixture model and a
detector server in the test process.

The platform is chosen by the QApplication's own ``-platform offscreen`` argument (pytest-qt's
``qapp_args``), not by setting ``QT_QPA_PLATFORM`` for the session: that variable would reach
every later test's subprocesses, where a ``diffstream live`` or ``demo`` run without
``--headless`` would open an invisible window and wait for ever for someone to close it.
Tests that call ``run_window`` set it for themselves with the ``offscreen`` fixture, because
``display_available`` reads it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import shiboken6

from diffstream.gui.map_window import MapWindow
from diffstream.gui.session import Session
from fixture_model import build_fixture_model
from fixture_stream import FRAME, SCAN, Publisher, scan_classes


@pytest.fixture(scope="session")
def qapp_args() -> list[str]:
    """Arguments of the session's QApplication (created by pytest-qt's ``qapp`` on first use)."""
    return ["diffstream-tests", "-platform", "offscreen"]


@pytest.fixture
def offscreen(monkeypatch: pytest.MonkeyPatch, qapp: object) -> None:
    """What ``run_window`` needs to find a display: the session's offscreen QApplication and
    ``QT_QPA_PLATFORM`` saying so, for this test only."""
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture(scope="session")
def fixture_path(tmp_path_factory) -> Path:
    return build_fixture_model(tmp_path_factory.mktemp("model") / "fixture.onnx", FRAME)


@pytest.fixture
def classes() -> np.ndarray:
    """The fixture model's class for each scan point (row-major) of a :data:`SCAN`-sized scan."""
    return scan_classes(3, SCAN)


@pytest.fixture
def publisher() -> Publisher:
    server = Publisher()
    yield server
    server.close()


@pytest.fixture
def window(qapp):
    """The live window on a session of its own, shown offscreen, deleted in the GUI thread afterwards."""
    session = Session()
    window = MapWindow(session, title="diffstream test")
    window.show()
    yield window
    window.close()
    session.close()
    shiboken6.delete(window)  # in the GUI thread, as run_window does


def start(window: MapWindow, url: str, model: str) -> None:
    """Map ``url`` with ``model`` through the window's own controls."""
    window.controls.url.setText(url)
    window.controls.add_model(model)
    window.controls.start.trigger()
