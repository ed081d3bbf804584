"""The live map window: phase, IPF and confidence maps side by side, growing as the scan runs,
the current pattern beside them, and the controls that choose what is mapped.

The window never hears from the pipeline's threads, and keeps its own copy of the map (the
colouring's, :meth:`.colouring.MapColours.view`, which hover, readout, status and legend read).
A helper thread (:mod:`.snapshot_feed`) takes ``pipeline.snapshot_rows()`` of the rows mapped
since the last paint, the whole map only for a new colouring, and ``pipeline.receiver_stats()``
at most 30 times a second; a ``QTimer`` in the GUI thread paints the newest, recolouring the
points of those rows that changed (:mod:`.colouring`, IPF colours from a worker thread), and
each map panel re-renders only the bands of rows that changed (:class:`.panels.MapPanel`). The
same timer is what lets Python run signal handlers (Ctrl-C) while Qt's event loop holds the main
thread. ``diffstream bench gui`` measures the result at 20,000 frames/s into a 2048×2048 map.

Measured with ``diffstream bench gui`` on the shared 2-core development CPU (20,000 frames/s
into 2048×2048, 20 s, load 1.3-2.4): event-loop delay p50 0.2-6.7 ms, p99 36-60 ms, max
0.42-0.55 s (the first paint of the scan, building 2048×2048 images) over four runs, paint p50
2-6 ms, a poll 0.2 ms at p50 and 5-9 ms at p99; copying the whole map at each poll instead gave,
in the same conditions (two runs), p99 49-57 ms, max 0.29-0.84 s, polls of 19-22 ms at p50 and
0.24-0.48 s at p99, and 3-8 times as many frames dropped for backpressure. With the snapshot,
a whole-map comparison and orix in the GUI thread the p99 was 510 ms.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from orix.quaternion import Rotation
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import QFileDialog, QGridLayout, QHBoxLayout, QLabel, QMainWindow, QWidget

from diffstream.engines import BACKENDS, shipped_models
from diffstream.engines.availability import device_description
from diffstream.live.commands.live import DEFAULT_MODEL
from diffstream.live.map_assembler import NOT_RECEIVED, MapRows, MapSnapshot

from .colour_keys import ipf_keys
from .colouring import MapColours, Rows, merge_spans
from .controls import OPEN_MODEL, ControlBar, choose
from .gradcam_overlay import gradcam_offer
from .panels import IpfKeyStrip, MapPanel, PhaseLegend, add_confidence_bar
from .pattern_panel import PatternPanel
from .session import Session, SessionError, SessionSettings, default_recording
from .snapshot_feed import SnapshotFeed
from .status import ScanStatus

PAINT_INTERVAL_MS = 34
"""Poll period: just under 30 paints a second."""


class MapWindow(QMainWindow):
    """The window of one :class:`Session`; closing it stops the session's pipeline.

    ``closed`` is emitted once the window has been closed (by the user, Ctrl-C or code). With
    ``screenshot``, the window saves a picture of itself there once the pipeline has finished
    and every point is painted, then closes (``diffstream demo --screenshot``).
    """

    closed = Signal()

    def __init__(self, session: Session, *, title: str, screenshot: Path | None = None) -> None:
        super().__init__()
        self.session = session
        self.screenshot = screenshot
        self.problem = ""
        self.screenshot_error: str | None = None
        self.setWindowTitle(title)
        models = sorted(shipped_models(), key=lambda name: (name != DEFAULT_MODEL, name))
        self.controls = ControlBar(models, ["auto", *BACKENDS])
        self._pull = False
        self._security: object | None = None
        self.addToolBar(self.controls)
        self._wire_controls()
        self.phase_panel = MapPanel("phase")
        self.ipf_panel = MapPanel("IPF-Z")
        self.confidence_panel = MapPanel("confidence")
        add_confidence_bar(self.confidence_panel)
        self.pattern_panel = PatternPanel()
        self.closed.connect(self.pattern_panel.gradcam.close)
        self.readout = QLabel()
        self.keys = QWidget()
        self._keys_row = QHBoxLayout(self.keys)
        self._keys_row.setContentsMargins(0, 0, 0, 0)
        central = QWidget()
        grid = QGridLayout(central)
        for column, panel in enumerate((self.phase_panel, self.ipf_panel, self.confidence_panel)):
            grid.addWidget(panel, 0, column)
            grid.setColumnStretch(column, 3)
            panel.hovered.connect(self._hover)
            panel.clicked.connect(self._click)
        grid.addWidget(self.pattern_panel, 0, 3)
        grid.setColumnStretch(3, 2)
        grid.setRowStretch(0, 1)
        grid.addWidget(self.keys, 1, 0, 1, 4, Qt.AlignmentFlag.AlignLeft)
        grid.addWidget(self.readout, 2, 0, 1, 4)
        self.ipf_panel.link(self.phase_panel)
        self.confidence_panel.link(self.phase_panel)
        self.setCentralWidget(central)
        self.status = ScanStatus(self.statusBar())
        self.colours: MapColours | None = None
        self.legend: PhaseLegend | None = None
        self.class_names: tuple[str, ...] = ()
        self.oriented: tuple[bool, ...] = ()
        self.snapshot: MapSnapshot | None = None
        """The map on screen: the colouring's own copy (:meth:`MapColours.view`) with the newest counts."""
        self._generation = 0
        self._scan_id: str | None = None
        self._marked: str | None = None
        self._hover_at = (-1, -1)
        self._pinned: tuple[int, int] | None = None
        self.dialog: QFileDialog | None = None
        """The file dialog opened last (non-blocking: it calls back when the user chooses)."""
        self._ipf_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="diffstream-ipf")
        self.feed = SnapshotFeed(session, PAINT_INTERVAL_MS / 1e3)
        self.feed.start()
        self.timer = QTimer(self)
        self.timer.setInterval(PAINT_INTERVAL_MS)
        self.timer.timeout.connect(self.paint)
        self.timer.start()
        self.resize(1500, 700)
        if session.pipeline is not None:
            self._bind_model()  # now, before the window shows: the IPF keys take up to 0.1 s per Laue group

    @property
    def painted_points(self) -> int:
        """Mapped points in the images on screen (0 before the first scan)."""
        return 0 if self.colours is None else self.colours.received_points

    # ---- controls ---------------------------------------------------------------------

    def show_settings(self, settings: SessionSettings) -> None:
        """Fill the controls with ``settings`` (the command line's choices)."""
        self.controls.url.setText(settings.url)
        self.controls.add_model(settings.model)
        self.controls.engine.setCurrentText(settings.engine)
        self._pull = settings.pull
        self._security = settings.security

    def settings(self) -> SessionSettings:
        """The settings the controls show now."""
        controls = self.controls
        record = default_recording() if controls.record.isChecked() else None
        model = controls.model.currentText()
        return SessionSettings(url=controls.url.text().strip(), model=model, engine=controls.engine.currentText(),
                               pull=self._pull, record=record, security=self._security)

    def start(self) -> None:
        """Map the URL in the controls with the chosen model and engine (the Start button)."""
        settings = self.settings()
        if not settings.url:
            self.problem = "enter the detector server's URL, e.g. tcp://host:5555, or open a file to replay"
            return
        self._run(lambda: self.session.start(settings))

    def stop(self) -> None:
        """Stop mapping; the map stays on screen (the Stop button)."""
        self.session.stop()
        self.paint()

    def replay(self, path: str) -> None:
        """Serve ``path`` with ``diffstream replay`` and map it (the Open file… button)."""
        self._run(lambda: self.controls.url.setText(self.session.replay(Path(path), self.settings()).url))

    def save(self, folder: str) -> None:
        """Write the map shown into ``folder`` in the background (the Save… button)."""
        self.session.save(Path(folder))

    def _run(self, action: object) -> None:
        try:
            action()
        except SessionError as error:
            self.problem = str(error)
        else:
            self.problem = ""
        self.paint()

    def _wire_controls(self) -> None:
        controls = self.controls
        controls.start.triggered.connect(lambda: self.stop() if self.session.running else self.start())
        controls.url.returnPressed.connect(self.start)
        controls.model.activated.connect(self._model_chosen)
        controls.replay.triggered.connect(lambda: self._open_dialog("Open a recording or pattern file", self.replay))
        controls.save.triggered.connect(lambda: self._open_dialog("Save the map into a folder", self.save,
                                                                  folder=True))
        controls.direction.currentTextChanged.connect(lambda _: self._recolour())
        controls.overlay.toggled.connect(lambda _: self._repaint_all())
        controls.gradcam.toggled.connect(lambda shown: self.pattern_panel.gradcam.set_shown(shown))

    def _model_chosen(self, index: int) -> None:
        if self.controls.model.itemText(index) == OPEN_MODEL:
            self.controls.model.setCurrentIndex(0)
            self._open_dialog("Open an ONNX model", self.controls.add_model, name_filter="ONNX models (*.onnx)")

    def _open_dialog(self, caption: str, on_chosen: object, **kwargs: object) -> None:
        self.dialog = choose(self, caption, on_chosen, **kwargs)

    # ---- painting ---------------------------------------------------------------------

    def paint(self) -> None:
        """One paint: take the feed's newest poll, recolour the rows mapped since the last paint,
        collect or start the IPF colouring in its thread, and refresh the status bar.

        Between scans the pipeline has no map; the last one stays on screen, and once a scan has
        ended with its scan_end its missing points are marked. With painting paused only the
        status bar is refreshed. A window with ``screenshot`` takes it once the pipeline has
        finished, from a poll taken then.
        """
        now = time.monotonic()
        pipeline = self.session.pipeline
        if pipeline is None:
            self.status.show(now, None, None, "no model" if self.problem else "not connected", self._message(""))
            return
        finished = self.session.worker.ident is not None and not self.session.running
        self.controls.start.setText("Stop" if self.session.running else "Start")
        if self._generation != self.session.generation:
            self._bind_model()
        if finished and self.screenshot is not None:
            self.feed.poll_now()
        paused = self.controls.pause.isChecked()
        poll, changed = self.feed.take(changes=not paused)
        if poll is None or poll.generation != self.session.generation:
            return
        stats = poll.stats
        if stats.scan_id != self._scan_id:  # a new scan, perhaps of the same shape: colour it afresh
            self._scan_id = stats.scan_id
            self._recolour()
        if not paused:
            self._paint_maps(poll.rows, changed)
            if changed is None and self._scan_id != self._marked and self._scan_ended():
                self._marked = self._scan_id
                self._show_maps(self.colours.mark_missing(), ipf=True)
                self.legend.set_shares(self.snapshot, ended=True)
        engine = pipeline.engine
        self.status.show(now, stats, self.snapshot, *self._run_state(stats.state),
                         latency_s=self.session.frame_cache.latency_s,
                         engine=f"{pipeline.model_name} on {engine.name} ({device_description(engine.device)})")
        if finished and self.screenshot is not None:
            self._take_screenshot()

    def _paint_maps(self, part: MapRows | None, changed: tuple[int, int] | None) -> None:
        """Recolour from the feed's rows (``part``) when scan indices were mapped since the last
        paint (``changed``, from the frame cache). A new colouring (a new scan or IPF direction)
        starts from a poll of the whole map, which it asks the feed for and waits."""
        if part is None or self.colours is None:
            return
        colours = self.colours
        fresh = colours.phase is None or colours.phase.shape[:2] != part.scan_shape
        if fresh and not part.whole:
            self.feed.request_full()
            return
        recolour = changed is not None or fresh
        rows: Rows = colours.update_rows(part) if recolour else None
        self.snapshot = colours.view(part)
        if recolour:
            self._show_maps(rows, ipf=False)
            self.legend.set_shares(self.snapshot, ended=self._marked == self._scan_id)
            self._hover(*self._hover_at)
        if self.colours.pending:
            rows = merge_spans(rows, self.colours.colour_ipf())
        if rows is not None:
            self.ipf_panel.set_image(self.colours.ipf, rows, self._brightness())

    def _scan_ended(self) -> bool:
        """Whether the scan on screen ended with its scan_end (so its missing points were dropped)."""
        reports = self.session.pipeline.reports
        return (bool(reports) and reports[-1].scan_id == self._scan_id and self.snapshot is not None
                and reports[-1].summary["ended_by"] == "scan_end")

    def _show_maps(self, rows: Rows, *, ipf: bool) -> None:
        brightness = self._brightness()
        self.phase_panel.set_image(self.colours.phase, rows, brightness)
        self.confidence_panel.set_image(self.colours.confidence, rows)
        if ipf:
            self.ipf_panel.set_image(self.colours.ipf, rows, brightness)

    def _brightness(self) -> object:
        """Confidence as brightness of the phase and IPF maps, when the overlay is on."""
        return self.snapshot.confidence if self.controls.overlay.isChecked() and self.snapshot is not None else None

    def _repaint_all(self) -> None:
        if self.colours is not None and self.colours.phase is not None:
            self._show_maps((0, self.colours.phase.shape[0]), ipf=True)

    def _recolour(self) -> None:
        """Start the maps afresh for another IPF direction or model: the next paint colours every point."""
        card = self.session.pipeline.engine.card
        self.colours = MapColours(card.classes, direction=self.controls.ipf_direction, executor=self._ipf_thread)
        self.ipf_panel.set_title(f"IPF-{self.controls.ipf_direction.upper()}")

    def _bind_model(self) -> None:
        """Build what depends on the model (colours, legend, IPF keys) for a new pipeline."""
        card = self.session.pipeline.engine.card
        self._generation = self.session.generation
        self._marked = None
        self.class_names = tuple(card.class_names)
        self.oriented = tuple(c.orientation for c in card.classes)
        self._recolour()
        while self._keys_row.count():
            self._keys_row.takeAt(0).widget().deleteLater()
        self.legend = PhaseLegend(self.class_names, self.colours.phase_lut, self.colours.missing)
        self._keys_row.addWidget(self.legend, alignment=Qt.AlignmentFlag.AlignTop)
        self._keys_row.addWidget(IpfKeyStrip(ipf_keys(card.classes)), alignment=Qt.AlignmentFlag.AlignTop)
        self.controls.add_model(self.session.pipeline.model_name)
        if not self.controls.url.text():
            self.controls.url.setText(self.session.pipeline.receiver.url)
        self._offer_gradcam()

    def _offer_gradcam(self) -> None:
        """Enable the Grad-CAM box where the model ships its torch program and torch is installed."""
        model, reason = gradcam_offer(self.session.pipeline.model_name)
        self.controls.offer_gradcam(model is not None, reason)
        self.pattern_panel.gradcam.set_model(model)

    def _take_screenshot(self) -> None:
        """Finish the IPF colours, save the whole window as ``screenshot`` and close."""
        if self.colours is not None and self.colours.phase is not None:
            self.colours.finish_ipf()
            self._show_maps((0, self.colours.phase.shape[0]), ipf=True)
        path, self.screenshot = self.screenshot, None
        if not self.grab().save(str(path)):
            self.screenshot_error = f"could not write the screenshot {path}"
        self.close()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.timer.stop()
        self.feed.stop()
        self._ipf_thread.shutdown(wait=True, cancel_futures=True)
        if self.session.pipeline is not None:
            self.session.pipeline.stop()
        super().closeEvent(event)
        self.closed.emit()

    def _message(self, run_message: str) -> str:
        return " · ".join(m for m in (self.problem, self.session.replay_problem() or "", self.session.save_message,
                                      run_message) if m)

    def _run_state(self, receiver_state: str) -> tuple[str, str]:
        """State and message: the receiver's state while the pipeline runs, then finished or
        failed; the message says where the last scan's maps went, why the pipeline failed, or
        that a server does not answer."""
        worker = self.session.worker
        if worker.error is not None:
            return "failed", self._message(f"the pipeline failed: {worker.error}")
        if not worker.is_alive():
            files = [report.files for report in self.session.pipeline.reports[-1:] if report.files]
            message = f"maps written to {next(iter(files[0].values())).parent}" if files else ""
            return "finished", self._message(message)
        if receiver_state == "connecting":
            url = self.session.pipeline.receiver.url
            return receiver_state, self._message(f"no answer from {url} yet; retrying")
        return receiver_state, self._message("")

    # ---- hover, click and the current pattern -----------------------------------------

    def _hover(self, row: int, col: int) -> None:
        """The point under the mouse in the line under the maps and in the pattern panel; off
        the maps, the pinned point or else the latest frame."""
        self._hover_at = (row, col)
        self.readout.setText(self._describe(row, col) if row >= 0 else "")
        if row >= 0:
            self._show_pattern("pattern under the mouse", row, col)
        elif self._pinned is not None:
            self._show_pattern("pinned pattern (click it again to unpin)", *self._pinned)
        else:
            self._show_latest()

    def _click(self, row: int, col: int) -> None:
        self._pinned = None if self._pinned == (row, col) else (row, col)
        self._hover(*self._hover_at)

    def _show_latest(self) -> None:
        latest = self.session.frame_cache.latest()
        if latest is None or self.snapshot is None:
            return
        _, index, frame = latest
        row, col = divmod(index, self.snapshot.scan_shape[1])
        self.pattern_panel.show_frame("latest pattern", frame, self._describe(row, col))

    def _show_pattern(self, heading: str, row: int, col: int) -> None:
        snapshot = self.snapshot
        if snapshot is None or not (0 <= row < snapshot.scan_shape[0] and 0 <= col < snapshot.scan_shape[1]):
            return
        scan_id = self.session.pipeline.receiver_stats().scan_id
        frame = self.session.frame_cache.get(scan_id, row * snapshot.scan_shape[1] + col)
        caption = self._describe(row, col)
        if frame is None and snapshot.class_id[row, col] != NOT_RECEIVED:
            caption += " (its frame is no longer in the cache of recent frames)"
        self.pattern_panel.show_frame(heading, frame, caption)

    def _describe(self, row: int, col: int) -> str:
        """Row, column, class, confidence and Bunge Euler angles of one point."""
        snapshot = self.snapshot
        if snapshot is None or not (0 <= row < snapshot.scan_shape[0] and 0 <= col < snapshot.scan_shape[1]):
            return ""
        code = int(snapshot.class_id[row, col])
        text = f"row {row}, col {col}: "
        if code == NOT_RECEIVED:
            return text + "not yet received"
        if code < 0:
            return text + f"not indexed, confidence {snapshot.confidence[row, col]:.3f}"
        text += f"{self.class_names[code]}, confidence {snapshot.confidence[row, col]:.3f}"
        if self.oriented[code]:
            euler = Rotation(snapshot.quaternions[row, col].astype(float)).to_euler(degrees=True).ravel()
            text += ", Euler (φ1, Φ, φ2) = ({:.1f}°, {:.1f}°, {:.1f}°)".format(*euler)
        return text
