"""The live pipeline: receiver → engine → decoder → map assembler → files, for one or more scans.

The receiver runs in its own thread and hands over batches in order with the scan events;
this module's loop takes them. An engine that runs several calls at once (``concurrency``,
e.g. ONNX Runtime's one session per core) gets that many engine threads, each mapping a
batch of its own, so no core waits for another's slice of a batch; a scan event waits
until the batches before it are mapped, so a scan still starts and ends in order. One
:class:`ScanRun` per scan times every stage, tracks each frame's latency from its detector
timestamp to the map, and the scan's files are written when it ends, is superseded, or
the user stops.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from diffstream.engines import Engine

from .batch_ring import Batch
from .decoder import decode_outputs
from .frame_cache import FrameCache
from .map_assembler import MapAssembler, MapRows, MapSnapshot
from .map_outputs import scan_summary, write_scan_outputs
from .protocol import ScanStart
from .receiver import Receiver, ReceiverStats, ScanFinished, ScanStarted
from .truth import Truth, load_truth

log = logging.getLogger("diffstream.live.pipeline")


@dataclass
class ScanRun:
    """Everything the engine threads know about the scan they are mapping.

    ``engine_s`` and ``assemble_s`` are busy seconds summed over the ``workers`` engine
    threads, which run side by side; :meth:`record` is the one place they change.
    """

    start: ScanStart
    assembler: MapAssembler
    latency_s: np.ndarray
    cast_to: np.dtype | None = None
    workers: int = 1
    frames_mapped: int = 0
    first_received_t: float = float("inf")
    last_received_t: float = 0.0
    last_mapped_t: float = 0.0
    engine_s: float = 0.0
    assemble_s: float = 0.0
    batches: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, batch: Batch, *, engine_s: float, assemble_s: float, mapped_t: float) -> None:
        """Account for one mapped batch (from any engine thread)."""
        with self.lock:
            self.engine_s += engine_s
            self.assemble_s += assemble_s
            self.latency_s[batch.indices] = mapped_t - batch.sent_t
            self.first_received_t = min(self.first_received_t, float(batch.received_t.min()))
            self.last_received_t = max(self.last_received_t, float(batch.received_t.max()))
            self.last_mapped_t = max(self.last_mapped_t, mapped_t)
            self.frames_mapped += batch.n
            self.batches += 1

    def rates(self) -> dict[str, float]:
        """Per-stage throughput in frames/s of busy time (with every engine thread busy), and end to
        end over the scan's wall-clock span."""
        n = self.frames_mapped
        span = self.last_mapped_t - self.first_received_t
        receive_span = self.last_received_t - self.first_received_t
        return {
            "receive_fps": _ratio(n, receive_span),
            "engine_fps": _ratio(n, self.engine_s / self.workers),
            "assemble_fps": _ratio(n, self.assemble_s / self.workers),
            "end_to_end_fps": _ratio(n, span),
        }

    def latency_ms(self) -> dict[str, float | None]:
        seen = self.latency_s[np.isfinite(self.latency_s)] * 1e3
        if seen.size == 0:
            return {"p50": None, "p99": None, "max": None}
        p50, p99 = np.percentile(seen, [50, 99])
        return {"p50": round(float(p50), 3), "p99": round(float(p99), 3), "max": round(float(seen.max()), 3)}


@dataclass(frozen=True)
class ScanReport:
    """What one finished (or interrupted) scan produced."""

    scan_id: str
    summary: dict
    files: dict[str, Path] = field(default_factory=dict)


def _ratio(n: int, seconds: float) -> float:
    return round(n / seconds, 1) if seconds > 0 else 0.0


class LivePipeline:
    """Maps every scan the receiver delivers with one engine; call :meth:`run` from the engine thread."""

    def __init__(self, receiver: Receiver, engine: Engine, *, model_name: str, out_dir: Path | None = None,
                 truth_path: Path | None = None, follow: bool = False,
                 on_report: Callable[[ScanReport], None] | None = None) -> None:
        self.receiver = receiver
        self.engine = engine
        self.model_name = model_name
        self.out_dir = out_dir
        self.truth_path = truth_path
        self.follow = follow
        self.on_report = on_report
        self.reports: list[ScanReport] = []
        self._scan: ScanRun | None = None
        self._finished: ScanRun | None = None
        self._finished_summary: dict | None = None
        self._scan_lock = threading.Lock()
        self._stop = threading.Event()
        self._scan_count = 0
        self._workers = max(1, engine.concurrency)
        self._in_flight: set[Future] = set()
        self.frame_cache: FrameCache | None = None
        """Set by a window that shows patterns: every mapped batch's frames are copied into it."""

    def stop(self) -> None:
        """Ask :meth:`run` to finish: the scan in progress is saved as it stands."""
        self._stop.set()

    def snapshot(self) -> MapSnapshot | None:
        """The map for a painter thread: the scan in progress, else the last one finished
        (so a window shows the complete final map); None before the first scan starts."""
        with self._scan_lock:
            scan = self._scan or self._finished
        return None if scan is None else scan.assembler.snapshot()

    def snapshot_rows(self, first: int, stop: int) -> MapRows | None:
        """Rows ``first … stop - 1`` of the map :meth:`snapshot` would give, with its whole-map
        counts: a painter that keeps its own copy updates it from the rows that changed."""
        with self._scan_lock:
            scan = self._scan or self._finished
        return None if scan is None else scan.assembler.snapshot_rows(first, stop)

    def save(self, folder: Path) -> dict[str, Path]:
        """Write the scan in progress (as it stands) or the last finished one into ``folder``.

        This is the window's Save button and the retry after a failed save (an unwritable
        folder or a full disk): the map stays in memory until the next scan replaces it.
        Safe to call from any thread while the pipeline runs. Raises ``LookupError`` before
        the first scan starts and ``OSError`` when the files cannot be written.
        """
        with self._scan_lock:
            scan = self._scan or self._finished
            summary = self._finished_summary if scan is self._finished else None
        if scan is None:
            raise LookupError("no scan has started yet: nothing to save")
        if summary is None:
            summary = self._summary(scan, None, "saved while running")
        return write_scan_outputs(folder, scan.assembler, self.engine.card, summary, truth=self._truth())

    def receiver_stats(self) -> ReceiverStats:
        return self.receiver.stats()

    def run(self) -> list[ScanReport]:
        """Map scans until one ends (or forever with ``follow``), then return the reports.

        Ctrl-C (KeyboardInterrupt) and :meth:`stop` end the run the same way: the receiver
        stops, batches already received are still mapped, and the partial scan is saved.
        """
        self.receiver.start()
        pool = ThreadPoolExecutor(self._workers, "diffstream-engine") if self._workers > 1 else None
        try:
            while not self._stop.is_set():
                item = self.receiver.get(timeout=0.1)
                if item is not None and self._handle(item, pool) and not self.follow:
                    break
        finally:
            self.receiver.stop()
            try:
                self._drain(pool)
            finally:
                if pool is not None:
                    pool.shutdown()
        return self.reports

    def _drain(self, pool: ThreadPoolExecutor | None) -> None:
        """Map what the receiver had already accepted, then save a scan left open."""
        while (item := self.receiver.get(timeout=0)) is not None:
            self._handle(item, pool)
        self._settle()
        if self._scan is not None:
            self._finish(self._scan, frames_sent=None, reason="stopped")

    def _handle(self, item: object, pool: ThreadPoolExecutor | None) -> bool:
        """Process one item from the receiver; True when a scan has just been finished."""
        if not isinstance(item, Batch):
            self._settle()  # a scan event comes after every batch before it
        if isinstance(item, ScanStarted):
            if self._scan is not None:
                self._finish(self._scan, frames_sent=None, reason="superseded")
            self._begin(item.start)
            return False
        if isinstance(item, ScanFinished):
            if self._scan is not None and self._scan.start.scan_id == item.start.scan_id:
                self._finish(self._scan, frames_sent=item.frames_sent, reason=item.reason)
                return True
            return False
        scan = self._scan
        if scan is None or scan.start.scan_id != item.scan_id:
            self.receiver.release(item)
        elif pool is None:
            self._map_and_release(scan, item)
        else:
            while len(self._in_flight) >= self._workers:
                self._collect(wait(self._in_flight, return_when=FIRST_COMPLETED).done)
            self._in_flight.add(pool.submit(self._map_and_release, scan, item))
        return False

    def _settle(self) -> None:
        """Wait for every batch in the engine threads; the first error any of them met is raised here."""
        if self._in_flight:
            self._collect(wait(self._in_flight).done)

    def _collect(self, done: set[Future]) -> None:
        self._in_flight -= done
        for future in done:
            future.result()

    def _map_and_release(self, scan: ScanRun, batch: Batch) -> None:
        try:
            self._map_batch(scan, batch)
        finally:
            self.receiver.release(batch)

    def _begin(self, start: ScanStart) -> None:
        card = self.engine.card
        if start.kind != card.kind:
            log.error("scan %s is %s but model %s expects %s patterns; its frames are not mapped",
                      start.scan_id, start.kind, self.model_name, card.kind)
            return
        cast_to = None
        if start.dtype != card.input_dtype:
            if not np.can_cast(start.dtype, card.input_dtype, "safe"):
                log.error("scan %s sends %s frames; model %s takes %s and narrowing would lose counts",
                          start.scan_id, start.dtype, self.model_name, card.input_dtype)
                return
            cast_to = np.dtype(card.input_dtype)
        latency = np.full(start.n_frames, np.nan, dtype=np.float32)
        scan = ScanRun(start, MapAssembler(start.scan_shape, card.classes), latency, cast_to, self._workers)
        with self._scan_lock:
            self._scan = scan
        log.info("scan %s started: %d×%d %s frames of %d×%d %s", start.scan_id, *start.scan_shape, start.kind,
                 *start.frame_shape, start.dtype)

    def _map_batch(self, scan: ScanRun, batch: Batch) -> None:
        frames = batch.frames if scan.cast_to is None else batch.frames.astype(scan.cast_to)
        t0 = time.perf_counter()
        outputs = self.engine.infer(frames)
        t1 = time.perf_counter()
        decoded = decode_outputs(outputs, batch.n)
        scan.assembler.place(batch.indices, decoded.class_id, decoded.class_probability, decoded.usable,
                             decoded.rotation_matrices)
        t2 = time.perf_counter()
        if self.frame_cache is not None:  # a window's copy, not a stage of the map: outside the timings
            self.frame_cache.put(scan.start.scan_id, batch.indices, batch.frames, batch.sent_t)
        scan.record(batch, engine_s=t1 - t0, assemble_s=t2 - t1, mapped_t=time.time())

    def _finish(self, scan: ScanRun, *, frames_sent: int | None, reason: str) -> None:
        summary = self._summary(scan, frames_sent, reason)
        with self._scan_lock:
            self._scan = None
            self._finished = scan
            self._finished_summary = summary
        truth = self._truth()
        files: dict[str, Path] = {}
        if self.out_dir is not None:
            folder = self.out_dir if self._scan_count == 0 else self.out_dir / f"scan-{self._scan_count + 1:03d}"
            try:
                files = write_scan_outputs(folder, scan.assembler, self.engine.card, summary, truth=truth)
            except OSError as error:
                # A full disk or an unwritable folder must not cost the map: it stays in memory
                # (snapshot, save) until the next scan, and the report says it was not written.
                log.error("scan %s could not be saved to %s (%s); the map is kept in memory until the next "
                          "scan starts: save it elsewhere", scan.start.scan_id, folder, error)
                summary = {**summary, "save_error": f"{folder}: {error}"}
        if files:
            summary = json.loads(files["summary"].read_text(encoding="utf-8"))
        else:
            summary = scan_summary(scan.assembler.snapshot(), self.engine.card, summary, truth)
        self._scan_count += 1
        report = ScanReport(scan.start.scan_id, summary, files)
        self.reports.append(report)
        if self.on_report is not None:
            self.on_report(report)

    def _truth(self) -> Truth | None:
        return None if self.truth_path is None else load_truth(self.truth_path)

    def _summary(self, scan: ScanRun, frames_sent: int | None, reason: str) -> dict:
        stats = self.receiver.stats()
        received = scan.frames_mapped
        expected = frames_sent if frames_sent is not None else scan.start.n_frames
        return {
            "scan_id": scan.start.scan_id,
            "kind": scan.start.kind,
            "frame_shape": list(scan.start.frame_shape),
            "dtype": scan.start.dtype,
            "ended_by": reason,
            "frames_expected": expected,
            "frames_received": received,
            "frames_rejected": sum(stats.rejected.values()),
            "rejected_by_reason": {k: v for k, v in stats.rejected.items() if v},
            "frames_dropped": max(expected - received, 0),
            "rates": scan.rates(),
            "latency_ms": scan.latency_ms(),
            "batches": scan.batches,
            "engine": {"name": self.engine.name, "device": self.engine.device},
            "model": {"name": self.model_name, "card_name": self.engine.card.name},
        }
