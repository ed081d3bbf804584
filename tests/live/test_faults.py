"""Faults end to end over real sockets on 127.0.0.1, with the brightness fixture model: a detector
server killed and restarted mid-scan, a subscriber that starts late, a long silence, an engine
too slow for the stream, and a map folder that cannot be written. In each the pipeline keeps
going, counts what it lost, and keeps every frame it did receive. (Ctrl-C and SIGTERM are in
test_pipeline.py.)

The detector server is ``diffstream replay`` of a recording whose frames' classes are known,
run as a child process so that it can be killed like a real server.
"""
from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from diffstream.engines import create_engine
from diffstream.engines.batch_fallback import BatchFallback, OutOfDeviceMemory
from diffstream.live.pipeline import LivePipeline, ScanReport
from diffstream.live.protocol import ScanEnd, ScanStart, encode_frame, encode_scan_end, encode_scan_start
from diffstream.live.receiver import Receiver
from fixture_model import build_fixture_model, frame_of_class
from fixture_stream import (
    CLASS_NAMES,
    FRAME,
    TIMEOUT,
    Publisher,
    mapped_classes,
    scan_classes,
    wait_for,
    write_recording,
)


@pytest.fixture(scope="module")
def fixture_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_fixture_model(tmp_path_factory.mktemp("model") / "fixture.onnx", FRAME)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    path = tmp_path_factory.mktemp("faults") / "scan.h5"
    return path, write_recording(path)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def replay(path: Path, port: int, *args: str) -> subprocess.Popen:
    """``diffstream replay`` of ``path`` bound to ``port``, once it says it has bound."""
    exe = Path(sys.executable).with_name("diffstream")
    process = subprocess.Popen([str(exe), "replay", str(path), "--bind", f"tcp://127.0.0.1:{port}", *args],
                               stderr=subprocess.PIPE, text=True)
    lines = []
    for line in process.stderr:
        lines.append(line)
        if re.search(r"bound tcp://", line):
            threading.Thread(target=process.stderr.read, daemon=True).start()  # keep the pipe drained
            return process
    process.wait(TIMEOUT)
    raise AssertionError("".join(lines))


def map_replay(pipeline: LivePipeline, path: Path, port: int, *args: str) -> ScanReport:
    """Serve ``path`` with ``diffstream replay`` on ``port`` and map its one scan with ``pipeline``."""
    server = replay(path, port, *args)
    try:
        (report,) = pipeline.run()
        assert server.wait(TIMEOUT) == 0
    finally:
        if server.poll() is None:
            server.kill()
    return report


def run_in_thread(pipeline: LivePipeline) -> threading.Thread:
    thread = threading.Thread(target=pipeline.run, daemon=True)
    thread.start()
    return thread


def test_a_server_killed_and_restarted_mid_scan_loses_only_what_it_never_sent(recording, fixture_path, tmp_path):
    path, classes = recording
    port = free_port()
    receiver = Receiver(f"tcp://127.0.0.1:{port}", batch_size=32, max_wait_s=0.01)
    pipeline = LivePipeline(receiver, create_engine(fixture_path), model_name="fixture", out_dir=tmp_path,
                            follow=True)
    first = replay(path, port, "--rate", "100")  # two seconds a scan
    thread = run_in_thread(pipeline)
    second = None
    try:
        wait_for(lambda: (snap := pipeline.snapshot()) is not None and snap.n_received >= 20, "the first frames")
        first.kill()  # SIGKILL: no scan_end, no goodbye
        first.wait(TIMEOUT)
        second = replay(path, port, "--rate", "100")
        wait_for(lambda: len(pipeline.reports) == 2, "the restarted server's scan to end")
        assert second.wait(TIMEOUT) == 0
    finally:
        pipeline.stop()
        thread.join(TIMEOUT)
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.kill()
    interrupted, complete = pipeline.reports
    assert interrupted.summary["ended_by"] == "superseded"
    assert 20 <= interrupted.summary["frames_received"] < classes.size
    assert interrupted.summary["frames_dropped"] == classes.size - interrupted.summary["frames_received"]
    assert complete.summary["ended_by"] == "scan_end"
    stats = receiver.stats()
    assert stats.dropped_missing == 0  # the killed scan was sent in order: no gaps below its last index
    # Every frame of the new scan was mapped, or dropped and counted while the first scan's maps were written.
    assert complete.summary["frames_received"] + stats.dropped_backpressure == classes.size
    names = mapped_classes(complete.files["h5"])
    assert sum(map(bool, names)) == complete.summary["frames_received"] > 0
    assert all(name in ("", CLASS_NAMES[k]) for name, k in zip(names, classes))


def test_a_subscriber_that_starts_late_maps_the_rest_of_the_scan(recording, fixture_path, tmp_path):
    path, classes = recording
    port = free_port()
    server = replay(path, port, "--rate", "200", "--wait-subscribers", "0")
    try:
        time.sleep(0.3)  # the scan is under way before anyone listens
        pipeline = LivePipeline(Receiver(f"tcp://127.0.0.1:{port}", batch_size=8, max_wait_s=0.01),
                                create_engine(fixture_path), model_name="fixture", out_dir=tmp_path)
        (report,) = pipeline.run()
        assert server.wait(TIMEOUT) == 0
    finally:
        if server.poll() is None:
            server.kill()
    summary = report.summary
    assert summary["ended_by"] == "scan_end"
    assert 0 < summary["frames_received"] < classes.size
    assert summary["frames_received"] + summary["frames_dropped"] == classes.size
    names = mapped_classes(report.files["h5"])
    received = [i for i, name in enumerate(names) if name]
    assert len(received) == summary["frames_received"]
    assert received == list(range(classes.size - len(received), classes.size))  # the tail of the raster
    assert [names[i] for i in received] == [CLASS_NAMES[classes[i]] for i in received]


def test_a_long_silence_shows_in_the_stats_and_the_scan_completes_after_it(fixture_path, tmp_path):
    publisher = Publisher()
    classes = scan_classes()
    pipeline = LivePipeline(Receiver(publisher.url, batch_size=16, max_wait_s=0.01, silence_s=0.3),
                            create_engine(fixture_path), model_name="fixture", out_dir=tmp_path)
    thread = run_in_thread(pipeline)
    try:
        publisher.announce_until(lambda: pipeline.receiver_stats().scan_id == "scan-1")
        publisher.frames(classes, range(10))
        wait_for(lambda: pipeline.receiver_stats().state == "silent", "the silent state")
        assert pipeline.snapshot().n_received == 10  # nothing is held back while the stream is silent
        publisher.frames(classes, range(10, classes.size))
        publisher.end(classes.size)
        thread.join(TIMEOUT)
    finally:
        pipeline.stop()
        publisher.close()
    (report,) = pipeline.reports
    assert report.summary["frames_received"] == classes.size and report.summary["ended_by"] == "scan_end"
    assert pipeline.receiver_stats().state == "stopped"


class SlowEngine:
    """A real engine that takes ``delay`` s more per batch: a GPU shared with another job, say."""

    def __init__(self, engine: object, delay: float) -> None:
        self._engine = engine
        self._delay = delay

    def __getattr__(self, name: str) -> object:
        return getattr(self._engine, name)

    def infer(self, frames: np.ndarray) -> dict:
        time.sleep(self._delay)
        return self._engine.infer(frames)


def test_an_engine_slower_than_the_stream_drops_and_counts_frames_and_never_queues_without_bound(
        recording, fixture_path, tmp_path):
    path, classes = recording
    port = free_port()
    receiver = Receiver(f"tcp://127.0.0.1:{port}", batch_size=4, n_slots=2, max_wait_s=0.01)
    pipeline = LivePipeline(receiver, SlowEngine(create_engine(fixture_path), 0.05), model_name="fixture",
                            out_dir=tmp_path)
    report = map_replay(pipeline, path, port, "--rate", "0")
    stats = receiver.stats()
    summary = report.summary
    assert summary["ended_by"] == "scan_end" and stats.frames_received == classes.size  # all came off the wire
    assert stats.dropped_backpressure > 0  # the engine could not keep up: the ring dropped, and counted
    assert summary["frames_received"] + stats.dropped_backpressure == classes.size
    assert summary["batches"] * 4 >= summary["frames_received"]
    names = mapped_classes(report.files["h5"])
    assert all(names[i] in ("", CLASS_NAMES[classes[i]]) for i in range(classes.size))  # what was mapped is right



class SmallDevice(SlowEngine):
    """A real engine on a "device" that holds at most ``limit`` frames: larger batches fail the way a
    GPU out of memory does, as the backends report it (:class:`OutOfDeviceMemory`)."""

    def __init__(self, engine: object, limit: int) -> None:
        super().__init__(engine, 0.0)
        self.limit = limit
        self.largest = 0

    def infer(self, frames: np.ndarray) -> dict:
        if len(frames) > self.limit:
            raise OutOfDeviceMemory(f"CUDA out of memory at batch {len(frames)}")
        self.largest = max(self.largest, len(frames))
        return self._engine.infer(frames)


def test_a_device_out_of_memory_runs_smaller_batches_and_maps_every_frame(recording, fixture_path, tmp_path):
    path, classes = recording
    port = free_port()
    device = SmallDevice(create_engine(fixture_path), limit=20)
    receiver = Receiver(f"tcp://127.0.0.1:{port}", batch_size=64, max_wait_s=0.01, socket_type="pull")
    pipeline = LivePipeline(receiver, BatchFallback(device), model_name="fixture", out_dir=tmp_path)
    report = map_replay(pipeline, path, port, "--rate", "0", "--push")
    assert report.summary["ended_by"] == "scan_end"
    assert report.summary["frames_received"] == classes.size and report.summary["frames_dropped"] == 0
    assert device.largest <= 20 < 64
    assert mapped_classes(report.files["h5"]) == [CLASS_NAMES[k] for k in classes]

def test_a_map_folder_that_cannot_be_written_falls_back_to_a_temporary_folder(fixture_path, tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the map folder should go")
    classes = scan_classes()
    start = ScanStart("scan-1", "ebsd", (6, 8), FRAME, "uint8")
    exe = Path(sys.executable).with_name("diffstream")
    with zmq.Context() as context, context.socket(zmq.PUSH) as pusher:
        pusher.setsockopt(zmq.SNDTIMEO, int(TIMEOUT * 1e3))
        pusher.bind("tcp://127.0.0.1:*")
        command = subprocess.Popen([str(exe), "live", "--connect", pusher.getsockopt_string(zmq.LAST_ENDPOINT),
                                    "--pull", "--model", str(fixture_path), "--headless", "--out", str(blocked),
                                    "--batch-size", "4"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            pusher.send_multipart(encode_scan_start(start))  # PUSH waits for the command to connect: nothing is lost
            for i, k in enumerate(classes):
                pusher.send_multipart(encode_frame("scan-1", i, time.time(), frame_of_class(int(k), FRAME, seed=i)))
            pusher.send_multipart(encode_scan_end(ScanEnd("scan-1", classes.size)))
            _, stderr = command.communicate(timeout=120)
        finally:
            if command.poll() is None:
                command.kill()
    assert command.returncode == 0, stderr
    assert "NOT SAVED" in stderr and str(blocked) in stderr
    (line,) = [line for line in stderr.splitlines() if "saved instead to" in line]
    folder = Path(line.rsplit(" to ", 1)[1])
    try:
        summary = json.loads((folder / "summary.json").read_text())
        assert (folder / "map.h5").is_file() and (folder / "map.ang").is_file()
        assert summary["ended_by"] == "scan_end" and summary["frames_received"] == classes.size
    finally:
        shutil.rmtree(folder)
