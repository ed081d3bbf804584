"""A detector server and recordings for tests, made of the brightness fixture model's frames
(``fixture_model.frame_of_class``), so that the class the model gives each scan point is known.

Shared by the pipeline, fault, CURVE and window tests, which all check a map point by point.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import zmq

from diffstream.live.protocol import Frame, ScanEnd, ScanStart, encode_frame, encode_scan_end, encode_scan_start
from diffstream.live.recorder import Recorder
from fixture_model import CLASSES, frame_of_class

SCAN = (6, 8)
FRAME = (24, 24)
CLASS_NAMES = tuple(c.name for c in CLASSES)
TIMEOUT = 30.0


def scan_classes(seed: int = 3, scan: tuple[int, int] = SCAN) -> np.ndarray:
    """The fixture model's class for each point (row-major) of a scan of frames made by seed."""
    return np.random.default_rng(seed).integers(0, len(CLASSES), size=scan[0] * scan[1])


def wait_for(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


class Publisher:
    """A minimal detector server in the test process, bound to a run-time loopback port; use it
    from one thread at a time."""

    def __init__(self, scan: tuple[int, int] = SCAN, frame: tuple[int, int] = FRAME) -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.PUB)
        self.socket.bind("tcp://127.0.0.1:*")
        self.url = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        self.start = ScanStart(scan_id="scan-1", kind="ebsd", scan_shape=scan, frame_shape=frame, dtype="uint8")

    def announce_until(self, opened: Callable[[], bool], timeout: float = 20) -> None:
        """Repeat scan_start (as the protocol asks) until the subscriber has opened the scan."""
        deadline = time.monotonic() + timeout
        while not opened():
            assert time.monotonic() < deadline, "the subscriber never opened the scan"
            self.socket.send_multipart(encode_scan_start(self.start))
            time.sleep(0.05)

    def frames(self, classes: np.ndarray, indices: range | list[int]) -> None:
        for i in indices:
            frame = frame_of_class(int(classes[i]), self.start.frame_shape, seed=i)
            self.socket.send_multipart(encode_frame(self.start.scan_id, i, time.time(), frame))

    def end(self, frames_sent: int) -> None:
        self.socket.send_multipart(encode_scan_end(ScanEnd(self.start.scan_id, frames_sent, time.time())))

    def close(self) -> None:
        self.socket.close(linger=0)
        self.context.term()


def send_scan_and_wait(publisher: Publisher, pipeline: object, thread: threading.Thread, classes: np.ndarray) -> None:
    """Send every frame of ``classes`` and the scan_end, wait for the pipeline's thread to end, then
    stop the pipeline and close the publisher (on failure too)."""
    try:
        publisher.frames(classes, range(classes.size))
        publisher.end(classes.size)
        thread.join(timeout=TIMEOUT)
    finally:
        pipeline.stop()
        publisher.close()
    assert not thread.is_alive()


def write_recording(path: Path, scan: tuple[int, int] = (10, 20), frame: tuple[int, int] = FRAME) -> np.ndarray:
    """A one-scan recording of fixture frames; returns their classes."""
    classes = scan_classes(5, scan)
    start = ScanStart("rec", "ebsd", scan, frame, "uint8", t=1.0)
    with Recorder(path) as recorder:
        recorder.on_message(start)
        for i, k in enumerate(classes):
            recorder.on_message(Frame("rec", i, 1.0, memoryview(frame_of_class(int(k), frame, seed=i).tobytes())))
        recorder.on_message(ScanEnd("rec", len(classes), 2.0))
    return classes


def mapped_classes(h5_path: Path) -> list[str]:
    """Class name of every point of a written ``map.h5`` ('' where nothing was mapped)."""
    from orix import io

    xmap = io.load(h5_path)
    return [xmap.phases[int(p)].name if p >= 0 else "" for p in xmap.phase_id]
