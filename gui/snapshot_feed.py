"""The window's map polls, taken off the GUI thread.

The window keeps its own copy of the map (:class:`.colouring.MapColours`), so a poll copies only
the rows holding the scan indices mapped since the painter last took one, with the whole map's
counts (:meth:`LivePipeline.snapshot_rows`): at 20,000 frames/s into 2048×2048, one or two rows
of 45 KB each, a poll 0.2 ms at p50 and 5-9 ms at p99 on the shared development CPU, where a
whole copy is 88 MB (11-25 ms, and polls of 19-22 ms at p50). The whole map is copied only
when a new colouring needs it: the first poll of a pipeline, and after
:meth:`SnapshotFeed.request_full` (a new scan, another IPF direction). A thread of its own
takes the polls (numpy copies release the GIL, so the event loop keeps running), less often
where a poll takes longer than a paint interval, and hands the newest to the painter with the
span of scan indices mapped before it was taken. It is never the receiving or the engine thread.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from diffstream.live.frame_cache import EVERYTHING
from diffstream.live.map_assembler import MapRows
from diffstream.live.receiver import ReceiverStats

from .colouring import merge_spans
from .session import Session


@dataclass(frozen=True)
class Poll:
    """One look at the session's pipeline: ``generation`` says which pipeline it was; ``rows``
    (None before its first scan) hold at least the rows of the span :meth:`SnapshotFeed.take`
    gives with it, and the whole map's counts."""

    generation: int
    rows: MapRows | None
    stats: ReceiverStats


class SnapshotFeed:
    """Polls ``session`` every ``interval_s`` in a daemon thread; :meth:`take` gives the newest poll."""

    def __init__(self, session: Session, interval_s: float) -> None:
        self.session = session
        self.interval_s = interval_s
        self._lock = threading.Lock()
        self._polling = threading.Lock()  # one poll at a time, so polls publish in the order they were taken
        self._poll: Poll | None = None
        self._changed: tuple[int, int] | None = None
        self._whole = True  # the next poll copies the whole map
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="diffstream-snapshots", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join()

    def take(self, *, changes: bool = True) -> tuple[Poll | None, tuple[int, int] | None]:
        """The newest poll and, with ``changes``, the span of scan indices mapped since the
        last take (None for none), which that poll's snapshot already holds; without, the
        span is kept for a later take (painting paused)."""
        with self._lock:
            changed = self._changed if changes else None
            if changes:
                self._changed = None
            return self._poll, changed

    def request_full(self) -> None:
        """Have the next poll copy the whole map: a new colouring (a new scan, another IPF
        direction) starts from it, not from the rows that changed."""
        with self._lock:
            self._whole = True

    def poll_now(self) -> None:
        """Take a poll in the calling thread: the final map, before a screenshot."""
        with self._polling:
            self._poll_once()

    def _poll_once(self) -> None:
        """Copy the rows of every span not yet taken, so that the newest poll holds all the
        painter has not seen; or the whole map, and then the span is everything."""
        pipeline = self.session.pipeline
        if pipeline is None:
            return
        generation = self.session.generation
        # The span first: whatever is mapped after it is in a later span, so none is missed.
        changed = self.session.frame_cache.take_changed()
        with self._lock:
            last, whole = self._poll, self._whole
            untaken = merge_spans(self._changed, changed)
        whole = whole or last is None or last.generation != generation or last.rows is None
        if whole:
            snapshot = pipeline.snapshot()
            rows = None if snapshot is None else snapshot.rows()
        else:
            cols = last.rows.scan_shape[1]
            span = untaken or (0, 0)
            rows = pipeline.snapshot_rows(span[0] // cols, -(-span[1] // cols))
        poll = Poll(generation, rows, pipeline.receiver_stats())
        with self._lock:
            if whole and rows is not None:
                self._whole = False
                changed = EVERYTHING
            self._changed = merge_spans(self._changed, changed)
            self._poll = poll

    def _loop(self) -> None:
        """Poll every ``interval_s``, or twice as long as a poll took where that is longer: a huge
        map is then repainted less often rather than its copies taking most of a CPU core."""
        wait = self.interval_s
        while not self._stop.wait(wait):
            began = time.perf_counter()
            self.poll_now()
            wait = max(self.interval_s, 2 * (time.perf_counter() - began))
