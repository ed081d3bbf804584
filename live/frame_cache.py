"""The last frames the pipeline mapped, kept so a window can show a point's pattern, and the
span of scan indices mapped since the window last looked, so it recolours only that region.

The engine thread copies each mapped batch into a ring bounded in bytes (one memcpy per
batch, no per-frame Python work); the GUI thread looks a scan index up when the user
hovers or clicks a point, and shows the newest frame as "the current pattern". Frames of
points mapped longer ago than the ring holds are gone: the window says so.
"""
from __future__ import annotations

import sys
import threading
import time

import numpy as np

EVERYTHING = (0, sys.maxsize)
"""The index span :meth:`FrameCache.take_changed` gives when the whole map must be redone."""
DEFAULT_BYTES = 64 * 2**20
"""64 MiB: about 18,000 frames of 60×60 uint8, the last second of a fast scan."""


class FrameCache:
    """A thread-safe ring of the most recent frames of the scan being mapped, by scan index.

    One writer (:meth:`put`, the engine thread) and any readers. A new scan id, frame shape
    or dtype empties the ring and sizes it afresh: at least one frame, at most ``max_bytes``.
    """

    def __init__(self, max_bytes: int = DEFAULT_BYTES) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.max_bytes = int(max_bytes)
        self._lock = threading.Lock()
        self._scan_id: str | None = None
        self._frames: np.ndarray | None = None
        self._indices = np.empty(0, dtype=np.int64)
        self._next = 0
        self._newest = -1
        self._changed: tuple[int, int] | None = None
        self.latency_s: float | None = None
        """Seconds from the detector's send time of the oldest frame of the last batch put to the put."""

    @property
    def capacity(self) -> int:
        """Frames the ring holds (0 before the first :meth:`put`)."""
        return 0 if self._frames is None else len(self._frames)

    def put(self, scan_id: str, indices: np.ndarray, frames: np.ndarray, sent_t: np.ndarray | None = None) -> None:
        """Keep ``frames`` (n, h, w) of scan points ``indices``, overwriting the oldest frames;
        ``sent_t`` (the frames' detector timestamps) gives :attr:`latency_s`."""
        n = len(indices)
        if n == 0:
            return
        if sent_t is not None:
            self.latency_s = time.time() - float(np.min(sent_t[:n]))
        span = (int(np.min(indices)), int(np.max(indices)) + 1)
        with self._lock:
            if (scan_id != self._scan_id or self._frames is None
                    or self._frames.shape[1:] != frames.shape[1:] or self._frames.dtype != frames.dtype):
                self._reset(scan_id, frames)
            self._changed = span if self._changed is None else (min(self._changed[0], span[0]),
                                                                max(self._changed[1], span[1]))
            capacity = len(self._frames)
            if n > capacity:
                indices, frames, n = indices[-capacity:], frames[-capacity:], capacity
            first = min(n, capacity - self._next)
            for start, stop, offset in ((self._next, self._next + first, 0), (0, n - first, first)):
                self._frames[start:stop] = frames[offset:offset + stop - start]
                self._indices[start:stop] = indices[offset:offset + stop - start]
            self._newest = (self._next + n - 1) % capacity
            self._next = (self._next + n) % capacity

    def get(self, scan_id: str | None, index: int) -> np.ndarray | None:
        """A copy of the newest frame of point ``index`` of ``scan_id``; None when not held."""
        with self._lock:
            if scan_id != self._scan_id or self._frames is None:
                return None
            slots = np.flatnonzero(self._indices == index)
            if slots.size == 0:
                return None
            # The newest copy of an index sent twice: the slot written last before _next.
            newest = slots[np.argmax((slots - self._next) % len(self._frames))]
            return self._frames[newest].copy()

    def latest(self) -> tuple[str, int, np.ndarray] | None:
        """Scan id, scan index and a copy of the frame mapped last; None before any."""
        with self._lock:
            if self._newest < 0:
                return None
            return self._scan_id, int(self._indices[self._newest]), self._frames[self._newest].copy()

    def take_changed(self) -> tuple[int, int] | None:
        """The span (first, stop) of scan indices put since the last call, None when none; everything
        (0, sys.maxsize) after a new scan began, or after :meth:`clear`, when a painter must redo all."""
        with self._lock:
            changed, self._changed = self._changed, None
        return changed

    def clear(self) -> None:
        """Forget every frame (a new pipeline: its first scan's frames start afresh)."""
        with self._lock:
            self._scan_id = None
            self._frames = None
            self._newest = -1
            self._changed = EVERYTHING

    def _reset(self, scan_id: str, frames: np.ndarray) -> None:
        self._changed = EVERYTHING
        capacity = max(1, self.max_bytes // max(frames[0].nbytes, 1))
        self._scan_id = scan_id
        self._frames = np.empty((capacity, *frames.shape[1:]), dtype=frames.dtype)
        self._indices = np.full(capacity, -1, dtype=np.int64)
        self._next = 0
        self._newest = -1
