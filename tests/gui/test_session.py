"""The window's session (receiver, engine and pipeline from the controls' settings) and the cache
of recent frames it shows patterns from, without Qt: recording a stream, replaying the
recording through a ``diffstream replay`` child process, and the errors the window shows."""
from __future__ import annotations

import time

import h5py
import numpy as np
import pytest

from diffstream.gui.session import Session, SessionError, SessionSettings
from diffstream.live.frame_cache import FrameCache
from fixture_model import frame_of_class

WAIT_S = 30.0


def wait_until(condition, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def frames(n: int, shape=(4, 5), start: int = 0) -> np.ndarray:
    return (np.arange(start, start + n, dtype=np.uint16)[:, None, None] * np.ones(shape, dtype=np.uint16))


def test_the_frame_cache_keeps_the_newest_frames_by_scan_index_within_its_bytes():
    cache = FrameCache(max_bytes=10 * 4 * 5 * 2)  # ten frames of 4×5 uint16
    assert cache.latest() is None and cache.get("a", 0) is None
    cache.put("a", np.arange(6), frames(6), np.array([time.time() - 0.5] * 6))
    assert cache.capacity == 10 and 0.5 <= cache.latency_s < 5
    assert (cache.get("a", 4) == 4).all() and cache.get("b", 4) is None
    cache.put("a", np.arange(6, 13), frames(7, start=6))  # wraps: 0, 1 and 2 are overwritten
    assert [cache.get("a", i) is None for i in range(4)] == [True, True, True, False]
    scan_id, index, frame = cache.latest()
    assert (scan_id, index) == ("a", 12) and (frame == 12).all()
    cache.put("a", np.array([5]), frames(1, start=99))  # sent again: the newest copy wins
    assert (cache.get("a", 5) == 99).all()
    cache.put("a", np.arange(100, 125), frames(25, start=100))  # more than it holds: the last ten
    assert cache.get("a", 114) is None and (cache.get("a", 115) == 115).all()
    cache.put("b", np.array([0]), np.zeros((1, 8, 8), dtype=np.uint8))  # a new scan starts afresh
    assert cache.get("a", 124) is None and cache.get("b", 0).shape == (8, 8)
    assert cache.capacity == 10 * 4 * 5 * 2 // 64


def test_a_model_that_does_not_load_and_a_bad_url_are_one_line_session_errors(tmp_path, fixture_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not a model")
    session = Session()
    with pytest.raises(SessionError) as error:
        session.start(SessionSettings(url="tcp://127.0.0.1:5555", model=str(bad)))
    assert str(bad) in str(error.value) and "not an ONNX file" in str(error.value)
    with pytest.raises(SessionError, match="no model file"):
        session.start(SessionSettings(url="tcp://127.0.0.1:5555", model=str(tmp_path / "missing.onnx")))
    with pytest.raises(SessionError, match="nonsense"):
        session.start(SessionSettings(url="nonsense", model=str(fixture_path)))
    assert session.pipeline is None and not session.running
    session.save(tmp_path / "out")
    assert session.save_message.startswith("nothing to save")


def test_a_recorded_stream_replays_into_the_same_map(publisher, classes, fixture_path, tmp_path):
    recording = tmp_path / "rec" / "stream.h5"
    session = Session()
    try:
        session.start(SessionSettings(url=publisher.url, model=str(fixture_path), record=recording))
        publisher.announce_until(lambda: session.pipeline.receiver_stats().scan_id == "scan-1")
        publisher.frames(classes, range(classes.size))
        publisher.end(classes.size)
        wait_until(lambda: session.pipeline.receiver_stats().state == "ended")
        recorded = session.pipeline.snapshot()
        session.stop()
        assert not session.running
        with h5py.File(recording) as file:
            assert sum(len(group["frames"]) for group in file["scans"].values()) == classes.size

        used = session.replay(recording, SessionSettings(url="", model=str(fixture_path)))
        assert used.url.startswith("tcp://127.0.0.1:") and session.running
        wait_until(lambda: (s := session.pipeline.snapshot()) is not None and s.n_received == classes.size)
        replayed = session.pipeline.snapshot()
        assert (replayed.class_id == recorded.class_id).all()
        assert (replayed.class_id.ravel() == classes).all()
        assert session.replay_problem() is None
        scan_id = session.pipeline.receiver_stats().scan_id
        assert (session.frame_cache.get(scan_id, 7) == frame_of_class(int(classes[7]), (24, 24), seed=7)).all()
    finally:
        session.close()


def test_a_file_replay_cannot_read_is_reported(tmp_path, fixture_path):
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(b"\x00" * 100)
    session = Session()
    try:
        session.replay(garbage, SessionSettings(url="", model=str(fixture_path)))
        wait_until(lambda: session.replay_problem() is not None, timeout=120)
        assert session.replay_problem().startswith("replay of the file failed: ")
        assert "garbage.h5" in session.replay_problem()
    finally:
        session.close()
    with pytest.raises(SessionError, match="no file at"):
        session.replay(tmp_path / "missing.h5", SessionSettings(url="", model=str(fixture_path)))
