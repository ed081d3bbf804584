"""BatchRing: batches hand over when full or late, in one ordered stream with events, and
back-pressure either drops (counted) or blocks the producer; buffers follow the frame shape."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from diffstream.live.batch_ring import Batch, BatchRing

SHAPE = (3, 5)


def payload(index: int, shape: tuple[int, int] = SHAPE, dtype: str = "uint8") -> bytes:
    """A frame whose pixels encode its index, so a mixed-up copy shows."""
    return (np.arange(shape[0] * shape[1]) + index).astype(dtype).reshape(shape).tobytes()


def put(ring: BatchRing, index: int, **kwargs: object) -> bool:
    return ring.put_frame(index, payload(index, **kwargs), sent_t=1000.0 + index, received_t=2000.0 + index)


def make_ring(**kwargs: object) -> BatchRing:
    ring = BatchRing(kwargs.pop("batch_size", 4), **{"max_wait_s": 60.0, **kwargs})
    ring.configure("scan-a", SHAPE, "uint8")
    return ring


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def test_a_full_batch_is_handed_over_at_once_with_its_metadata() -> None:
    ring = make_ring()
    for index in (7, 2, 9, 4):
        assert put(ring, index)
    batch = ring.get(timeout=0)
    assert isinstance(batch, Batch)
    assert (batch.scan_id, batch.n) == ("scan-a", 4)
    assert batch.frames.shape == (4, *SHAPE) and batch.frames.dtype == np.uint8
    assert batch.indices.dtype == np.int64 and list(batch.indices) == [7, 2, 9, 4]
    for row, index in enumerate(batch.indices):
        np.testing.assert_array_equal(batch.frames[row], np.frombuffer(payload(int(index)), np.uint8).reshape(SHAPE))
    np.testing.assert_array_equal(batch.sent_t, 1000.0 + batch.indices)
    np.testing.assert_array_equal(batch.received_t, 2000.0 + batch.indices)
    assert ring.get(timeout=0) is None


def test_a_partial_batch_is_flushed_once_max_wait_has_passed() -> None:
    ring = make_ring(max_wait_s=0.05)
    put(ring, 0)
    put(ring, 1)
    assert ring.get(timeout=0) is None
    deadline = time.monotonic() + 10
    while (due := ring.flush_due()) is not None:  # what the receiver thread does between polls
        assert 0 < due <= 0.05
        assert time.monotonic() < deadline
        time.sleep(due)
    batch = ring.get(timeout=0)
    assert batch.n == 2 and list(batch.indices) == [0, 1]
    assert ring.flush_due() is None


def test_a_frame_arriving_after_the_deadline_closes_its_batch() -> None:
    ring = make_ring(max_wait_s=0.0)
    put(ring, 0)
    put(ring, 1)
    assert [ring.get(timeout=0).n, ring.get(timeout=0).n] == [1, 1]


def test_events_and_batches_come_out_in_arrival_order() -> None:
    ring = make_ring(batch_size=3)
    ring.put_event("start a")
    for index in range(5):
        put(ring, index)
    ring.put_event("end a")  # hands the partial batch (3, 4) over first
    ring.configure("scan-b", SHAPE, "uint8")
    ring.put_event("start b")
    put(ring, 0)
    ring.put_event("end b")
    stream = []
    while (item := ring.get(timeout=0)) is not None:
        stream.append(item if isinstance(item, str) else (item.scan_id, list(item.indices)))
        if isinstance(item, Batch):
            ring.release(item)
    assert stream == ["start a", ("scan-a", [0, 1, 2]), ("scan-a", [3, 4]), "end a",
                      "start b", ("scan-b", [0]), "end b"]


def test_drop_mode_drops_and_counts_frames_when_every_slot_is_taken() -> None:
    ring = make_ring(batch_size=2, n_slots=2, mode="drop")
    assert all(put(ring, index) for index in range(4))
    assert not put(ring, 4) and not put(ring, 5)
    assert ring.dropped == 2
    first = ring.get(timeout=0)
    ring.release(first)
    assert put(ring, 6)
    assert ring.dropped == 2
    assert list(ring.get(timeout=0).indices) == [2, 3]


def test_put_frames_keeps_what_fits_and_counts_every_frame_it_drops() -> None:
    ring = make_ring(batch_size=2, n_slots=1, mode="drop")
    frames = np.stack([np.frombuffer(payload(index), np.uint8) for index in range(5)])
    times = np.arange(5.0)
    assert ring.put_frames(np.arange(5), frames, times, times, times) == 2
    assert ring.dropped == 3
    batch = ring.get(timeout=0)
    assert list(batch.indices) == [0, 1]
    np.testing.assert_array_equal(batch.frames.reshape(2, -1), frames[:2])


def test_frames_received_into_lent_rows_are_kept_in_place_with_the_gaps_closed() -> None:
    ring = make_ring(batch_size=4)
    put(ring, 7)
    lent = ring.open_rows(time.monotonic())
    assert len(lent.views) == 3 and lent.array.shape == (3, SHAPE[0] * SHAPE[1])
    for view, index in zip(lent.views, (20, 21, 22)):
        view[:] = payload(index)  # what recv_into does
    np.testing.assert_array_equal(lent.array[1], np.frombuffer(payload(21), np.uint8))
    ring.commit(np.array([0, 2]), np.array([20, 22]), np.array([1020.0, 1022.0]), np.array([2020.0, 2022.0]))
    assert ring.get(timeout=0) is None  # three of four rows taken
    put(ring, 30)
    batch = ring.get(timeout=0)
    assert list(batch.indices) == [7, 20, 22, 30]
    for row, index in enumerate(batch.indices):
        np.testing.assert_array_equal(batch.frames[row], np.frombuffer(payload(int(index)), np.uint8).reshape(SHAPE))
    np.testing.assert_array_equal(batch.sent_t, 1000.0 + batch.indices)
    np.testing.assert_array_equal(batch.received_t, 2000.0 + batch.indices)


def test_lent_rows_that_keep_nothing_give_the_slot_back_and_no_empty_batch_goes_out() -> None:
    ring = make_ring(batch_size=2, n_slots=1)
    lent = ring.open_rows(time.monotonic())
    ring.commit(np.array([], np.int64), np.array([], np.int64), np.array([]), np.array([]))
    ring.flush()
    assert ring.get(timeout=0) is None
    assert put(ring, 0) and put(ring, 1)  # the only slot is free again
    assert list(ring.get(timeout=0).indices) == [0, 1] and len(lent.views) == 2


def test_no_rows_are_lent_when_every_slot_is_taken_and_nothing_counts_as_dropped() -> None:
    ring = make_ring(batch_size=1, n_slots=1, mode="drop")
    put(ring, 0)
    assert ring.open_rows(time.monotonic()) is None
    assert ring.dropped == 0


def test_block_mode_makes_the_producer_wait_for_a_released_slot() -> None:
    ring = make_ring(batch_size=2, n_slots=1, mode="block")
    done = threading.Event()
    results: list[bool] = []

    def produce() -> None:
        results.extend(put(ring, index) for index in range(4))
        ring.flush()
        done.set()

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    first = ring.get(timeout=10)
    assert list(first.indices) == [0, 1]
    assert not done.wait(0.2), "the producer should be waiting for the only slot"
    ring.release(first)
    assert done.wait(10)
    second = ring.get(timeout=10)
    assert list(second.indices) == [2, 3] and results == [True] * 4 and ring.dropped == 0
    producer.join(10)


def test_interrupt_ends_a_blocked_producer_wait_and_counts_the_frame() -> None:
    ring = make_ring(batch_size=1, n_slots=1, mode="block")
    put(ring, 0)
    outcome: list[bool] = []
    producer = threading.Thread(target=lambda: outcome.append(put(ring, 1)), daemon=True)
    producer.start()
    ring.interrupt()
    producer.join(10)
    assert outcome == [False] and ring.dropped == 1


def test_a_new_frame_shape_gets_fresh_buffers_without_touching_held_batches() -> None:
    live: list[np.ndarray] = []

    def allocate(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        array = np.empty(shape, dtype)
        live.append(array)
        return array

    ring = BatchRing(2, n_slots=3, max_wait_s=60.0, allocate=allocate)
    ring.configure("small", SHAPE, "uint8")
    assert len(live) == 3 and all(a.shape == (2, *SHAPE) for a in live)
    put(ring, 0)
    put(ring, 1)
    held = ring.get(timeout=0)
    kept = held.frames.copy()

    ring.configure("same-layout", SHAPE, "uint8")
    assert len(live) == 3, "the same frame shape and dtype reuse the buffers"

    ring.configure("big", (4, 6), "uint16")
    assert len(live) == 5, "two free old buffers are replaced; the held one still counts"
    assert [a.shape for a in live[3:]] == [(2, 4, 6)] * 2 and live[3].dtype == np.uint16
    for index in range(4):
        assert ring.put_frame(index, payload(index, (4, 6), "uint16"), 0.0, 0.0)
    assert not ring.put_frame(4, payload(4, (4, 6), "uint16"), 0.0, 0.0), "at most n_slots buffers in all"
    np.testing.assert_array_equal(held.frames, kept)

    ring.release(held)  # an old-layout buffer: discarded, making room for a new one
    assert ring.put_frame(5, payload(5, (4, 6), "uint16"), 0.0, 0.0)
    assert len(live) == 6 and live[5].shape == (2, 4, 6)
    batches = [ring.get(timeout=0) for _ in range(2)]
    assert [b.scan_id for b in batches] == ["big", "big"]
    assert batches[0].frames.shape == (2, 4, 6) and batches[0].frames.dtype == np.uint16
    assert np.shares_memory(batches[0].frames, live[3]) or np.shares_memory(batches[0].frames, live[4])


def test_releasing_twice_is_an_error() -> None:
    ring = make_ring(batch_size=1)
    put(ring, 0)
    batch = ring.get(timeout=0)
    ring.release(batch)
    with pytest.raises(ValueError, match="already released"):
        ring.release(batch)


def test_get_waits_for_an_item_from_another_thread() -> None:
    ring = make_ring(batch_size=1)
    assert ring.get(timeout=0.01) is None
    threading.Timer(0.05, lambda: ring.put_event("late")).start()
    assert ring.get(timeout=10) == "late"


@pytest.mark.parametrize("kwargs", [{"batch_size": 0}, {"n_slots": 0}, {"max_wait_s": -1.0},
                                    {"max_wait_s": float("nan")}, {"mode": "wait"}])
def test_bad_settings_are_refused(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        settings = dict(kwargs)
        BatchRing(settings.pop("batch_size", 4), **settings)


def test_a_frame_before_configure_is_a_programming_error() -> None:
    with pytest.raises(RuntimeError, match="configure"):
        BatchRing(4).put_frame(0, b"\0" * 15, 0.0, 0.0)


def test_an_allocator_returning_the_wrong_array_is_refused() -> None:
    ring = BatchRing(4, allocate=lambda shape, dtype: np.empty(shape[::-1], dtype))
    with pytest.raises(ValueError, match="allocate returned"):
        ring.configure("scan", SHAPE, "uint8")
