"""``diffstream bench gui``: how responsive the live window stays while a fast stream fills a big map.

A child process publishes random 60×60 frames at the chosen rate (a ZeroMQ PUB socket, so
the window's pipeline drops and counts what it cannot keep up with rather than slowing the
sender: ingest is the detector's rate, as at a microscope). The pipeline maps them with a
stand-in engine that costs next to nothing and answers varied classes and orientations (so
the maps, legend and IPF colouring do real work), and the window paints them offscreen. A
``QTimer`` due every :data:`TICK_MS` measures how late it fires: the event-loop delay a user
would feel as lag when clicking or hovering.
"""
from __future__ import annotations

import math
import multiprocessing
import os
import threading
import time

import numpy as np
from orix.quaternion import Rotation

from diffstream.engines import Engine, load_card

TICK_MS = 10
BANK = 512
"""Distinct random frames the sender cycles through."""
MODEL = "ebsd-lattice"


class StandInEngine(Engine):
    """The shipped model's card with a trivial computation: class, orientation and usable score
    from a frame's first pixels, so that every point gets a plausible, varied result."""

    name = "stand-in"

    def infer(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        n_classes = len(self.card.classes)
        first = frames[:, 0, :4].astype(np.float32)
        probabilities = np.full((len(frames), n_classes), 0.1 / n_classes, dtype=np.float32)
        probabilities[np.arange(len(frames)), first[:, 0].astype(int) % n_classes] += 0.9
        euler = first[:, 1:4] / 255.0 * np.array([2 * math.pi, math.pi, 2 * math.pi], dtype=np.float32)
        return {"class_probabilities": probabilities,
                "rotation_matrix": Rotation.from_euler(euler).to_matrix().astype(np.float32),
                "confidence": np.full(len(frames), 0.9, dtype=np.float32)}


def run_gui_bench(scan_shape: tuple[int, int], rate: float, seconds: float) -> dict:
    """Stream ``rate`` frames/s for ``seconds`` into a ``scan_shape`` map behind an offscreen
    window and return the event-loop delays and the rates seen."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    from diffstream.live.pipeline import LivePipeline
    from diffstream.live.receiver import Receiver

    from .map_window import MapWindow
    from .session import Session

    app = QApplication.instance() or QApplication(["diffstream-bench"])
    frames = int(rate * seconds)
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    sender = context.Process(target=_send, args=(queue, scan_shape, rate, frames), daemon=True)
    sender.start()
    url = queue.get(timeout=120)
    pipeline = LivePipeline(Receiver(url), StandInEngine(load_card(MODEL)), model_name=f"{MODEL} (stand-in engine)")
    session = Session(pipeline)
    window = MapWindow(session, title="diffstream bench gui")
    delays: list[float] = []
    paints: list[float] = []
    paint = window.paint

    def timed_paint() -> None:
        began = time.perf_counter()
        paint()
        paints.append(time.perf_counter() - began)

    window.timer.timeout.disconnect()
    window.timer.timeout.connect(timed_paint)
    expected = [0.0]

    def tick() -> None:
        now = time.perf_counter()
        if expected[0] and session.pipeline.receiver_stats().state == "receiving":
            delays.append(max(now - expected[0], 0.0))
        expected[0] = now + TICK_MS / 1e3

    ticker = QTimer()
    ticker.setTimerType(ticker.timerType().PreciseTimer)
    ticker.timeout.connect(tick)
    loop = QEventLoop()
    done = threading.Event()
    session.start_existing()
    window.show()
    ticker.start(TICK_MS)
    watcher = QTimer()
    watcher.timeout.connect(lambda: loop.quit() if not sender.is_alive() or done.is_set() else None)
    watcher.start(200)
    QTimer.singleShot(int((seconds + 60) * 1e3), done.set)
    try:
        loop.exec()
    finally:
        ticker.stop()
        watcher.stop()
        snapshot = pipeline.snapshot()
        stats = pipeline.receiver_stats()
        window.close()
        session.close()
        sender.join(timeout=10)
        if sender.is_alive():
            sender.terminate()
        app.processEvents()
    delay_ms = np.array(delays) * 1e3
    paint_ms = np.array(paints) * 1e3
    return {
        "scan": list(scan_shape), "rate_fps": rate, "frames_sent": frames, "seconds": seconds,
        "frames_received": stats.frames_received,
        "frames_mapped": 0 if snapshot is None else snapshot.n_received,
        "dropped_backpressure": stats.dropped_backpressure,
        "event_loop_delay_ms": _percentiles(delay_ms),
        "paint_ms": _percentiles(paint_ms),
        "paints": len(paints),
    }


def _percentiles(values: np.ndarray) -> dict:
    if values.size == 0:
        return {"p50": None, "p99": None, "max": None}
    p50, p99 = np.percentile(values, [50, 99])
    return {"p50": round(float(p50), 1), "p99": round(float(p99), 1), "max": round(float(values.max()), 1)}


def _send(queue: multiprocessing.Queue, scan_shape: tuple[int, int], rate: float, frames: int) -> None:
    """The child process: wait for the window's subscriber, then send ``frames`` frames of one scan."""
    from diffstream.live.detector_sim import Publisher, Scan, scan_template, stream

    bank = np.random.default_rng(0).integers(0, 256, (BANK, 60, 60)).astype(np.uint8)
    start = scan_template("ebsd", scan_shape, (60, 60), "uint8", {})

    def chunks(stop: threading.Event):
        for first in range(0, frames, BANK):
            count = min(BANK, frames - first)
            yield range(first, first + count), bank[:count]

    stop = threading.Event()
    with Publisher("tcp://127.0.0.1:*") as publisher:
        queue.put(publisher.endpoint)
        if publisher.wait_for_subscribers(1, 120, stop):
            time.sleep(1.0)  # the window's receiver opens the scan only at the first scan_start it hears
            stream(publisher, Scan(start, chunks), scan_id="bench-gui", rate=rate, stop=stop)
