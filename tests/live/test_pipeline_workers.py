"""The pipeline with an engine that runs several batches at once (``Engine.concurrency`` > 1).

The engine here wraps the fixture model and holds each batch for a different time, so
batches finish out of their arrival order; the map must still be complete and correct, a
scan must end only after all its batches are mapped, and an engine error raised in an
engine thread must reach the caller of ``run`` with the map that was made kept.
"""
from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from diffstream.engines import Engine, EngineError, create_engine
from diffstream.live.pipeline import LivePipeline
from diffstream.live.receiver import Receiver
from fixture_model import build_fixture_model
from fixture_stream import CLASS_NAMES, FRAME, Publisher, mapped_classes, scan_classes, send_scan_and_wait


@pytest.fixture(scope="module")
def fixture_path(tmp_path_factory) -> Path:
    return build_fixture_model(tmp_path_factory.mktemp("model") / "fixture.onnx", FRAME)


class ShuffledWorkers(Engine):
    """The fixture engine run by three threads at once, batch k held for (2 - k % 3) × 30 ms, so that
    later batches often finish first; ``fail_at`` makes that call raise instead."""

    name = "shuffled"

    def __init__(self, inner: Engine, fail_at: int | None = None) -> None:
        super().__init__(inner.card)
        self.inner = inner
        self.fail_at = fail_at
        self.calls = 0
        self.running = 0
        self.most_running = 0
        self._lock = threading.Lock()

    @property
    def concurrency(self) -> int:
        return 3

    def infer(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        with self._lock:
            call = self.calls
            self.calls += 1
            self.running += 1
            self.most_running = max(self.most_running, self.running)
        try:
            time.sleep(0.03 * (2 - call % 3))
            if call == self.fail_at:
                raise EngineError("the device went away")
            return self.inner.infer(frames)
        finally:
            with self._lock:
                self.running -= 1


def run_scan(engine: ShuffledWorkers, out_dir: Path, classes: np.ndarray) -> tuple[LivePipeline, list]:
    """Stream one whole fixture scan into a pipeline (with a ring slot for each of its batches, so
    the slow engine drops none); returns it and what ``run`` raised, if anything."""
    publisher = Publisher()
    receiver = Receiver(publisher.url, batch_size=4, max_wait_s=0.01, n_slots=16)
    pipeline = LivePipeline(receiver, engine, model_name="fixture", out_dir=out_dir)
    raised: list[BaseException] = []

    def run() -> None:
        try:
            pipeline.run()
        except BaseException as error:  # noqa: BLE001 - handed to the test thread to assert on
            raised.append(error)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    publisher.announce_until(lambda: pipeline.receiver_stats().scan_id == "scan-1")
    send_scan_and_wait(publisher, pipeline, thread, classes)
    return pipeline, raised


def test_batches_mapped_side_by_side_and_out_of_order_give_the_whole_map(fixture_path, tmp_path):
    classes = scan_classes()
    engine = ShuffledWorkers(create_engine(fixture_path))
    pipeline, raised = run_scan(engine, tmp_path, classes)
    assert raised == []
    assert engine.most_running >= 2  # the batches really did run side by side
    (report,) = pipeline.reports
    assert report.summary["ended_by"] == "scan_end"
    assert report.summary["frames_received"] == classes.size and report.summary["frames_dropped"] == 0
    assert report.summary["batches"] == engine.calls
    assert mapped_classes(tmp_path / "map.h5") == [CLASS_NAMES[k] for k in classes]


def test_an_engine_error_in_an_engine_thread_reaches_run_and_the_map_made_is_saved(fixture_path, tmp_path):
    classes = scan_classes()
    engine = ShuffledWorkers(create_engine(fixture_path), fail_at=2)
    pipeline, raised = run_scan(engine, tmp_path, classes)
    assert len(raised) == 1 and isinstance(raised[0], EngineError) and "went away" in str(raised[0])
    (report,) = pipeline.reports
    # Whether the scan_end was read before the error surfaced decides how the scan is said to end.
    assert report.summary["ended_by"] in ("stopped", "scan_end")
    assert report.summary["frames_dropped"] >= 4  # the failed batch; the others are mapped
    mapped = mapped_classes(tmp_path / "map.h5")
    assert 0 < sum(name != "" for name in mapped) == report.summary["frames_received"] < classes.size
    assert all(name in ("", CLASS_NAMES[k]) for name, k in zip(mapped, classes))
