"""A preallocated ring of batch buffers between the receiver thread and the engine thread.

The receiver (the producer) copies each accepted frame once, from the ZeroMQ buffer
straight into a row of the batch being filled, so nothing else allocates or copies per
frame: a frame either goes in whole (:meth:`BatchRing.put_frame`) or is received into a row
that :meth:`BatchRing.open_rows` lends and then kept (:meth:`BatchRing.commit`). A batch
is handed to the consumer when it is full, so a flood of frames fills batches, or when
``max_wait_s`` has passed since its first frame, so a trickle still paints promptly.
Batches and scan events come out of :meth:`BatchRing.get` in one ordered stream: a consumer
sees a scan's start, its batches and its end in the order they arrived.

When every slot is taken the ring either drops the frame and counts it (``"drop"``, for
SUB: the live map must not fall ever further behind the beam) or makes the producer wait
(``"block"``, for PULL: lossless, the back-pressure reaches the sender through ZeroMQ).
"""
from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Allocate = Callable[[tuple[int, ...], np.dtype], np.ndarray]
"""``allocate(shape, dtype)``: returns an uninitialised C-contiguous array (np.empty by default;
a GPU engine may hand in page-locked host memory)."""

Mode = Literal["drop", "block"]


@dataclass(eq=False)
class _Slot:
    """One batch buffer; owned by the producer while filling, by the consumer once handed out."""

    layout: tuple[tuple[int, int], np.dtype]
    frames: np.ndarray
    indices: np.ndarray
    sent_t: np.ndarray
    received_t: np.ndarray
    raw: memoryview = field(init=False)
    row_bytes: int = field(init=False)
    byte_rows: np.ndarray = field(init=False)
    row_views: list[memoryview] = field(init=False)
    scan_id: str = ""
    n: int = 0
    deadline: float = 0.0
    handed_out: bool = False

    def __post_init__(self) -> None:
        # The buffer as bytes: a payload goes in by one memcpy, four times cheaper than through numpy.
        self.raw = memoryview(self.frames).cast("B")
        self.row_bytes = self.raw.nbytes // self.frames.shape[0]
        self.byte_rows = self.frames.reshape(self.frames.shape[0], -1).view(np.uint8)
        self.row_views = row_views(self.byte_rows)


def row_views(byte_rows: np.ndarray) -> list[memoryview]:
    """A writable byte view of each row of a C-contiguous uint8 array, made once so that a frame
    can be received into its row (``socket.recv_into``) without a view made per frame."""
    raw = memoryview(byte_rows).cast("B")
    size = byte_rows.shape[1]
    return [raw[start:start + size] for start in range(0, raw.nbytes, size)]


@dataclass(frozen=True, eq=False)
class OpenRows:
    """The rows of the batch being filled that are still free (from :meth:`BatchRing.open_rows`):
    as byte views to receive into and as one ``(rows, row bytes)`` uint8 array. The batch is due
    at ``deadline`` (``time.monotonic()``), which may be sooner than ``max_wait_s`` from now when
    it already holds frames."""

    views: list[memoryview]
    array: np.ndarray
    deadline: float


@dataclass(frozen=True, eq=False)
class Batch:
    """The first ``n`` frames of one slot, all from scan ``scan_id``; valid until :meth:`BatchRing.release`.

    ``indices`` are scan indices (int64), ``sent_t`` the frames' header ``t`` and
    ``received_t`` the receiver's ``time.time()`` on arrival (float64 seconds since epoch).
    """

    scan_id: str
    n: int
    frames: np.ndarray
    indices: np.ndarray
    sent_t: np.ndarray
    received_t: np.ndarray
    slot: _Slot = field(repr=False)


class BatchRing:
    """``n_slots`` buffers of ``(batch_size, h, w)`` frames, filled by one producer and drained by one consumer.

    Producer side (one thread): :meth:`configure` at every scan start, :meth:`put_frame` (or
    :meth:`put_frames`, or :meth:`open_rows` then :meth:`commit`), :meth:`put_event`, and
    :meth:`flush_due` when idle. Consumer side (any one thread):
    :meth:`get` and :meth:`release`. One lock with two conditions (items to read, space to
    write) makes it thread-safe; nobody polls.

    A scan with another frame shape or dtype gets fresh buffers rather than waiting for the
    consumer to give back every buffer of the old scan: the old scan's last batches may
    still be in the engine, and stalling the producer meanwhile would drop (SUB) or hold
    back (PULL) the new scan's first frames. Free buffers of the old layout are discarded
    at once and held ones as they are released, and no more than ``n_slots`` buffers of
    any layout exist at a time, so memory stays bounded by ``n_slots`` of the larger batch.
    """

    def __init__(self, batch_size: int, *, n_slots: int = 8, max_wait_s: float = 0.02, mode: Mode = "drop",
                 allocate: Allocate | None = None) -> None:
        if batch_size < 1 or n_slots < 1:
            raise ValueError(f"batch_size and n_slots must be at least 1, got {batch_size} and {n_slots}")
        if not max_wait_s >= 0:  # also refuses NaN; infinity means "only full batches, and at events"
            raise ValueError(f"max_wait_s must be a number of seconds ≥ 0, got {max_wait_s!r}")
        if mode not in ("drop", "block"):
            raise ValueError(f"mode must be 'drop' or 'block', got {mode!r}")
        self.batch_size = batch_size
        self.n_slots = n_slots
        self.max_wait_s = max_wait_s
        self.mode = mode
        self._allocate = allocate or (lambda shape, dtype: np.empty(shape, dtype))
        lock = threading.Lock()
        self._items = threading.Condition(lock)
        self._space = threading.Condition(lock)
        self._queue: deque[object] = deque()
        self._free: list[_Slot] = []
        self._allocated = 0
        self._layout: tuple[tuple[int, int], np.dtype] | None = None
        self._scan_id = ""
        self._open: _Slot | None = None  # producer-owned: touched by the producer thread only
        self._interrupted = False
        self._dropped = 0

    @property
    def dropped(self) -> int:
        """Frames dropped because no slot was free (or because :meth:`interrupt` ended a wait)."""
        with self._items:
            return self._dropped

    # ---- producer side -------------------------------------------------------------

    def configure(self, scan_id: str, frame_shape: tuple[int, int], dtype: str | np.dtype) -> None:
        """Make later frames belong to ``scan_id``; hand out the batch in progress first."""
        self.flush()
        layout = ((int(frame_shape[0]), int(frame_shape[1])), np.dtype(dtype))
        with self._items:
            self._scan_id = scan_id
            if layout == self._layout:
                return
            self._layout = layout
            self._allocated -= len(self._free)
            self._free.clear()
            wanted = self.n_slots - self._allocated
            self._allocated += wanted  # reserved now, allocated below without holding the lock
        fresh: list[_Slot] = []
        try:
            fresh.extend(self._new_slot(layout) for _ in range(wanted))
        finally:
            with self._items:
                self._allocated -= wanted - len(fresh)
                self._free.extend(fresh)
                self._space.notify_all()

    def put_frame(self, index: int, payload: object, sent_t: float, received_t: float) -> bool:
        """Copy one frame (a buffer of exactly h·w·itemsize bytes) into the batch being filled.

        False when the frame was dropped: no slot free in "drop" mode, or the wait for
        one ended by :meth:`interrupt` in "block" mode.
        """
        slot = self._open or self._open_slot(time.monotonic())
        if slot is None:
            self._count_dropped(1)
            return False
        start = slot.n * slot.row_bytes
        try:
            slot.raw[start:start + slot.row_bytes] = payload
        except (TypeError, ValueError):  # a typed buffer (e.g. a uint16 array's), not plain bytes
            slot.raw[start:start + slot.row_bytes] = memoryview(payload).cast("B")
        self._fill(slot, 1, index, sent_t, received_t)
        return True

    def put_frames(self, indices: np.ndarray, frames: np.ndarray, sent_t: np.ndarray, received_t: np.ndarray,
                   arrived: np.ndarray) -> int:
        """:meth:`put_frame` for many frames at once, given as rows of bytes (uint8, h·w·itemsize
        each); returns how many were kept. ``arrived`` holds their ``time.monotonic()`` arrival
        times: a batch they open is due ``max_wait_s`` after its first frame arrived, not after it
        was put. When no slot is free, the frames not yet placed are dropped (or, in "block"
        mode, wait).
        """
        placed = 0
        while placed < len(frames):
            slot = self._open or self._open_slot(float(arrived[placed]))
            if slot is None:
                self._count_dropped(len(frames) - placed)
                return placed
            take = min(len(frames) - placed, self.batch_size - slot.n)
            rows, chosen = slice(slot.n, slot.n + take), slice(placed, placed + take)
            slot.byte_rows[rows] = frames[chosen]
            self._fill(slot, take, indices[chosen], sent_t[chosen], received_t[chosen])
            placed += take
        return placed

    def open_rows(self, arrived: float) -> OpenRows | None:
        """Lend the free rows of the batch being filled (opening one, due ``max_wait_s`` after
        ``arrived``, if none is), so that frames can be received straight into them; None when no
        slot is free ("drop" mode) or a wait for one was interrupted. Until :meth:`commit`, the
        producer must not put frames, events or flush."""
        slot = self._open or self._open_slot(arrived)
        if slot is None:
            return None
        return OpenRows(slot.row_views[slot.n:], slot.byte_rows[slot.n:], slot.deadline)

    def commit(self, rows: np.ndarray, indices: np.ndarray, sent_t: np.ndarray, received_t: np.ndarray) -> None:
        """Keep the frames received into the lent rows at positions ``rows`` (ascending, counted
        from the first lent row) and give the other lent rows back; the batch goes out if that
        fills it or it is due."""
        slot = self._open
        take = len(rows)
        if take and rows[-1] != take - 1:  # some lent rows are not kept: close the gaps
            slot.byte_rows[slot.n:slot.n + take] = slot.byte_rows[slot.n + rows]
        self._fill(slot, take, indices, sent_t, received_t)

    def _fill(self, slot: _Slot, take: int, indices: np.ndarray | int, sent_t: np.ndarray | float,
              received_t: np.ndarray | float) -> None:
        """Record ``take`` frames just written after the slot's first ``n`` (their indices and
        times as arrays, or as scalars for one frame), and flush the batch if it is full or due
        (a due slot that holds nothing goes back to the free ones)."""
        rows = slice(slot.n, slot.n + take)
        slot.indices[rows] = indices
        slot.sent_t[rows] = sent_t
        slot.received_t[rows] = received_t
        slot.n += take
        if slot.n == self.batch_size or time.monotonic() >= slot.deadline:
            self.flush()

    def put_event(self, event: object) -> None:
        """Append a scan event to the stream, after the batch in progress (which is handed out first)."""
        self.flush()
        with self._items:
            self._queue.append(event)
            self._items.notify()

    def flush(self) -> None:
        """Hand out the batch in progress now, however full."""
        slot = self._open
        if slot is None:
            return
        self._open = None
        n = slot.n
        if n == 0:  # lent rows that received nothing to keep: the slot is free again
            with self._space:
                self._free.append(slot)
                self._space.notify()
            return
        batch = Batch(slot.scan_id, n, slot.frames[:n], slot.indices[:n], slot.sent_t[:n], slot.received_t[:n],
                      slot)
        with self._items:
            slot.handed_out = True
            self._queue.append(batch)
            self._items.notify()

    def flush_due(self) -> float | None:
        """Hand out the batch in progress if its ``max_wait_s`` is up; else the seconds until it is
        (None when no batch is in progress), so an idle producer knows how long it may sleep."""
        slot = self._open
        if slot is None:
            return None
        remaining = slot.deadline - time.monotonic()
        if remaining <= 0:
            self.flush()
            return None
        return remaining

    def interrupt(self) -> None:
        """End a producer's wait for a free slot, now and from now on (used when stopping)."""
        with self._space:
            self._interrupted = True
            self._space.notify_all()

    # ---- consumer side -------------------------------------------------------------

    def get(self, timeout: float | None = None) -> object | None:
        """The next :class:`Batch` or event in arrival order; None if nothing came within ``timeout`` seconds."""
        with self._items:
            if not self._items.wait_for(lambda: self._queue, timeout):
                return None
            return self._queue.popleft()

    def release(self, batch: Batch) -> None:
        """Give a batch's buffer back for reuse; its arrays must not be used afterwards."""
        slot = batch.slot
        with self._space:
            if not slot.handed_out:
                raise ValueError("this batch was already released")
            slot.handed_out = False
            if slot.layout == self._layout:
                self._free.append(slot)
            else:
                self._allocated -= 1  # a buffer of an old scan's layout: let it go
            self._space.notify()

    # ---- internals -----------------------------------------------------------------

    def _count_dropped(self, frames: int) -> None:
        with self._items:
            self._dropped += frames

    def _open_slot(self, arrived: float) -> _Slot | None:
        """Start filling a free slot, due ``max_wait_s`` after ``arrived`` (monotonic); None if none is free."""
        slot = self._acquire()
        if slot is not None:
            slot.scan_id = self._scan_id
            slot.n = 0
            slot.deadline = arrived + self.max_wait_s
            self._open = slot
        return slot

    def _acquire(self) -> _Slot | None:
        """A free slot of the current layout, waiting for one in "block" mode; None if there is none
        ("drop" mode) or the wait was interrupted."""
        with self._space:
            if self._layout is None:
                raise RuntimeError("put_frame before configure: the ring does not know the frame shape")
            while not self._free and self._allocated >= self.n_slots:
                if self.mode == "drop" or self._interrupted:
                    return None
                self._space.wait()
            if self._free:
                return self._free.pop()
            self._allocated += 1  # replaces a buffer of an old layout that the consumer gave back
            layout = self._layout
        try:
            return self._new_slot(layout)
        except BaseException:
            with self._space:
                self._allocated -= 1
            raise

    def _new_slot(self, layout: tuple[tuple[int, int], np.dtype]) -> _Slot:
        shape, dtype = layout
        frames = self._allocate((self.batch_size, *shape), dtype)
        if frames.shape != (self.batch_size, *shape) or frames.dtype != dtype or not frames.flags.c_contiguous:
            raise ValueError(f"allocate returned a {frames.dtype} array of shape {frames.shape}; "
                             f"expected a C-contiguous {dtype} array of shape {(self.batch_size, *shape)}")
        n = self.batch_size
        return _Slot(layout, frames, np.empty(n, np.int64), np.empty(n, np.float64), np.empty(n, np.float64))
