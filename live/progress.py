"""A terminal progress bar for a headless live run, fed by polling, never by the engine thread.

Polling a snapshot twice a second keeps the hot path free of any printing, and the same
thread watches for outside reasons to stop (the demo's simulator dying), also while the live
window is open, when :attr:`ProgressPrinter.drawing` is off and nothing is printed.
"""
from __future__ import annotations

import sys
import threading
from collections.abc import Callable

from tqdm import tqdm


class ProgressPrinter:
    """Context manager running a daemon thread that draws one bar per scan on stderr."""

    def __init__(self, pipeline: object, *, watch: Callable[[], str | None] | None = None,
                 interval_s: float = 0.5) -> None:
        self.pipeline = pipeline
        self.watch = watch
        self.interval_s = interval_s
        self.stop_reason: str | None = None
        self.drawing = True
        """Whether to draw the bar; off while a window shows the progress instead."""
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="diffstream-progress", daemon=True)
        self._bar: tqdm | None = None
        self._bar_total = 0

    def __enter__(self) -> ProgressPrinter:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=2)
        self._close_bar()

    def _loop(self) -> None:
        while not self._done.wait(self.interval_s):
            if self.watch is not None and (reason := self.watch()):
                self.stop_reason = reason
                self.pipeline.stop()
                return
            if self.drawing:
                self._draw()
            else:
                self._close_bar()

    def _draw(self) -> None:
        snapshot = self.pipeline.snapshot()
        stats = self.pipeline.receiver_stats()
        if snapshot is None:
            self._close_bar()
            return
        total = snapshot.received.size
        if self._bar is None or self._bar_total != total:
            self._close_bar()
            self._bar = tqdm(total=total, unit="frame", desc="mapping", file=sys.stderr, leave=False,
                             dynamic_ncols=True)
            self._bar_total = total
        self._bar.n = int(snapshot.n_received)
        self._bar.set_postfix_str(f"{stats.state}, rejected {sum(stats.rejected.values())}", refresh=False)
        self._bar.refresh()

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
