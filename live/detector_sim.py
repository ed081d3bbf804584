"""The detector server side of wire protocol v1: one sender for every kind of frame source.

A :class:`FrameSource` (a simulated specimen, :class:`~.scan_render.SimulatedSource`; a
recording or pattern file, :mod:`.replay`) hands out :class:`Scan` objects: the scan_start a scan announces and its
frames in sending order, in chunks. :func:`stream` sends one scan as a detector would:
scan_start (repeated every :data:`SCAN_START_INTERVAL` s so that a subscriber joining late
learns the scan within a second), the frames stamped with ``time.time()`` and paced to a
rate, then scan_end with the number of frames actually sent. :func:`serve` waits for
subscribers and streams a source's scans, once or in a loop, each under a new scan_id.

The socket (:class:`Publisher`) is XPUB by default: to subscribers it is a PUB socket (it
never blocks; a slow subscriber loses frames, and counts them from the indices), and it
also hears subscriptions, which is how the server knows someone is listening before it
starts a short scan. PUSH is the lossless alternative: it blocks until a puller takes each
frame.

Stopping is cooperative: SIGINT and SIGTERM set an event (:func:`stop_on_signals`) that the
sender checks between small bursts, so a stopped scan still ends with a correct scan_end
and the socket is closed with time to deliver it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import itertools
import math
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np
import zmq

from .protocol import ScanEnd, ScanStart, decode, encode_frame, encode_scan_end, encode_scan_start

if TYPE_CHECKING:
    from .curve import CurveServer

SCAN_START_INTERVAL = 0.5
"""Seconds between repeats of a scan's scan_start while its frames stream."""

MAX_BURST = 64
"""Most frames sent between two looks at the clock, the stop flag and the scan_start timer."""

MAX_SLEEP = 0.05
"""Longest nap between frames, so that at low rates stop and scan_start repeats stay timely."""

MIN_SLEEP = 0.001
"""Shortest nap: at high rates frames go out in bursts of about ``rate × MIN_SLEEP`` rather
than one per wake-up. Waking for every frame cost the simulator nearly a whole core at
7,000 frames/s, taken from the pipeline it feeds when both share a machine; a millisecond
of jitter is nothing next to a map's latency."""

SEND_HWM = 10_000
"""Frames queued per subscriber before XPUB drops (PUSH blocks): half a second at 20,000
frames/s, so a subscriber's brief stall costs nothing."""

LINGER_MS = 2000
"""How long closing waits to deliver what is queued (the scan_end above all)."""

ARRAY_CHUNK = 4096
"""Frames per chunk when streaming from memory."""

Chunk = tuple[Sequence[int], np.ndarray]
"""Scan indices and the frames (k, h, w) at them, in sending order."""


@dataclasses.dataclass(frozen=True)
class Scan:
    """One scan ready to send. ``start`` is its scan_start; its ``scan_id`` and ``t`` are
    placeholders that :func:`stream` fills in for each pass. ``chunks(stop)`` yields the
    frames; sources that may block (rendering, reading) return early once ``stop`` is set."""

    start: ScanStart
    chunks: Callable[[threading.Event], Iterable[Chunk]]


class FrameSource(Protocol):
    """Anything the server can stream; ``scans()`` is called again for every loop."""

    def scans(self) -> Iterable[Scan]: ...


def array_scan(start: ScanStart, frames: np.ndarray) -> Scan:
    """A scan of frames (n, h, w) held in memory, sent in raster order."""

    def chunks(stop: threading.Event) -> Iterator[Chunk]:
        for first in range(0, len(frames), ARRAY_CHUNK):
            yield range(first, first + len(frames[first:first + ARRAY_CHUNK])), frames[first:first + ARRAY_CHUNK]

    return Scan(start, chunks)


def scan_template(kind: str, scan_shape: tuple[int, int], frame_shape: tuple[int, int], dtype: str,
                  geometry: dict) -> ScanStart:
    """A scan_start awaiting its scan_id and time."""
    return ScanStart(scan_id="", kind=kind, scan_shape=tuple(scan_shape), frame_shape=tuple(frame_shape),
                     dtype=dtype, geometry=geometry)


class Publisher:
    """The server's bound socket: XPUB (default) or PUSH; see the module docstring.

    ``endpoint`` is the address actually bound, so ``tcp://127.0.0.1:*`` tells its port.
    ``nodrop`` (XPUB only) makes a subscriber's full queue refuse a message instead of
    silently dropping it, so :meth:`offer` can tell the caller, who counts it; a refused
    message reaches no subscriber, so use it with one subscriber (the soak bench does).
    ``security`` makes the socket a CURVE server that lets in only the clients it lists.
    Raises ``zmq.ZMQError`` when the address cannot be bound.
    """

    def __init__(self, bind: str, *, push: bool = False, nodrop: bool = False,
                 security: CurveServer | None = None) -> None:
        self.push = push
        self.security = security
        self._subscribers = 0
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.PUSH if push else zmq.XPUB)
        self._authenticator = None if security is None else security.start(self._socket, self._context)
        self._socket.setsockopt(zmq.SNDHWM, SEND_HWM)
        self._socket.setsockopt(zmq.LINGER, LINGER_MS)
        if not push:
            self._socket.setsockopt(zmq.XPUB_VERBOSER, 1)  # every (un)subscription, so they can be counted
            self._socket.setsockopt(zmq.XPUB_NODROP, int(nodrop))
        try:
            self._socket.bind(bind)
        except zmq.ZMQError:
            self.close()
            raise
        self.endpoint = self._socket.getsockopt_string(zmq.LAST_ENDPOINT)

    @property
    def socket_type(self) -> str:
        return "push" if self.push else "xpub"

    @property
    def subscribers(self) -> int:
        """Subscriptions heard minus those withdrawn (a subscriber that leaves withdraws
        its own); always 0 for PUSH, which hears nothing."""
        while not self.push:
            try:
                message = self._socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            self._subscribers += {b"\x01": 1, b"\x00": -1}.get(message[:1], 0)
        return self._subscribers

    def wait_for_subscribers(self, n: int, timeout: float, stop: threading.Event) -> bool:
        """Block until ``n`` subscribers listen; False on timeout or stop. PUSH returns at
        once: its sends block until a puller connects, so nothing goes into the void."""
        if self.push or n <= 0:
            return True
        deadline = time.monotonic() + timeout
        while self.subscribers < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or stop.is_set():
                return False
            self._socket.poll(min(100, math.ceil(remaining * 1000)), zmq.POLLIN)
        return True

    def send(self, parts: list, give_up: Callable[[], bool]) -> bool:
        """Send one multipart message. XPUB never waits (it drops for a subscriber whose
        queue is full); PUSH (and a ``nodrop`` XPUB) waits for room, asking ``give_up`` every
        0.1 s, and returns False, having sent nothing, once it says so."""
        while not self.offer(parts):  # no puller, or a full queue
            while not self._socket.poll(100, zmq.POLLOUT):
                if give_up():
                    return False
            if give_up():
                return False
        return True

    def offer(self, parts: list) -> bool:
        """Send one multipart message if it can be queued now; False, having sent nothing, when
        the queue is full (PUSH, or a ``nodrop`` XPUB; a plain XPUB drops silently instead)."""
        try:
            self._socket.send_multipart(parts, zmq.NOBLOCK)
        except zmq.Again:
            return False
        return True

    def close(self) -> None:
        """Close the socket, giving queued messages up to :data:`LINGER_MS` to leave."""
        self._socket.close()
        if self._authenticator is not None:
            self._authenticator.stop()
        self._context.term()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def new_scan_id(prefix: str) -> str:
    """A scan_id unique across runs and loops, e.g. ``sim-3f2a9c01b2d4``."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def stream(publisher: Publisher, scan: Scan, *, scan_id: str, rate: float, stop: threading.Event) -> ScanEnd | None:
    """Send ``scan`` under ``scan_id``: scan_start, every frame paced to ``rate`` frames/s
    (0: as fast as the socket takes them), scan_end. Returns the scan_end sent, or None
    when ``stop`` came before the scan began (then nothing is sent).

    The first chunk is fetched before scan_start goes out, so a begun scan never stalls on
    its source. Pacing is against ``perf_counter``: whatever is due is sent in bursts of at
    most :data:`MAX_BURST`, and the sender sleeps until the next frame is due (at least
    :data:`MIN_SLEEP`), so the average rate holds even though sleeps overshoot.
    """
    if not (rate >= 0 and math.isfinite(rate)):
        raise ValueError(f"rate: must be a finite number ≥ 0 frames/s, got {rate!r}")
    chunks = iter(scan.chunks(stop))
    try:
        first = next(chunks, None)
        if stop.is_set():
            return None
        announce = encode_scan_start(dataclasses.replace(scan.start, scan_id=scan_id, t=time.time()))
        if not publisher.send(announce, stop.is_set):
            return None
        frames = itertools.chain([] if first is None else [first], chunks)
        sent = _send_frames(publisher, scan_id, frames, rate, stop, announce)
        end = ScanEnd(scan_id=scan_id, frames_sent=sent, t=time.time())
        deadline = time.monotonic() + LINGER_MS / 1000  # sent even when stopping, unless no puller takes it
        publisher.send(encode_scan_end(end), lambda: time.monotonic() > deadline)
        return end
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def _send_frames(publisher: Publisher, scan_id: str, chunks: Iterable[Chunk], rate: float,
                 stop: threading.Event, announce: list) -> int:
    clock = time.perf_counter
    began = clock()
    next_announce = began + SCAN_START_INTERVAL
    sent = 0
    for indices, frames in chunks:
        position, size = 0, len(frames)
        while position < size:
            if stop.is_set():
                return sent
            now = clock()
            if now >= next_announce:
                publisher.send(announce, stop.is_set)
                next_announce = now + SCAN_START_INTERVAL
            burst = min(size - position, MAX_BURST)
            if rate > 0:
                due = int((now - began) * rate) + 1 - sent
                if due <= 0:
                    time.sleep(min(max(sent / rate - (now - began), MIN_SLEEP), MAX_SLEEP))
                    continue
                burst = min(burst, due)
            for k in range(position, position + burst):
                if not publisher.send(encode_frame(scan_id, indices[k], time.time(), frames[k]), stop.is_set):
                    return sent
                sent += 1
            position += burst
    return sent


def serve(publisher: Publisher, source: FrameSource, *, rate: float, stop: threading.Event, loop: bool = False,
          wait_subscribers: int = 0, wait_timeout: float = 60.0, scan_prefix: str = "sim",
          log: Callable[[str], None] | None = None) -> list[ScanEnd]:
    """Stream every scan of ``source`` (over and over with ``loop``) until done or ``stop``,
    after waiting up to ``wait_timeout`` s for ``wait_subscribers`` subscribers (raises
    ``TimeoutError`` if they do not come). ``log`` gets one line when the first scan starts.
    Returns the scan_end of every scan sent."""
    if not publisher.wait_for_subscribers(wait_subscribers, wait_timeout, stop):
        if stop.is_set():
            return []
        raise TimeoutError(f"no subscriber on {publisher.endpoint} within {wait_timeout:g} s "
                           f"(waited for {wait_subscribers})")
    ends: list[ScanEnd] = []
    while not stop.is_set():
        sent_before = len(ends)
        for scan in source.scans():
            scan_id = new_scan_id(scan_prefix)
            if not ends and log is not None:
                log(_describe(scan.start, scan_id, publisher, rate))
            end = stream(publisher, scan, scan_id=scan_id, rate=rate, stop=stop)
            if end is None:
                break
            ends.append(end)
            if stop.is_set():
                break
        if not loop or len(ends) == sent_before:
            break
    return ends


def _describe(start: ScanStart, scan_id: str, publisher: Publisher, rate: float) -> str:
    rows, cols = start.scan_shape
    h, w = start.frame_shape
    pace = f"{rate:g} frames/s" if rate > 0 else "full speed"
    return (f"streaming {start.kind} scan {scan_id}: {rows}×{cols} ({start.n_frames} frames of {h}×{w} "
            f"{start.dtype}) on {publisher.endpoint} ({publisher.socket_type}) at {pace}")


@contextlib.contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event that SIGINT and SIGTERM set instead of ending the process, so a server (or
    recorder) can finish cleanly; the previous handlers are back afterwards. Main thread only."""
    stop = threading.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in signals}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def measure_stream_rate(n_frames: int = 100_000, frame_shape: tuple[int, int] = (60, 60)) -> dict[str, float]:
    """Send ``n_frames`` uint8 frames at full speed over loopback TCP to a bare SUB receiver
    on a thread of this process, and return the frames/s sent and received and the frames
    lost. Both ends share the interpreter's lock, so this is a floor for the sender alone."""
    distinct = np.random.default_rng(0).integers(0, 256, (ARRAY_CHUNK, *frame_shape), dtype=np.uint8)
    cols = 500
    rows = math.ceil(n_frames / cols)
    start = scan_template("ebsd", (rows, cols), frame_shape, "uint8", {})

    def chunks(stop: threading.Event) -> Iterator[Chunk]:
        for first in range(0, rows * cols, ARRAY_CHUNK):
            count = min(ARRAY_CHUNK, rows * cols - first)
            yield range(first, first + count), distinct[:count]

    stop = threading.Event()
    with Publisher("tcp://127.0.0.1:*") as publisher:
        received: dict[str, float] = {}
        receiver = threading.Thread(target=_count_frames, args=(publisher.endpoint, received))
        receiver.start()
        publisher.wait_for_subscribers(1, 10.0, stop)
        began = time.perf_counter()
        end = stream(publisher, Scan(start, chunks), scan_id="bench", rate=0, stop=stop)
        sent_s = time.perf_counter() - began
        receiver.join()
    return {
        "frames": end.frames_sent,
        "sent_per_s": end.frames_sent / sent_s,
        "received_per_s": received["frames"] / received["seconds"],
        "lost": end.frames_sent - received["frames"],
    }


def _count_frames(endpoint: str, out: dict[str, float]) -> None:
    """A bare SUB receiver: counts frame messages until a scan_end, or until two seconds of
    silence should the scan_end itself have been dropped."""
    with zmq.Context() as context, context.socket(zmq.SUB) as socket:
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.RCVTIMEO, 2000)  # a timeout costs nothing per message, unlike polling
        socket.setsockopt(zmq.SUBSCRIBE, b"")
        socket.connect(endpoint)
        frames, began, last = 0, None, None
        while True:
            try:
                parts = socket.recv_multipart(copy=False)
            except zmq.Again:
                break
            if len(parts) == 2:
                frames += 1
                last = time.perf_counter()
                began = began or last
            elif isinstance(decode(parts), ScanEnd):
                break
        out.update(frames=frames, seconds=(last or 1.0) - (began or 0.0))
