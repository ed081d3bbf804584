"""The live pipeline end to end over real sockets on 127.0.0.1, with the brightness fixture model.

Frames are crafted so the fixture model's answer for every scan point is known, which lets
these tests check placement by index, rejection of malformed messages, partial saves and
the command line without a trained network.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest

from diffstream.engines import create_engine
from diffstream.live.pipeline import LivePipeline
from diffstream.live.protocol import encode_frame, encode_scan_start
from diffstream.live.receiver import Receiver
from fixture_model import build_fixture_model, frame_of_class
from fixture_stream import FRAME, SCAN, Publisher, scan_classes, send_scan_and_wait


@pytest.fixture(scope="module")
def fixture_path(tmp_path_factory) -> Path:
    return build_fixture_model(tmp_path_factory.mktemp("model") / "fixture.onnx", FRAME)


def start_pipeline(publisher: Publisher, model: Path, out_dir: Path, batch_size: int
                   ) -> tuple[LivePipeline, threading.Thread]:
    """A pipeline on the fixture model running in a thread, once the publisher's scan is open in it."""
    pipeline = LivePipeline(Receiver(publisher.url, batch_size=batch_size, max_wait_s=0.01), create_engine(model),
                            model_name="fixture", out_dir=out_dir)
    thread = threading.Thread(target=pipeline.run, daemon=True)
    thread.start()
    publisher.announce_until(lambda: pipeline.receiver_stats().scan_id == "scan-1")
    return pipeline, thread


def test_a_scan_with_malformed_messages_is_mapped_completely_and_the_faults_counted(fixture_path, tmp_path):
    publisher = Publisher()
    classes = scan_classes()
    pipeline, thread = start_pipeline(publisher, fixture_path, tmp_path, batch_size=16)
    try:
        order = list(np.random.default_rng(1).permutation(classes.size))  # out of order on purpose
        publisher.frames(classes, order[:20])
        publisher.socket.send_multipart([b"\xc1 not msgpack"])
        publisher.socket.send_multipart([msgpack.packb({"v": 1, "type": "frame", "scan_id": "scan-1", "index": 3}),
                                         b"short"])
        publisher.socket.send_multipart(encode_frame("scan-1", 10_000, time.time(), frame_of_class(0, FRAME)))
        publisher.socket.send_multipart([msgpack.packb({"v": 99, "type": "frame"}), b""])
        publisher.frames(classes, order[20:])
        publisher.end(classes.size)
        thread.join(timeout=30)
    finally:
        pipeline.stop()
        publisher.close()
    assert not thread.is_alive()
    (report,) = pipeline.reports
    summary = report.summary
    assert summary["frames_received"] == classes.size and summary["frames_dropped"] == 0
    assert summary["frames_rejected"] == 4
    assert summary["rejected_by_reason"] == {"not_msgpack": 1, "payload_size": 1, "index_out_of_range": 1,
                                             "unknown_version": 1}
    assert summary["ended_by"] == "scan_end"
    assert summary["latency_ms"]["p99"] is not None
    written = json.loads((tmp_path / "summary.json").read_text())
    assert written["scan_size"] == {"rows": SCAN[0], "cols": SCAN[1], "points": classes.size}
    data_rows = [line for line in (tmp_path / "map.ang").read_text().splitlines() if not line.startswith("#")]
    assert len(data_rows) == classes.size
    from orix import io

    xmap = io.load(tmp_path / "map.h5")
    names = [xmap.phases[int(p)].name for p in xmap.phase_id]
    assert names == [("cF", "cI", "hP")[k] for k in classes]


def test_stopping_mid_scan_saves_the_partial_map(fixture_path, tmp_path):
    publisher = Publisher()
    classes = scan_classes()
    pipeline, thread = start_pipeline(publisher, fixture_path, tmp_path, batch_size=8)
    try:
        publisher.frames(classes, range(20))
        deadline = time.monotonic() + 20
        while (snap := pipeline.snapshot()) is None or snap.n_received < 20:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        pipeline.stop()
        thread.join(timeout=30)
    finally:
        publisher.close()
    (report,) = pipeline.reports
    assert report.summary["ended_by"] == "stopped"
    assert report.summary["frames_received"] == 20
    assert report.summary["frames_dropped"] == classes.size - 20
    assert (tmp_path / "map.ang").is_file() and (tmp_path / "phase.png").is_file()


def test_a_save_that_fails_keeps_the_map_in_memory_and_can_be_retried(fixture_path, tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the map folder should go")  # makes every write under it fail
    publisher = Publisher()
    classes = scan_classes()
    pipeline, thread = start_pipeline(publisher, fixture_path, blocked, batch_size=16)
    send_scan_and_wait(publisher, pipeline, thread, classes)
    (report,) = pipeline.reports
    assert report.files == {}
    assert str(blocked) in report.summary["save_error"]
    assert report.summary["points_mapped"] == classes.size
    files = pipeline.save(tmp_path / "retry")
    written = json.loads(files["summary"].read_text())
    assert written["frames_received"] == classes.size and written["ended_by"] == "scan_end"
    from orix import io

    xmap = io.load(files["h5"])
    assert [xmap.phases[int(p)].name for p in xmap.phase_id] == [("cF", "cI", "hP")[k] for k in classes]


def test_save_before_any_scan_is_a_clear_error(fixture_path, tmp_path):
    pipeline = LivePipeline(Receiver("tcp://127.0.0.1:1"), create_engine(fixture_path), model_name="fixture")
    with pytest.raises(LookupError, match="no scan"):
        pipeline.save(tmp_path)


def test_sigterm_stops_the_live_command_and_keeps_what_arrived(fixture_path, tmp_path):
    publisher = Publisher()
    classes = scan_classes()
    exe = Path(sys.executable).with_name("diffstream")
    out = tmp_path / "maps"
    process = subprocess.Popen([str(exe), "live", "--connect", publisher.url, "--model", str(fixture_path),
                                "--headless", "--out", str(out), "--batch-size", "4"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "listening on" in process.stderr.readline()  # the command is up and connecting
        sent = 0
        while sent < 12:  # repeated scan_starts let the late subscriber open the scan
            assert process.poll() is None
            publisher.socket.send_multipart(encode_scan_start(publisher.start))
            publisher.frames(classes, [sent])
            sent += 1
            time.sleep(0.2)
        time.sleep(0.5)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
        publisher.close()
    assert process.returncode == 0, stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ended_by"] == "stopped"
    assert 1 <= summary["frames_received"] <= 12
    assert "maps written to" in stderr


def test_live_command_errors_are_one_line_with_exit_code_2(fixture_path, tmp_path):
    from conftest import run_diffstream

    bad_url = run_diffstream("live", "--connect", "htp://nowhere", "--model", str(fixture_path), "--headless")
    assert bad_url.returncode == 2 and "htp://nowhere" in bad_url.stderr
    assert len(bad_url.stderr.strip().splitlines()) == 1
    unknown = run_diffstream("live", "--connect", "tcp://127.0.0.1:9", "--model", "no-such-model", "--headless")
    assert unknown.returncode == 2 and "no-such-model" in unknown.stderr
    missing_truth = run_diffstream("live", "--connect", "tcp://127.0.0.1:9", "--model", str(fixture_path),
                                   "--truth", str(tmp_path / "nope.h5"))
    assert missing_truth.returncode == 2 and "nope.h5" in missing_truth.stderr
