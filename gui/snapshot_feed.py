"""The window's map snapshots, taken off the GUI thread.

A snapshot copies the whole map (88 MB at 2048×2048: about 25 ms on the development CPU),
which in the GUI thread would stall clicks and hovers at every paint. A thread of its own
takes them instead (numpy copies release the GIL, so the event loop keeps running), less often
for a map whose copy takes longer than a paint interval, and hands the newest to the painter
with the span of scan indices mapped before it was taken, which is all the painter recolours.
It is never the receiving or the engine thread.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from diffstream.live.map_assembler import MapSnapshot
from diffstream.live.receiver import ReceiverStats

from .session import Session


@dataclass(frozen=True)
class Poll:
    """One look at the session's pipeline: ``generation`` says which pipeline it was."""

    generation: int
    snapshot: MapSnapshot | None
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

    def poll_now(self) -> None:
        """Take a poll in the calling thread: the final map, before a screenshot."""
        with self._polling:
            self._poll_once()

    def _poll_once(self) -> None:
        pipeline = self.session.pipeline
        if pipeline is None:
            return
        generation = self.session.generation
        # The span first: whatever is mapped after it is in a later span, so none is missed.
        changed = self.session.frame_cache.take_changed()
        poll = Poll(generation, pipeline.snapshot(), pipeline.receiver_stats())
        with self._lock:
            if changed is not None:
                previous = self._changed
                self._changed = changed if previous is None else (min(previous[0], changed[0]),
                                                                  max(previous[1], changed[1]))
            self._poll = poll

    def _loop(self) -> None:
        """Poll every ``interval_s``, or twice as long as a poll took where that is longer: a huge
        map is then repainted less often rather than its copies taking most of a CPU core."""
        wait = self.interval_s
        while not self._stop.wait(wait):
            began = time.perf_counter()
            self.poll_now()
            wait = max(self.interval_s, 2 * (time.perf_counter() - began))
