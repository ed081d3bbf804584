"""The live window's status bar: what the receiver and the map say at each paint.

Everything shown is polled by the painter from ``ReceiverStats`` and the map snapshot; rates
are differences between polls, so the engine and receiver threads never pay for them.
"""
from __future__ import annotations

from collections import deque

from PySide6.QtWidgets import QLabel, QProgressBar, QStatusBar

from diffstream.live.map_assembler import MapSnapshot
from diffstream.live.receiver import ReceiverStats

STATE_COLOURS = {"receiving": "#1a7f37", "silent": "#b35900", "connecting": "#b35900", "stopped": "#666666",
                 "failed": "#c00000", "no model": "#c00000"}
"""Text colour of a receiver state; the others (waiting, ended, finished, not connected) stay black."""


class RateMeter:
    """Events per second over the last ``window_s`` of polls of a growing count.

    A count that goes down (a new scan's map) restarts the measurement.
    """

    def __init__(self, window_s: float = 1.0) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, t: float, count: int) -> float:
        """Record ``count`` at monotonic time ``t`` and return the rate (0 until two polls)."""
        if self._samples and count < self._samples[-1][1]:
            self._samples.clear()
        self._samples.append((t, count))
        while len(self._samples) > 2 and t - self._samples[1][0] >= self.window_s:
            self._samples.popleft()
        t0, count0 = self._samples[0]
        return (count - count0) / (t - t0) if t > t0 else 0.0


class ScanStatus:
    """Fills a ``QStatusBar``: a message (left), then scan id, state, mapped/scan size with a
    progress bar and the time remaining, received/rejected/dropped counts, rates, end-to-end
    latency, and the engine, its device and the model (right)."""

    def __init__(self, bar: QStatusBar) -> None:
        self.message = QLabel()
        self.scan = QLabel("no scan yet")
        self.state = QLabel()
        self.state.setMinimumWidth(100)
        self.progress = QProgressBar()
        self.progress.setFixedWidth(220)
        self.progress.setFormat("mapped %v / %m")
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.counts = QLabel()
        self.remaining = QLabel()
        self.rates = QLabel()
        self.latency = QLabel()
        self.engine = QLabel()
        self.message.setWordWrap(True)
        bar.addWidget(self.message, stretch=1)
        for widget in (self.scan, self.state, self.progress, self.remaining, self.counts, self.rates, self.latency,
                       self.engine):
            bar.addPermanentWidget(widget)
        self._receive_rate = RateMeter()
        self._map_rate = RateMeter()

    def show(self, t: float, stats: ReceiverStats | None, snapshot: MapSnapshot | None, state: str,
             message: str = "", *, latency_s: float | None = None, engine: str = "") -> None:
        """Show one poll taken at monotonic time ``t``; ``state`` is the receiver's or the window's
        own word for the run (finished, failed), ``message`` what the user should know about it,
        ``latency_s`` the last batch's time from detector to map, ``engine`` what maps.
        ``stats`` is None before any pipeline exists."""
        self.message.setText(message)
        self.engine.setText(engine)
        self.latency.setText("" if latency_s is None else f"latency {latency_s * 1e3:,.0f} ms")
        self.state.setText(state)
        self.state.setStyleSheet(f"color: {STATE_COLOURS.get(state, '#000000')}; font-weight: bold;")
        if stats is None:
            return
        self.scan.setText(f"scan {stats.scan_id}" if stats.scan_id is not None else "no scan yet")
        mapped = 0
        if snapshot is not None:
            mapped = snapshot.n_received
            self.progress.setRange(0, snapshot.received.size)
            self.progress.setValue(mapped)
        rejected = sum(stats.rejected.values())
        dropped = stats.dropped_backpressure + stats.dropped_missing
        self.counts.setText(f"received {stats.frames_received:,} · rejected {rejected:,} · dropped {dropped:,}")
        reasons = ", ".join(f"{reason} {n:,}" for reason, n in stats.rejected.items() if n) or "none"
        self.counts.setToolTip(f"rejected: {reasons}\ndropped: {stats.dropped_backpressure:,} for back-pressure, "
                               f"{stats.dropped_missing:,} never arrived")
        receive_fps = self._receive_rate.add(t, stats.frames_received)
        map_fps = self._map_rate.add(t, mapped)
        self.rates.setText(f"{receive_fps:,.0f} received/s · {map_fps:,.0f} mapped/s")
        left = 0 if snapshot is None else snapshot.received.size - mapped
        self.remaining.setText(f"{left / map_fps:,.0f} s left" if left and map_fps > 0 else "")
