"""The live map window: phase, IPF-Z and confidence maps side by side, growing as the scan runs.

The window never hears from the pipeline's threads. A ``QTimer`` in the GUI thread polls
``pipeline.snapshot()`` and ``pipeline.receiver_stats()`` (both thread-safe and cheap) at most
30 times a second and recolours the maps only when the number of mapped points changed (or
IPF colours are still being caught up, see :mod:`.colouring`). The same timer is what lets
Python run signal handlers (Ctrl-C) while Qt's event loop holds the main thread.

Measured on the shared development CPU (2 cores, load about 2.7), a paint plus Qt's render of
the changed images, with 300 new points a paint (9,000 frames/s) and the fixture model's two
Laue groups: 200×200 map median 8 ms, p90 24 ms; 500×500 median 11 ms, p90 27 ms, max 32 ms
(the p90 is the paints that make an orix call); a poll with nothing new 1-1.5 ms. Colouring the
whole IPF map at every paint instead would cost 90 ms (200×200) and 390 ms (500×500).
"""
from __future__ import annotations

import time

from orix.quaternion import Rotation
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import QGridLayout, QLabel, QMainWindow, QWidget

from diffstream.live.map_assembler import NOT_RECEIVED, MapSnapshot
from diffstream.live.pipeline import LivePipeline

from .colour_keys import ipf_keys
from .colouring import MapColours
from .panels import IpfKeyStrip, MapPanel, PhaseLegend, add_confidence_bar
from .status import ScanStatus
from .window import PipelineWorker

PAINT_INTERVAL_MS = 34
"""Poll period: just under 30 paints a second."""
IPF_INTERVAL_S = 0.25
"""About the longest wait of new points for their IPF colour while fewer than a full call's
worth wait: each orix call costs 5-15 ms however few points it colours, so each Laue group's
points are coloured about 4 times a second (one group per paint, taking turns), where the
phase and confidence maps follow every paint."""


class MapWindow(QMainWindow):
    """The window for one pipeline run by ``worker``; closing it asks the pipeline to stop.

    ``closed`` is emitted once the window has been closed (by the user, Ctrl-C or code).
    """

    closed = Signal()

    def __init__(self, pipeline: LivePipeline, worker: PipelineWorker, *, title: str) -> None:
        super().__init__()
        self.pipeline = pipeline
        self.worker = worker
        self.setWindowTitle(title)
        card = pipeline.engine.card
        self.class_names = tuple(card.class_names)
        self.oriented = tuple(c.orientation for c in card.classes)
        self.colours = MapColours(card.classes)
        self.phase_panel = MapPanel("phase")
        self.ipf_panel = MapPanel("IPF-Z")
        self.confidence_panel = MapPanel("confidence")
        add_confidence_bar(self.confidence_panel)
        self.legend = PhaseLegend(self.class_names, self.colours.phase_lut)
        self.readout = QLabel()
        central = QWidget()
        grid = QGridLayout(central)
        for column, panel in enumerate((self.phase_panel, self.ipf_panel, self.confidence_panel)):
            grid.addWidget(panel, 0, column)
            grid.setColumnStretch(column, 1)
            panel.hovered.connect(self._hover)
        grid.setRowStretch(0, 1)
        grid.addWidget(self.legend, 1, 0, Qt.AlignmentFlag.AlignTop)
        grid.addWidget(IpfKeyStrip(ipf_keys(card.classes)), 1, 1, Qt.AlignmentFlag.AlignTop)
        grid.addWidget(self.readout, 2, 0, 1, 3)
        self.ipf_panel.link(self.phase_panel)
        self.confidence_panel.link(self.phase_panel)
        self.setCentralWidget(central)
        self.status = ScanStatus(self.statusBar())
        self.snapshot: MapSnapshot | None = None
        self._painted_key: tuple | None = None
        self._hover_at = (-1, -1)
        self._ipf_t = -IPF_INTERVAL_S
        self.timer = QTimer(self)
        self.timer.setInterval(PAINT_INTERVAL_MS)
        self.timer.timeout.connect(self.paint)
        self.timer.start()
        self.resize(1400, 620)

    @property
    def painted_points(self) -> int:
        """Mapped points in the images on screen (0 before the first scan)."""
        return 0 if self._painted_key is None else self._painted_key[2]

    def paint(self) -> None:
        """One poll: recolour what changed if the map grew, and refresh the status bar.

        Between scans the pipeline has no map; the last one stays on screen. IPF colours are
        caught up one Laue group at a time, each about every :data:`IPF_INTERVAL_S`, or at
        every paint while a full call's worth waits.
        """
        now = time.monotonic()
        snapshot = self.pipeline.snapshot()
        stats = self.pipeline.receiver_stats()
        self.snapshot = snapshot or self.snapshot
        shown = self.snapshot
        if shown is not None:
            key = (stats.scan_id, shown.scan_shape, shown.n_received)
            grew = key != self._painted_key
            if grew:
                self.colours.update(shown)
                self.phase_panel.set_image(self.colours.phase)
                self.confidence_panel.set_image(self.colours.confidence)
                self.legend.set_shares(shown)
                self._painted_key = key
                self._hover(*self._hover_at)
            pending = self.colours.pending
            due = now - self._ipf_t >= IPF_INTERVAL_S / max(self.colours.laue_groups, 1)
            catch_up = pending and (pending >= self.colours.ipf_points_per_call or due)
            if catch_up:
                self.colours.colour_ipf()
                self._ipf_t = now
            if grew or catch_up:
                self.ipf_panel.set_image(self.colours.ipf)
        self.status.show(now, stats, shown, *self._run_state(stats.state))

    def closeEvent(self, event: QCloseEvent) -> None:
        self.timer.stop()
        self.pipeline.stop()
        super().closeEvent(event)
        self.closed.emit()

    def _run_state(self, receiver_state: str) -> tuple[str, str]:
        """State and message: the receiver's state while the pipeline runs, then finished or
        failed; the message says where the last scan's maps went, or why the pipeline failed."""
        if self.worker.error is not None:
            return "failed", f"the pipeline failed: {self.worker.error}"
        files = [report.files for report in self.pipeline.reports[-1:] if report.files]
        message = f"maps written to {next(iter(files[0].values())).parent}" if files else ""
        return (receiver_state if self.worker.is_alive() else "finished"), message

    def _hover(self, row: int, col: int) -> None:
        """Row, column, class, confidence and Bunge Euler angles of the point under the mouse,
        in the line under the maps."""
        self._hover_at = (row, col)
        snapshot = self.snapshot
        if snapshot is None or not (0 <= row < snapshot.scan_shape[0] and 0 <= col < snapshot.scan_shape[1]):
            self.readout.setText("")
            return
        code = int(snapshot.class_id[row, col])
        text = f"row {row}, col {col}: "
        if code == NOT_RECEIVED:
            text += "not yet received"
        elif code < 0:
            text += f"not indexed, confidence {snapshot.confidence[row, col]:.3f}"
        else:
            text += f"{self.class_names[code]}, confidence {snapshot.confidence[row, col]:.3f}"
            if self.oriented[code]:
                euler = Rotation(snapshot.quaternions[row, col].astype(float)).to_euler(degrees=True).ravel()
                text += ", Euler (φ1, Φ, φ2) = ({:.1f}°, {:.1f}°, {:.1f}°)".format(*euler)
        self.readout.setText(text)
