"""The Receiver over real ZeroMQ sockets on 127.0.0.1: complete scans, every kind of fault
counted while the scan goes on, late joiners, consecutive and restarted scans, silence,
back-pressure in both modes, the tap, stopping, and the publisher example in docs/protocol.md.

PUB/SUB loses what is sent before the subscription is in place, so each test repeats its
scan_start (as the protocol asks publishers to) until the receiver has opened the scan.
"""
from __future__ import annotations

import dataclasses
import logging
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq

from diffstream.live.batch_ring import Batch
from diffstream.live.protocol import Frame, ScanEnd, ScanStart, encode_frame, encode_scan_end, encode_scan_start
from diffstream.live.receiver import POLL_TICK_S, REJECT_REASONS, Receiver, ScanFinished, ScanStarted

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
TIMEOUT = 10.0
LOGGER = "diffstream.live.receiver"


def pattern(start: ScanStart, index: int) -> np.ndarray:
    """A frame whose pixels encode its index, so any mix-up in the copy shows."""
    h, w = start.frame_shape
    return ((np.arange(h * w) + index) % 251).astype(start.dtype).reshape(h, w)


class Publisher:
    """The test's detector server: one PUB (or PUSH) socket bound to a run-time port on 127.0.0.1."""

    def __init__(self, socket_type: int = zmq.PUB, endpoint: str = "tcp://127.0.0.1:*", **options: int) -> None:
        self.socket = zmq.Context.instance().socket(socket_type)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.SNDTIMEO, int(TIMEOUT * 1e3))
        for name, value in options.items():
            self.socket.setsockopt(getattr(zmq, name.upper()), value)
        deadline = time.monotonic() + TIMEOUT
        while True:  # rebinding a port just closed waits until ZeroMQ has let go of it
            try:
                self.socket.bind(endpoint)
                break
            except zmq.ZMQError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        self.url = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)

    def start(self, start: ScanStart) -> None:
        self.socket.send_multipart(encode_scan_start(start))

    def frame(self, start: ScanStart, index: int, t: float | None = None) -> None:
        self.socket.send_multipart(encode_frame(start.scan_id, index, time.time() if t is None else t,
                                                pattern(start, index)))

    def end(self, start: ScanStart, frames_sent: int) -> None:
        self.socket.send_multipart(encode_scan_end(ScanEnd(start.scan_id, frames_sent, time.time())))

    def raw(self, *parts: bytes) -> None:
        self.socket.send_multipart(list(parts))

    def close(self) -> None:
        self.socket.close(0)


@dataclass
class Stream:
    """What a consumer read: events, and each batch as (scan_id, indices, frames) copies."""

    items: list[object] = field(default_factory=list)

    @property
    def events(self) -> list[ScanStarted | ScanFinished]:
        return [item for item in self.items if isinstance(item, (ScanStarted, ScanFinished))]

    @property
    def finished(self) -> list[ScanFinished]:
        return [item for item in self.items if isinstance(item, ScanFinished)]

    def batches(self, scan_id: str) -> list[tuple[str, np.ndarray, np.ndarray]]:
        return [item for item in self.items if isinstance(item, tuple) and item[0] == scan_id]

    def indices(self, scan_id: str) -> list[int]:
        return [int(i) for _, indices, _ in self.batches(scan_id) for i in indices]

    def shape(self) -> list[str]:
        """The stream as event names and 'batch', with runs of batches collapsed."""
        names = [type(item).__name__ if not isinstance(item, tuple) else "batch" for item in self.items]
        return [name for k, name in enumerate(names) if name != "batch" or k == 0 or names[k - 1] != "batch"]


def read(receiver: Receiver, until: Callable[[Stream], bool], stream: Stream | None = None,
         on_batch: Callable[[], None] | None = None) -> Stream:
    """Consume like the engine thread (copy, release) until ``until(stream)`` holds."""
    stream = stream or Stream()
    deadline = time.monotonic() + TIMEOUT
    while not until(stream):
        item = receiver.get(timeout=max(deadline - time.monotonic(), 0))
        assert item is not None, f"nothing more arrived; read so far: {stream.shape()}, {receiver.stats()}"
        if isinstance(item, Batch):
            stream.items.append((item.scan_id, item.indices.copy(), item.frames.copy()))
            receiver.release(item)
            if on_batch is not None:
                on_batch()
        else:
            stream.items.append(item)
    return stream


def finished(n: int) -> Callable[[Stream], bool]:
    return lambda stream: len(stream.finished) >= n


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def handshake(publisher: Publisher, receiver: Receiver, start: ScanStart) -> None:
    """Repeat ``start`` until the receiver has opened that scan (the slow-joiner dance)."""
    deadline = time.monotonic() + TIMEOUT
    while not (receiver.stats().state == "receiving" and receiver.stats().scan_id == start.scan_id):
        assert time.monotonic() < deadline, f"the receiver never opened {start.scan_id}: {receiver.stats()}"
        publisher.start(start)
        time.sleep(0.02)


def scan(scan_id: str, scan_shape: tuple[int, int] = (4, 5), frame_shape: tuple[int, int] = (6, 7),
         dtype: str = "uint16", **kwargs: object) -> ScanStart:
    return ScanStart(scan_id, "ebsd", scan_shape, frame_shape, dtype,
                     geometry={"pc": [0.5, 0.3, 0.6], "sample_tilt": 70.0}, t=time.time(), **kwargs)


def assert_frames_match(stream: Stream, start: ScanStart) -> None:
    for _, indices, frames in stream.batches(start.scan_id):
        assert frames.dtype == np.dtype(start.dtype) and frames.shape[1:] == start.frame_shape
        for index, frame in zip(indices, frames):
            np.testing.assert_array_equal(frame, pattern(start, int(index)))


@pytest.fixture
def publisher() -> Iterator[Publisher]:
    publisher = Publisher()
    yield publisher
    publisher.close()


@pytest.fixture
def receivers() -> Iterator[Callable[..., Receiver]]:
    """Started receivers, all stopped at the end of the test."""
    made: list[Receiver] = []

    def make(url: str, **kwargs: object) -> Receiver:
        receiver = Receiver(url, **kwargs)
        made.append(receiver)
        receiver.start()
        return receiver

    yield make
    for receiver in made:
        receiver.stop()


def test_a_clean_scan_arrives_complete_and_in_order(publisher: Publisher, receivers) -> None:
    receiver = receivers(publisher.url, batch_size=8, max_wait_s=5.0)
    start = scan("clean")
    handshake(publisher, receiver, start)
    for index in range(start.n_frames):
        publisher.frame(start, index, t=1000.0 + index)
        if index == 10:  # the periodic repeat, with a later t: nothing restarts
            publisher.start(dataclasses.replace(start, t=start.t + 1))
    publisher.end(start, start.n_frames)
    stream = read(receiver, finished(1))

    assert stream.shape() == ["ScanStarted", "batch", "ScanFinished"]
    assert stream.events[0] == ScanStarted(start)
    assert stream.finished == [ScanFinished(start, start.n_frames, start.n_frames, "scan_end")]
    assert stream.indices("clean") == list(range(start.n_frames))
    assert_frames_match(stream, start)
    stats = receiver.stats()
    assert (stats.state, stats.scan_id, stats.frames_received) == ("ended", "clean", start.n_frames)
    assert sum(stats.rejected.values()) == stats.dropped_backpressure == stats.dropped_missing == 0
    assert set(stats.rejected) == set(REJECT_REASONS)
    assert stats.last_message_t is not None and stats.messages >= start.n_frames + 2


def test_frames_checked_a_batch_at_a_time_count_repeats_within_the_batch(publisher: Publisher, receivers) -> None:
    """After the first frame the receiver checks frames a held batch at a time (live/frame_layout.py);
    an index repeated inside one held batch is still a duplicate, and the batch keeps its first copy."""
    receiver = receivers(publisher.url, batch_size=16, max_wait_s=5.0)
    start = scan("repeats")
    handshake(publisher, receiver, start)
    order = [0, 1, 2, 2, 3, 1, 4, 5, 5, 5] + list(range(6, start.n_frames))
    for index in order:
        publisher.frame(start, index)
    publisher.end(start, start.n_frames)
    stream = read(receiver, finished(1))

    assert sorted(stream.indices("repeats")) == list(range(start.n_frames))
    assert_frames_match(stream, start)
    stats = receiver.stats()
    assert stats.rejected["duplicate_index"] == len(order) - start.n_frames == 4
    assert stats.frames_received == start.n_frames and sum(stats.rejected.values()) == 4


def test_batches_carry_send_and_receive_times(publisher: Publisher, receivers) -> None:
    receiver = receivers(publisher.url, batch_size=64, max_wait_s=0.01)
    start = scan("times", scan_shape=(1, 3))
    handshake(publisher, receiver, start)
    before = time.time()
    for index in range(3):
        publisher.frame(start, index, t=1000.0 + index)
    item = receiver.get(timeout=TIMEOUT)
    assert isinstance(item, ScanStarted)
    batch = receiver.get(timeout=TIMEOUT)  # a partial batch, handed over by max_wait
    assert isinstance(batch, Batch) and batch.n >= 1
    np.testing.assert_array_equal(batch.sent_t, 1000.0 + batch.indices)
    assert np.all(batch.received_t >= before - 1)
    receiver.release(batch)


def malformed(start: ScanStart) -> dict[str, list[bytes]]:
    """One message per rejection reason, all while ``start`` (a float32 scan) is the open scan."""
    good = pattern(start, 0).tobytes()
    not_a_number = pattern(start, 1)
    not_a_number[0, 0] = np.nan
    frame = {"v": 1, "type": "frame", "scan_id": start.scan_id, "index": 1, "t": 0.0}
    return {
        "not_msgpack": [b"\xc1"],
        "not_a_map": [msgpack.packb([1, 2, 3])],
        "unknown_version": [msgpack.packb({**frame, "v": 2}), good],
        "unknown_type": [msgpack.packb({"v": 1, "type": "hello", "scan_id": start.scan_id})],
        "missing_field": [msgpack.packb({k: v for k, v in frame.items() if k != "index"}), good],
        "bad_field": [msgpack.packb({**frame, "index": "1"}), good],
        "unsupported_encoding": [msgpack.packb({**start.header(), "scan_id": "zipped", "encoding": "zstd"})],
        "wrong_part_count": [msgpack.packb(frame), good, good],
        "unknown_scan": [msgpack.packb({**frame, "scan_id": "another"}), good],
        "payload_size": [msgpack.packb(frame), good[:-1]],
        "index_out_of_range": [msgpack.packb({**frame, "index": start.n_frames}), good],
        "duplicate_index": [msgpack.packb({**frame, "index": 0}), good],
        "conflicting_scan_start": [msgpack.packb({**start.header(), "frame_shape": [3, 3]})],
        "too_large": [msgpack.packb({**start.header(), "scan_id": "huge", "scan_shape": [65536, 65536]})],
        "non_finite": [msgpack.packb(frame), not_a_number.tobytes()],
    }


def test_malformed_messages_are_counted_and_logged_once_while_the_scan_completes(
        publisher: Publisher, receivers, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    receiver = receivers(publisher.url, batch_size=4, max_wait_s=5.0)
    start = scan("faulty", frame_shape=(8, 8), dtype="float32")
    handshake(publisher, receiver, start)
    publisher.frame(start, 0)
    bad = malformed(start)
    assert set(bad) == set(REJECT_REASONS)
    for _ in range(2):
        for parts in bad.values():
            publisher.raw(*parts)
    for index in range(1, start.n_frames):
        publisher.frame(start, index)
    publisher.end(start, start.n_frames)
    stream = read(receiver, finished(1))

    assert stream.finished == [ScanFinished(start, start.n_frames, start.n_frames, "scan_end")]
    assert sorted(stream.indices("faulty")) == list(range(start.n_frames))
    assert_frames_match(stream, start)
    assert receiver.stats().rejected == dict.fromkeys(REJECT_REASONS, 2)
    logged = [record.getMessage() for record in caplog.records if record.name == LOGGER]
    for reason in REJECT_REASONS:
        assert sum(f"({reason})" in message for message in logged) == 1, (reason, logged)


def test_second_parts_longer_than_a_frame_are_refused_for_what_the_whole_message_is(
        publisher: Publisher, receivers) -> None:
    """Held frames are received straight into ring rows, which cut a longer second part short;
    the reason counted must still be the reference decoder's for the whole message."""
    receiver = receivers(publisher.url, batch_size=4, max_wait_s=5.0)
    start = scan("long", frame_shape=(8, 8))
    handshake(publisher, receiver, start)
    publisher.frame(start, 0)
    frame = msgpack.packb({"v": 1, "type": "frame", "scan_id": start.scan_id, "index": 1, "t": 0.0})
    good = pattern(start, 1).tobytes()
    publisher.raw(frame, good * 2)
    publisher.raw(frame, good * 2, good)
    publisher.raw(b"\xc1", good * 2)
    publisher.raw(msgpack.packb({"v": 1, "type": "scan_start", "scan_id": "other"}), good * 2)
    for index in range(1, start.n_frames):
        publisher.frame(start, index)
    publisher.end(start, start.n_frames)
    stream = read(receiver, finished(1))

    assert sorted(stream.indices("long")) == list(range(start.n_frames))
    assert_frames_match(stream, start)
    expected = {"payload_size": 1, "wrong_part_count": 2, "not_msgpack": 1}
    assert receiver.stats().rejected == {reason: expected.get(reason, 0) for reason in REJECT_REASONS}


def test_a_subscriber_joining_mid_scan_starts_at_the_next_scan_start(publisher: Publisher, receivers) -> None:
    start = scan("late", scan_shape=(4, 5))
    publisher.start(start)
    for index in range(5):  # nobody is listening yet
        publisher.frame(start, index)
    receiver = receivers(publisher.url, batch_size=4, max_wait_s=5.0)
    while receiver.stats().messages == 0:  # frames reach the new subscriber, which cannot place them
        publisher.frame(start, 5)
        time.sleep(0.02)
    for index in range(6, 10):
        publisher.frame(start, index)
    publisher.start(start)  # the periodic repeat opens the scan for the late subscriber
    for index in range(10, 20):
        publisher.frame(start, index)
    publisher.end(start, 20)
    stream = read(receiver, finished(1))

    stats = receiver.stats()
    assert stream.shape() == ["ScanStarted", "batch", "ScanFinished"]
    assert stream.indices("late") == list(range(10, 20))
    assert stream.finished == [ScanFinished(start, 20, 10, "scan_end")]
    assert stats.rejected["unknown_scan"] == stats.messages - 12  # all but scan_start, 10 frames, scan_end
    assert stats.dropped_missing == 10


def test_two_consecutive_scans_with_different_frames_arrive_in_order(publisher: Publisher, receivers) -> None:
    receiver = receivers(publisher.url, batch_size=4, max_wait_s=5.0)
    first = scan("first", scan_shape=(3, 3), frame_shape=(6, 6), dtype="uint8")
    second = ScanStart("second", "4dstem", (2, 5), (4, 9), "float32", geometry={"voltage_kv": 300.0})
    handshake(publisher, receiver, first)
    for start in (first, second):
        publisher.start(start)
        for index in reversed(range(start.n_frames)):
            publisher.frame(start, index)
        publisher.end(start, start.n_frames)
    stream = read(receiver, finished(2))

    assert stream.shape() == ["ScanStarted", "batch", "ScanFinished", "ScanStarted", "batch", "ScanFinished"]
    assert [e.start.scan_id for e in stream.events] == ["first", "first", "second", "second"]
    for start in (first, second):
        assert sorted(stream.indices(start.scan_id)) == list(range(start.n_frames))
        assert_frames_match(stream, start)
    assert [f.reason for f in stream.finished] == ["scan_end", "scan_end"]
    assert (receiver.stats().state, receiver.stats().scan_id) == ("ended", "second")


def test_a_publisher_restarting_mid_scan_supersedes_the_open_scan(publisher: Publisher, receivers) -> None:
    receiver = receivers(publisher.url, batch_size=4, max_wait_s=5.0)
    old = scan("before-restart")
    handshake(publisher, receiver, old)
    for index in [0, 1, 2, 3, 4, 6, 7, 8, 9]:  # index 5 was lost
        publisher.frame(old, index)
    wait_for(lambda: receiver.stats().frames_received == 9, "the first scan's frames")
    publisher.close()  # the detector server restarts on the same port with a new scan
    restarted = Publisher(endpoint=publisher.url)
    try:
        new = scan("after-restart", scan_shape=(2, 2))
        handshake(restarted, receiver, new)
        for index in range(new.n_frames):
            restarted.frame(new, index)
        restarted.end(new, new.n_frames)
        stream = read(receiver, finished(2))
    finally:
        restarted.close()

    assert stream.shape() == ["ScanStarted", "batch", "ScanFinished", "ScanStarted", "batch", "ScanFinished"]
    assert stream.finished == [ScanFinished(old, None, 9, "superseded"), ScanFinished(new, 4, 4, "scan_end")]
    assert sorted(stream.indices("before-restart")) == [0, 1, 2, 3, 4, 6, 7, 8, 9]
    assert receiver.stats().dropped_missing == 1  # the gap below the highest index seen


def test_silence_during_a_scan_shows_and_the_thread_sleeps(publisher: Publisher, receivers) -> None:
    receiver = receivers(publisher.url, silence_s=0.3)
    start = scan("quiet")
    handshake(publisher, receiver, start)
    publisher.frame(start, 0)
    wait_for(lambda: receiver.stats().state == "silent", "the silent state")

    before, t0 = receiver.stats().wakeups, time.monotonic()
    time.sleep(0.5)  # a window to count wake-ups in, not an assertion on speed
    wakeups, elapsed = receiver.stats().wakeups - before, time.monotonic() - t0
    assert wakeups <= elapsed / POLL_TICK_S + 2, f"{wakeups} wake-ups in {elapsed:.2f} s: the loop is spinning"

    publisher.frame(start, 1)
    wait_for(lambda: receiver.stats().state == "receiving", "the end of the silence")
    assert receiver.stats().frames_received == 2


def test_pull_is_lossless_with_a_slow_consumer() -> None:
    pusher = Publisher(zmq.PUSH, sndhwm=2, sndbuf=1 << 16)
    receiver = Receiver(pusher.url, socket_type="pull", batch_size=4, n_slots=2, rcvhwm=2)
    start = scan("lossless", scan_shape=(10, 10), frame_shape=(512, 512))  # 100 × 512 KiB: beyond any buffering
    errors: list[BaseException] = []

    def send() -> None:
        try:
            for index in range(start.n_frames):
                pusher.frame(start, index)
            pusher.end(start, start.n_frames)
        except BaseException as error:  # surfaced by the assertions below
            errors.append(error)

    sender = threading.Thread(target=send, daemon=True)
    try:
        with receiver:
            handshake(pusher, receiver, start)
            sender.start()
            sender.join(0.5)  # the consumer is not reading yet
            assert sender.is_alive(), "back-pressure should hold the sender while nothing is consumed"
            assert receiver.stats().frames_received <= 2 * 4 + 4  # the ring plus at most a batch waiting for a slot
            stream = read(receiver, finished(1), on_batch=lambda: time.sleep(0.002))
            sender.join(TIMEOUT)
    finally:
        pusher.close()

    assert not errors
    assert stream.finished == [ScanFinished(start, start.n_frames, start.n_frames, "scan_end")]
    assert stream.indices("lossless") == list(range(start.n_frames))
    assert_frames_match(stream, start)
    stats = receiver.stats()
    assert stats.dropped_backpressure == stats.dropped_missing == 0 and stats.state == "stopped"


def test_sub_drops_and_counts_what_a_stalled_consumer_cannot_take(publisher: Publisher, receivers) -> None:
    receiver = receivers(publisher.url, batch_size=4, n_slots=2, max_wait_s=5.0)
    start = scan("flood", scan_shape=(10, 20), frame_shape=(4, 4), dtype="uint8")
    handshake(publisher, receiver, start)
    for index in range(start.n_frames):
        publisher.frame(start, index)
    publisher.end(start, start.n_frames)
    wait_for(lambda: receiver.stats().state == "ended", "the scan_end")  # consumer stalled until now
    stream = read(receiver, finished(1))

    delivered = len(stream.indices("flood"))
    stats = receiver.stats()
    assert stream.finished == [ScanFinished(start, start.n_frames, start.n_frames, "scan_end")]
    assert delivered <= 2 * 4 and delivered + stats.dropped_backpressure == start.n_frames
    assert stats.dropped_missing == 0


def test_the_tap_sees_accepted_messages_in_order_and_its_errors_are_contained(
        publisher: Publisher, receivers, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger=LOGGER)
    seen: list[tuple[str, object]] = []

    def tap(message: object) -> None:
        seen.append((type(message).__name__, getattr(message, "index", None)))
        if isinstance(message, Frame):
            assert bytes(message.payload) == pattern(start, message.index).tobytes()
            if message.index % 3 == 0:
                raise RuntimeError("recorder hiccup")

    receiver = receivers(publisher.url, tap=tap)
    start = scan("tapped", scan_shape=(2, 3))
    handshake(publisher, receiver, start)
    for index in range(start.n_frames):
        publisher.frame(start, index)
        publisher.raw(b"\xc1")  # rejected: never reaches the tap
    publisher.end(start, start.n_frames)
    stream = read(receiver, finished(1))

    assert [name for name, _ in seen if name != "ScanStart"] == ["Frame"] * 6 + ["ScanEnd"]
    assert [index for name, index in seen if name == "Frame"] == list(range(6))
    assert seen[0][0] == "ScanStart"
    assert stream.indices("tapped") == list(range(6))
    assert receiver.stats().tap_errors == 2
    assert sum("tap failed" in record.getMessage() for record in caplog.records) == 1


def test_stopping_mid_scan_finishes_it_and_keeps_what_arrived(publisher: Publisher) -> None:
    receiver = Receiver(publisher.url, batch_size=4)
    with receiver:
        start = scan("interrupted")
        handshake(publisher, receiver, start)
        for index in range(6):
            publisher.frame(start, index)
        wait_for(lambda: receiver.stats().frames_received == 6, "six frames")
    receiver.stop()  # a second stop is harmless
    stream = read(receiver, finished(1))

    assert stream.shape() == ["ScanStarted", "batch", "ScanFinished"]
    assert stream.finished == [ScanFinished(start, None, 6, "stopped")]
    assert stream.indices("interrupted") == list(range(6))
    assert receiver.stats().state == "stopped"
    assert receiver.get(timeout=0) is None


def test_stopping_keeps_frames_held_for_their_batch_check_and_does_not_wait_for_it(publisher: Publisher) -> None:
    """Frames after the first are held until their batch would fill or ``max_wait_s`` passes; a stop
    in between ends the thread within a poll tick and still hands them over."""
    receiver = Receiver(publisher.url, batch_size=64, max_wait_s=60.0, silence_s=60.0)
    receiver.start()
    start = scan("held")
    handshake(publisher, receiver, start)
    for index in range(5):
        publisher.frame(start, index)
    time.sleep(0.5)  # time for the frames to arrive; held ones are counted only when checked
    receiver.stop(timeout=10)
    assert not receiver._thread.is_alive()
    stream = read(receiver, finished(1))

    assert stream.finished == [ScanFinished(start, None, 5, "stopped")]
    assert sorted(stream.indices("held")) == list(range(5))
    assert_frames_match(stream, start)


def test_the_state_follows_the_connection() -> None:
    probe = Publisher()
    url = probe.url
    probe.close()  # nobody listens on this port now
    receiver = Receiver(url)
    assert receiver.stats().state == "connecting"
    with receiver:
        assert receiver.stats().state == "connecting"
        listener = Publisher(endpoint=url)
        try:
            wait_for(lambda: receiver.stats().state == "waiting", "the connection")
        finally:
            listener.close()
    assert receiver.stats().state == "stopped"


def test_a_receiver_that_never_started_can_be_stopped() -> None:
    receiver = Receiver("inproc://never-started")
    receiver.stop()
    assert receiver.stats().state == "stopped"


@pytest.mark.parametrize("url", ["", "127.0.0.1:5555", "http://127.0.0.1:5555", "tcp://127.0.0.1",
                                 "tcp://127.0.0.1:0", "tcp://127.0.0.1:70000", "tcp://:5555", "tcp://bad host:5555",
                                 "ipc://" + "x" * 300])
def test_a_malformed_url_is_one_clear_line(url: str) -> None:
    with pytest.raises(ValueError) as raised:
        Receiver(url)
    message = str(raised.value)
    assert repr(url) in message and "\n" not in message


def test_a_bad_socket_type_is_refused() -> None:
    with pytest.raises(ValueError, match="socket_type"):
        Receiver("inproc://unused", socket_type="req")


def test_the_publisher_example_in_the_specification_runs(tmp_path: Path) -> None:
    code = re.search(r"## Minimal publisher\n.*?```python\n(.*?)```", DOC.read_text(encoding="utf-8"), re.DOTALL)
    assert code, "docs/protocol.md lost its publisher example"
    script = tmp_path / "publisher.py"
    script.write_text(code[1], encoding="utf-8")
    process = subprocess.Popen([sys.executable, str(script), "tcp://127.0.0.1:*"], stdout=subprocess.PIPE, text=True)
    try:
        url = process.stdout.readline().strip()
        assert url.startswith("tcp://127.0.0.1:"), url
        with Receiver(url, batch_size=8) as receiver:
            stream = read(receiver, finished(1))
        assert process.wait(TIMEOUT) == 0
    finally:
        process.kill()
        process.stdout.close()

    (start,) = [event.start for event in stream.events if isinstance(event, ScanStarted)]
    assert (start.kind, start.scan_shape, start.frame_shape, start.dtype) == ("ebsd", (4, 5), (60, 60), "uint16")
    assert set(start.geometry) == {"pc", "sample_tilt", "detector_tilt", "binning", "px_size_um"}
    assert stream.finished == [ScanFinished(start, 20, 20, "scan_end")]
    assert stream.indices(start.scan_id) == list(range(20))
    for _, indices, frames in stream.batches(start.scan_id):
        assert all((frame == index).all() for index, frame in zip(indices, frames))
    assert sum(receiver.stats().rejected.values()) == 0
