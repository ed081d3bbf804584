"""``diffstream bench soak``: a long stream through the whole live path, every lost frame accounted for.

A child process streams N frames of the model's input shape at a set rate (or flat out)
over loopback TCP with PUB/SUB semantics, as a detector does; this process receives them
with the live :class:`~.receiver.Receiver` and maps them with :class:`~.pipeline.LivePipeline`
and a real engine, while a thread samples the resident memory.

Every frame the sender offered ends in exactly one of these counts:

- ``mapped``: received, run through the engine and placed in the map;
- ``dropped_sender_queue_full``: the subscriber's queue at the sender was full. A plain PUB
  socket drops such a frame without a word; the soak's sender sets ``XPUB_NODROP`` so that
  ZeroMQ refuses the frame instead, and counts the refusal (which is how a frame lost to a
  high-water mark is *attributed*, rather than inferred from a gap in the indices);
- ``dropped_receiver_backpressure``: received, but the engine was behind and no batch slot
  was free (the receiver's ``dropped_backpressure``);
- ``rejected``: received but refused by validation (none, from this sender).

``frames_dropped`` is every frame offered but not mapped, and ``frames_dropped_unexplained``
what is left of it once the three counted causes are taken away: a frame the sender queued
but that never arrived, or one received and then lost inside the pipeline. It must be 0.
"""
from __future__ import annotations

import math
import multiprocessing
import multiprocessing.connection
import os
import resource
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from diffstream.engines import Engine

from .live_bench import random_frames
from .pipeline import LivePipeline
from .receiver import Receiver

if TYPE_CHECKING:
    from .detector_sim import Publisher

COLS = 1000
"""Scan columns; rows follow from the number of frames."""

DISTINCT_FRAMES = 1024
"""Random frames the sender cycles through: the content does not change the cost, and
holding N distinct frames would make the sender, not the pipeline, the memory hog."""

RSS_SAMPLE_S = 0.2
"""Seconds between resident-memory samples."""


@dataclass(frozen=True)
class SoakSettings:
    frames: int
    frame_shape: tuple[int, int]
    kind: str = "ebsd"
    dtype: str = "uint8"
    rate: float = 0.0
    batch_size: int = 256
    warmup_frames: int = 0  # 0: a tenth of the frames, at most 50,000


def run_soak(engine: Engine, model_name: str, settings: SoakSettings) -> dict:
    """Stream, map and account for ``settings.frames`` frames; returns the figures (see the module docstring)."""
    warmup = settings.warmup_frames or min(settings.frames // 10, 50_000)
    engine.infer(random_frames(settings.batch_size, settings.frame_shape, engine.card.input_dtype))  # its arenas
    context = multiprocessing.get_context("spawn")
    endpoints, results = context.Queue(), context.Queue()
    sender = context.Process(target=_send, args=(endpoints, results, settings), daemon=True)
    sender.start()
    try:
        endpoint = endpoints.get(timeout=60)
        receiver = Receiver(endpoint, batch_size=settings.batch_size)
        pipeline = LivePipeline(receiver, engine, model_name=model_name)
        memory = _MemoryWatch(lambda: receiver.stats().frames_received >= warmup,
                              lambda: receiver.stats().state in ("ended", "stopped"))
        threading.Thread(target=_stop_if_failed, args=(sender, pipeline), daemon=True).start()
        began = time.perf_counter()
        with memory:
            reports = pipeline.run()
        duration = time.perf_counter() - began
        if sender.exitcode not in (None, 0):
            raise RuntimeError(f"the soak's sender process failed (exit code {sender.exitcode})")
        refused = results.get(timeout=60)
    finally:
        sender.join(timeout=30)
        if sender.is_alive():
            sender.terminate()
    stats = receiver.stats()
    mapped = sum(report.summary["frames_received"] for report in reports)
    rejected = sum(stats.rejected.values())
    dropped = settings.frames - mapped
    return {
        "frames": settings.frames,
        "rate_fps": settings.rate,
        "frames_sent": settings.frames - refused,
        "frames_received": stats.frames_received,
        "frames_mapped": mapped,
        "frames_dropped": dropped,
        "dropped_by_cause": {"sender_queue_full": refused, "receiver_backpressure": stats.dropped_backpressure,
                             "rejected": rejected},
        "frames_dropped_unexplained": dropped - refused - stats.dropped_backpressure - rejected,
        "warmup_frames": warmup,
        "rss_after_warmup_mb": memory.baseline_mb,
        "rss_peak_mb": memory.peak_mb,
        "rss_growth_mb": memory.growth_mb,
        "rss_after_scan_mb": memory.final_mb,
        "duration_s": round(duration, 2),
        "received_fps": round(stats.frames_received / duration, 1),
        "mapped_fps": round(mapped / duration, 1),
    }


def _stop_if_failed(sender: multiprocessing.Process, pipeline: LivePipeline) -> None:
    """End the run if the sender dies before its scan_end, rather than wait for frames that cannot come."""
    multiprocessing.connection.wait([sender.sentinel])
    if sender.exitcode != 0:
        pipeline.stop()


def rss_mb() -> float:
    """This process's resident memory now (Linux), or its peak where /proc is missing."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class _MemoryWatch:
    """Samples RSS on a thread: the level once ``warm()`` first holds, the peak after it while the
    stream lasts (until ``over()``), and the level at the end. The end is apart because finishing
    a scan builds its summary from a snapshot of the whole map: a one-off cost that grows with
    the scan's size, not with time, so it is no sign of a leak."""

    def __init__(self, warm: Callable[[], bool], over: Callable[[], bool]) -> None:
        self._warm = warm
        self._over = over
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="diffstream-soak-rss", daemon=True)
        self.baseline_mb: float | None = None
        self.peak_mb: float | None = None
        self.final_mb: float | None = None

    @property
    def growth_mb(self) -> float | None:
        return None if self.baseline_mb is None else round(self.peak_mb - self.baseline_mb, 1)

    def __enter__(self) -> _MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.final_mb = round(rss_mb(), 1)

    def _run(self) -> None:
        while not self._over():
            now = rss_mb()
            if self.baseline_mb is None:
                if self._warm():
                    self.baseline_mb = self.peak_mb = round(now, 1)
            else:
                self.peak_mb = round(max(self.peak_mb, now), 1)
            if self._stop.wait(RSS_SAMPLE_S):
                return


def _send(endpoints: multiprocessing.Queue, results: multiprocessing.Queue, settings: SoakSettings) -> None:
    """The child: bind a nodrop XPUB, stream one scan of ``settings.frames`` frames, report the refusals."""
    from .detector_sim import Publisher, Scan, scan_template, stream

    rows = math.ceil(settings.frames / COLS)
    pool = random_frames(min(DISTINCT_FRAMES, settings.frames), settings.frame_shape, settings.dtype)

    def chunks(stop: threading.Event) -> Iterator[tuple[range, np.ndarray]]:
        for first in range(0, settings.frames, len(pool)):
            count = min(len(pool), settings.frames - first)
            yield range(first, first + count), pool[:count]

    start = scan_template(settings.kind, (rows, COLS), settings.frame_shape, settings.dtype, {})
    with Publisher("tcp://127.0.0.1:*", nodrop=True) as publisher:
        endpoints.put(publisher.endpoint)
        stop = threading.Event()
        publisher.wait_for_subscribers(1, 60.0, stop)
        counting = _CountingPublisher(publisher)
        stream(counting, Scan(start, chunks), scan_id="soak", rate=settings.rate, stop=stop)
    results.put(counting.refused)


class _CountingPublisher:
    """What :func:`~.detector_sim.stream` sends through in the soak: a frame a full queue refuses is
    counted and skipped (the stream goes on, as a detector's would); control messages wait for room."""

    def __init__(self, publisher: Publisher) -> None:
        self._publisher = publisher
        self.refused = 0

    def send(self, parts: list, give_up: Callable[[], bool]) -> bool:
        if len(parts) != 2:  # scan_start, scan_end
            return self._publisher.send(parts, give_up)
        if not self._publisher.offer(parts):
            self.refused += 1
        return True
