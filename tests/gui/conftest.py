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

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zmq

from diffstream.live.protocol import ScanEnd, ScanStart, encode_frame, encode_scan_end, encode_scan_start
from fixture_model import build_fixture_model, frame_of_class

SCAN = (6, 8)
FRAME = (24, 24)


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
    return np.random.default_rng(3).integers(0, 3, size=SCAN[0] * SCAN[1])


class Publisher:
    """A minimal detector server bound to a run-time loopback port; use it from one thread at a time."""

    def __init__(self) -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.PUB)
        self.socket.bind("tcp://127.0.0.1:*")
        self.url = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.start = ScanStart(scan_id="scan-1", kind="ebsd", scan_shape=SCAN, frame_shape=FRAME, dtype="uint8")

    def announce_until(self, opened: Callable[[], bool], timeout: float = 20) -> None:
        """Repeat scan_start (as the protocol asks) until the subscriber has opened the scan."""
        deadline = time.monotonic() + timeout
        while not opened():
            assert time.monotonic() < deadline, "the subscriber never opened the scan"
            self.socket.send_multipart(encode_scan_start(self.start))
            time.sleep(0.05)

    def frames(self, classes: np.ndarray, indices: range | list[int]) -> None:
        for i in indices:
            frame = frame_of_class(int(classes[i]), FRAME, seed=i)
            self.socket.send_multipart(encode_frame(self.start.scan_id, i, time.time(), frame))

    def end(self, frames_sent: int) -> None:
        self.socket.send_multipart(encode_scan_end(ScanEnd(self.start.scan_id, frames_sent, time.time())))

    def close(self) -> None:
        self.socket.close(linger=0)
        self.context.term()


@pytest.fixture
def publisher() -> Publisher:
    server = Publisher()
    yield server
    server.close()
