"""Bad input at the receiver, property-based: whatever mixture of faulty messages arrives in
the middle of a scan, each is rejected under its reason, every good frame still arrives, and
memory stays flat however many bad messages come (absurd scan shapes allocate nothing).

PUSH/PULL is used because it is lossless, so the counts can be checked exactly.
"""
from __future__ import annotations

import collections
import time
import tracemalloc

import msgpack
import numpy as np
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_receiver import Publisher, pattern

from diffstream.live.batch_ring import Batch
from diffstream.live.protocol import ScanEnd, ScanStart, encode_scan_end, encode_scan_start
from diffstream.live.receiver import REJECT_REASONS, Receiver, ScanFinished, ScanStarted

TIMEOUT = 10.0
START = ScanStart("good", "ebsd", (3, 4), (5, 6), "float32", t=1.0)


def frame_header(**fields: object) -> bytes:
    return msgpack.packb({"v": 1, "type": "frame", "scan_id": START.scan_id, "index": 0, "t": 1.0, **fields})


def start_header(**fields: object) -> bytes:
    return msgpack.packb({**START.header(), "scan_id": "other", **fields})


good = pattern(START, 0)
nan_frame = good.copy()
nan_frame[2, 3] = np.nan

# Each fault: a strategy for (parts, reason); reason None means "any listed reason".
faults = st.one_of(
    st.lists(st.binary(max_size=48), min_size=1, max_size=3).map(lambda parts: (parts, None)),
    st.integers(0, good.nbytes - 1).map(lambda n: ([frame_header(), good.tobytes()[:n]], "payload_size")),
    st.sampled_from(["uint8", "uint16"]).map(lambda d: ([frame_header(), good.astype(d).tobytes()], "payload_size")),
    st.integers(2, 1000).map(lambda v: ([frame_header(v=v), good.tobytes()], "unknown_version")),
    st.just(([frame_header(index=1), nan_frame.tobytes()], "non_finite")),
    st.sampled_from([np.inf, -np.inf]).map(
        lambda x: ([frame_header(index=2), np.full(START.frame_shape, x, np.float32).tobytes()], "non_finite")),
    st.tuples(st.integers(4097, 1 << 16), st.integers(4097, 1 << 16)).map(
        lambda shape: ([start_header(scan_shape=list(shape))], "too_large")),
    st.tuples(st.integers(1 << 17, 1 << 40), st.integers(1, 3)).map(
        lambda shape: ([start_header(scan_shape=list(shape))], "bad_field")),
    st.integers(-(1 << 40), -1).map(lambda i: ([frame_header(index=i), good.tobytes()], "bad_field")),
    st.integers(START.n_frames, 1 << 62).map(lambda i: ([frame_header(index=i), good.tobytes()], "index_out_of_range")),
    st.just(([frame_header(index=0), good.tobytes()], "duplicate_index")),  # index 0 is sent first, below
    st.text(min_size=1, max_size=8).filter(lambda s: s != START.scan_id).map(
        lambda s: ([frame_header(scan_id=s), good.tobytes()], "unknown_scan")),
    st.just(([msgpack.packb({**START.header(), "frame_shape": [7, 7]})], "conflicting_scan_start")),
)


def receive_scan(receiver: Receiver) -> list[int]:
    """Every index the receiver delivered until the scan finished."""
    indices: list[int] = []
    deadline = time.monotonic() + TIMEOUT
    while True:
        item = receiver.get(timeout=max(deadline - time.monotonic(), 0))
        assert item is not None, f"the scan never finished: {receiver.stats()}"
        if isinstance(item, Batch):
            indices.extend(int(i) for i in item.indices)
            np.testing.assert_array_equal(item.frames[0], pattern(START, int(item.indices[0])))
            receiver.release(item)
        elif isinstance(item, ScanFinished):
            return indices
        else:
            assert isinstance(item, ScanStarted)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(faults, st.integers(1, START.n_frames - 1)), max_size=12))
def test_every_fault_in_a_scan_is_counted_under_its_reason_and_every_good_frame_arrives(bad: list) -> None:
    pusher = Publisher(zmq.PUSH)
    receiver = Receiver(pusher.url, socket_type="pull", batch_size=4, max_wait_s=0.01)
    try:
        with receiver:
            pusher.socket.send_multipart(encode_scan_start(START))
            for index in range(START.n_frames):
                for (parts, _), position in bad:
                    if position == index:
                        pusher.raw(*parts)
                pusher.frame(START, index)
            pusher.socket.send_multipart(encode_scan_end(ScanEnd(START.scan_id, START.n_frames)))
            indices = receive_scan(receiver)
    finally:
        pusher.close()
    stats = receiver.stats()
    assert sorted(indices) == list(range(START.n_frames))
    assert stats.frames_received == START.n_frames and stats.dropped_missing == 0
    expected = collections.Counter(reason for (_, reason), _ in bad if reason is not None)
    unknown = sum(reason is None for (_, reason), _ in bad)
    assert set(stats.rejected) == set(REJECT_REASONS)
    assert sum(stats.rejected.values()) == len(bad)
    for reason, count in expected.items():
        assert count <= stats.rejected[reason] <= count + unknown, (reason, stats.rejected)


def test_memory_stays_flat_under_a_flood_of_bad_messages_and_absurd_scans_allocate_nothing() -> None:
    pusher = Publisher(zmq.PUSH)
    receiver = Receiver(pusher.url, socket_type="pull", batch_size=16, max_wait_s=0.01)
    huge = [start_header(scan_id=f"huge-{k}", scan_shape=[65536, 65536]) for k in range(4)]
    flood = [[b"\xc1 garbage"], [frame_header(), b"short"], [frame_header(v=7), good.tobytes()],
             [frame_header(index=1 << 40), good.tobytes()], [frame_header(scan_id="nobody"), good.tobytes()],
             [frame_header(index=3), nan_frame.tobytes()], *[[h] for h in huge]]
    rounds = 1500

    def send_flood(marker: int) -> None:
        for _ in range(rounds):
            for parts in flood:
                pusher.raw(*parts)
        pusher.frame(START, marker)  # the flood has been read when this good frame arrives

    try:
        with receiver:
            pusher.socket.send_multipart(encode_scan_start(START))
            pusher.frame(START, 0)
            send_flood(marker=10)  # warm-up: caches, logging, zmq buffers
            _wait_frames(receiver, 2)
            tracemalloc.start()
            try:
                before = tracemalloc.get_traced_memory()[0]
                tracemalloc.reset_peak()
                pusher.frame(START, 1)
                send_flood(marker=11)
                _wait_frames(receiver, 4)
                after, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
    finally:
        pusher.close()
    stats = receiver.stats()
    assert stats.rejected["too_large"] == 2 * rounds * len(huge)
    assert stats.rejected["non_finite"] == 2 * rounds and stats.rejected["not_msgpack"] == 2 * rounds
    assert stats.state == "stopped" and stats.scan_id == START.scan_id  # no rejected scan_start took over
    grown = (after - before) / 1e6
    assert grown < 1, f"memory grew by {grown:.1f} MB over {rounds * len(flood)} bad messages"
    assert peak - before < 16 << 20, f"a peak of {(peak - before) / 1e6:.0f} MB: something allocated per scan point"


def _wait_frames(receiver: Receiver, n: int) -> None:
    deadline = time.monotonic() + 60
    while receiver.stats().frames_received < n:
        assert time.monotonic() < deadline, receiver.stats()
        time.sleep(0.01)
