"""The receiving end of the live pipeline: a ZeroMQ SUB (or PULL) socket read by one thread.

Every message is decoded and checked against its scan's scan_start (:mod:`.protocol`);
faults are counted by reason and logged once per reason, and the stream goes on, because a
beamline must keep mapping through a glitch rather than stop at it. Accepted frames are
copied once into a :class:`~.batch_ring.BatchRing`, which hands batches and the scan events
defined here to the engine thread in arrival order.

The thread waits inside a blocking ``recv`` whose timeout (``RCVTIMEO``) is the time to its
next timer: a partial batch's deadline, the silence timer, or a short tick that bounds how
long :meth:`Receiver.stop` takes and when connection events are read. Measured on 2 cores
(docs/benchmarks.md), a ``zmq.Poller`` wake-up plus non-blocking reads cost about a quarter
of the socket's rate when the receiver keeps up with the stream and so keeps finding it
empty; a blocking ``recv`` does not. A message's parts are read with ``recv`` and
``RCVMORE``, as ``recv_multipart`` does, without its per-message Python.

Once the reference decoder has accepted a frame of the open scan, later frame messages are
held as they come, in a loop of their own (:meth:`Receiver._receive_frames`): each payload is
received straight into the next free row of the ring's batch being filled (``recv_into``:
the one copy, out of ZeroMQ's buffer), and the headers are checked a batch at a time against
that frame's header layout (:mod:`.frame_layout`), after which the ring keeps the rows of
the frames that fit. Per message, little is left beyond what a bare receive loop does. Held
frames are checked when they fill the ring's batch, when the first of them has waited
``max_wait_s``, or before any other message, so batches and scan events keep their order
and their deadlines.
"""
from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from .batch_ring import Allocate, Batch, BatchRing, row_views
from .frame_layout import FrameLayout
from .protocol import REASONS, Frame, Message, ProtocolError, ScanEnd, ScanStart, check_frame, decode

if TYPE_CHECKING:
    from .curve import CurveClient

log = logging.getLogger("diffstream.live.receiver")

RECEIVER_REASONS = ("duplicate_index", "conflicting_scan_start")
"""Faults only a receiver can see, because they need the history of the scan: an index that
already arrived, and a scan_start that reuses the open scan's id with different contents."""

REJECT_REASONS = REASONS + RECEIVER_REASONS
"""Every key of :attr:`ReceiverStats.rejected`."""

RECEIVE_HWM = 10_000
"""Messages ZeroMQ queues ahead of the receiver (``RCVHWM``): what a SUB socket absorbs before
it drops (half a second at 20,000 frames/s) when the engine stalls for a moment."""

POLL_TICK_S = 0.1
"""Longest wait in ``recv``: how quickly the thread notices :meth:`Receiver.stop`, and how often
an idle receiver reads its connection events."""

_HANDSHAKE_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                     | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
"""Monitor events of a connection the server would not complete: "connected" means a handshake succeeded."""

_URL = re.compile(r"(tcp|ipc|inproc)://(.+)")


@dataclass(frozen=True)
class ScanStarted:
    """A scan began; the batches that follow in the stream belong to it."""

    start: ScanStart


@dataclass(frozen=True)
class ScanFinished:
    """A scan is over: its ``scan_end`` arrived (``reason="scan_end"``), a scan_start of another
    scan came first (``"superseded"``: the publisher restarted) or the receiver stopped (``"stopped"``).

    ``frames_sent`` is the publisher's count (None without a scan_end); ``frames_received``
    the frames accepted off the wire, including any the ring then had to drop for back-pressure.
    """

    start: ScanStart
    frames_sent: int | None
    frames_received: int
    reason: Literal["scan_end", "superseded", "stopped"]


@dataclass(frozen=True)
class ReceiverStats:
    """A snapshot of the receiver's counters.

    ``state`` is "connecting" (no connection, or no handshake, yet, or it dropped), "waiting" (connected, no
    scan yet), "receiving", "silent" (no message for ``silence_s`` during a scan), "ended"
    (the last scan finished) or "stopped".
    ``rejected`` holds every reason of :data:`REJECT_REASONS`, zeros included.
    ``dropped_missing`` counts frames that never arrived: ``frames_sent`` minus those
    accepted for scans that ended, and index gaps (below the highest index seen) of scans
    that were superseded. ``scan_id`` is the open scan's, or the last one's once it ended.
    ``last_message_t`` is ``time.time()`` of the last message (None before any); ``wakeups``
    counts the waits that ended without a message (its timers), which shows that an idle
    receiver sleeps.
    """

    state: str
    scan_id: str | None
    messages: int
    frames_received: int
    rejected: dict[str, int]
    dropped_backpressure: int
    dropped_missing: int
    tap_errors: int
    last_message_t: float | None
    wakeups: int


@dataclass(eq=False)
class _OpenScan:
    """What the receiver thread tracks of the scan in progress."""

    start: ScanStart
    seen: np.ndarray  # bool per scan index; np.zeros is lazily backed, so a huge scan costs what arrives
    layout: FrameLayout
    stage: np.ndarray  # (batch size, frame bytes) uint8: rows for held frames when the ring has none free
    accepted: int = 0
    max_index: int = -1
    stage_views: list[memoryview] = field(init=False)

    def __post_init__(self) -> None:
        self.stage_views = row_views(self.stage)


class Receiver:
    """Receives protocol v1 messages from ``url`` on a thread of its own; read batches with :meth:`get`.

    ``socket_type="sub"`` (default) subscribes to everything and never slows the publisher:
    when the consumer falls behind, frames are dropped and counted (``dropped_backpressure``).
    ``"pull"`` is lossless: the receiver waits for a free batch slot and ZeroMQ passes the
    back-pressure on to the PUSH sender. ``tap`` is called in the receiver thread with every
    message the receiver accepts (scan_starts, repeats included; frames that fit their scan
    and are new; the open scan's scan_end), before batching, so a recorder sees even frames
    the ring drops; it must copy a frame's payload to keep it. ``allocate`` is passed to the
    :class:`BatchRing`. ``security`` makes the socket a CURVE client (:mod:`.curve`): encrypted,
    and only to the server whose public key it holds; a server that refuses the client's key
    sends nothing, the state stays "connecting" and the first refusal is logged. Use as a
    context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(self, url: str, *, socket_type: Literal["sub", "pull"] = "sub", batch_size: int = 256,
                 max_wait_s: float = 0.02, n_slots: int = 8, rcvhwm: int = RECEIVE_HWM, silence_s: float = 2.0,
                 tap: Callable[[Message], object] | None = None, allocate: Allocate | None = None,
                 security: CurveClient | None = None) -> None:
        _check_url(url)
        if socket_type not in ("sub", "pull"):
            raise ValueError(f"socket_type must be 'sub' or 'pull', got {socket_type!r}")
        if not silence_s > 0:
            raise ValueError(f"silence_s must be a positive number of seconds, got {silence_s!r}")
        self.url = url
        self.socket_type = socket_type
        self.silence_s = silence_s
        self._tap = tap
        self._ring = BatchRing(batch_size, n_slots=n_slots, max_wait_s=max_wait_s,
                               mode="drop" if socket_type == "sub" else "block", allocate=allocate)
        self._lock = threading.Lock()  # guards the counters below, which stats() reads from other threads
        self._state = "connecting"
        self._scan_id: str | None = None
        self._messages = 0
        self._frames_received = 0
        self._rejected = dict.fromkeys(REJECT_REASONS, 0)
        self._dropped_missing = 0
        self._tap_errors = 0
        self._last_message_t: float | None = None
        self._wakeups = 0
        # Receiver-thread state.
        self._scan: _OpenScan | None = None
        self._last_message_mono = 0.0
        self._timeout_ms = -1
        self._held_headers: list[bytes] = []  # frame messages waiting to be checked a batch at a time
        self._held_arrived: list[float] = []  # time.monotonic() of each
        self._held_rows: list[memoryview] = []  # where their payloads are received: the ring's lent rows ...
        self._held_array = np.empty((0, 0), np.uint8)  # ... (the same rows as one array) ...
        self._held_in_ring = False  # ... or, with no ring slot free, the open scan's staging rows
        self._held_due = 0.0
        self._holding = False  # whether frames are held: a scan is open and its header layout learnt
        self._logged: set[str] = set()
        self._stopping = threading.Event()
        self._socket, self._monitor = self._connect(url, socket_type, rcvhwm, security)
        self._thread = threading.Thread(target=self._run, name="diffstream-receiver", daemon=True)

    # ---- public API ---------------------------------------------------------------

    def start(self) -> None:
        """Start the receiver thread."""
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """End the loop (within about :data:`POLL_TICK_S`) and close the socket.

        A scan still open is finished with reason "stopped"; what was already received stays
        readable with :meth:`get`.
        """
        self._stopping.set()
        self._ring.interrupt()
        if self._thread.is_alive():
            self._thread.join(timeout)
        elif self._thread.ident is None:  # never started: nothing else will close the socket
            self._close()
            self._set_state("stopped")

    def __enter__(self) -> Receiver:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def get(self, timeout: float | None = None) -> Batch | ScanStarted | ScanFinished | None:
        """The next batch or scan event in arrival order; None after ``timeout`` seconds without one."""
        return self._ring.get(timeout)

    def release(self, batch: Batch) -> None:
        """Give a batch's buffer back to the ring once the engine is done with it."""
        self._ring.release(batch)

    def stats(self) -> ReceiverStats:
        """A consistent snapshot of the counters; cheap enough for a painter to call every frame."""
        with self._lock:
            return ReceiverStats(
                state=self._state,
                scan_id=self._scan_id,
                messages=self._messages,
                frames_received=self._frames_received,
                rejected=dict(self._rejected),
                dropped_backpressure=self._ring.dropped,
                dropped_missing=self._dropped_missing,
                tap_errors=self._tap_errors,
                last_message_t=self._last_message_t,
                wakeups=self._wakeups,
            )

    # ---- socket -------------------------------------------------------------------

    @staticmethod
    def _connect(url: str, socket_type: str, rcvhwm: int,
                 security: CurveClient | None) -> tuple[zmq.Socket, zmq.Socket | None]:
        """Socket and, except for inproc (which reports no connection events), its connection monitor."""
        socket = zmq.Context.instance().socket(zmq.SUB if socket_type == "sub" else zmq.PULL)
        if security is not None:
            security.apply(socket)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.RCVHWM, rcvhwm)
        if socket_type == "sub":
            socket.setsockopt(zmq.SUBSCRIBE, b"")
        monitor = None
        try:
            if not url.startswith("inproc://"):
                monitor = socket.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED
                                                    | _HANDSHAKE_FAILED)
            socket.connect(url)
        except zmq.ZMQError as error:
            if monitor is not None:
                socket.disable_monitor()
                monitor.close(0)
            socket.close(0)
            raise ValueError(f"cannot connect to {url!r}: {zmq.strerror(error.errno)}") from None
        return socket, monitor

    def _close(self) -> None:
        if self._socket.closed:
            return
        if self._monitor is not None:
            self._socket.disable_monitor()
            self._monitor.close(0)
        self._socket.close(0)

    # ---- the receiver thread ------------------------------------------------------

    def _run(self) -> None:
        if self._monitor is None:
            self._set_state("waiting")
        try:
            self._receive()
        except Exception:
            log.exception("the receiver on %s stopped on an unexpected error", self.url)
        finally:
            self._settle()
            if self._scan is not None:
                self._finish_scan(self._scan, None, "stopped")
            self._close()
            self._set_state("stopped")

    def _receive(self) -> None:
        socket = self._socket
        recv, get, more = socket.recv, socket.get, zmq.RCVMORE
        while not self._stopping.is_set():
            self._wait_at_most(self._timers())
            try:
                header = recv()
            except zmq.Again:
                self._quiet()
                continue
            arrived = time.monotonic()
            self._last_message_mono = arrived
            if self._holding and get(more):  # the common case: a frame of the open scan, and more behind it
                self._receive_frames(header, arrived)
                continue
            self._after_held(self._with_rest([header]))

    def _with_rest(self, parts: list) -> list:
        """``parts`` followed by the rest of the message's parts, which arrived with its first."""
        while self._socket.get(zmq.RCVMORE):
            parts.append(self._socket.recv())
        return parts

    def _wait_at_most(self, wait_ms: int) -> None:
        """Make the next ``recv`` wait no longer than ``wait_ms``; a socket option costs a
        microsecond, so it is set only when it changes."""
        if wait_ms != self._timeout_ms:
            self._socket.setsockopt(zmq.RCVTIMEO, wait_ms)
            self._timeout_ms = wait_ms

    def _quiet(self) -> None:
        """A wait in ``recv`` ended without a message: count it, and read the connection events."""
        with self._lock:
            self._wakeups += 1
        if self._monitor is not None:
            self._read_monitor()

    def _receive_frames(self, header: bytes, arrived: float) -> None:
        """Receive a run of frame messages of the open scan, starting with the one whose header just
        came: each payload straight into the next held row (``recv_into``), each header kept for
        :meth:`_settle`. This is the receiver's hot loop, so it works on locals only.

        The run ends when the held rows are full or due (they are settled then), when nothing
        comes in the time left until then, after :data:`POLL_TICK_S` (so that :meth:`stop` and
        the timers are looked at), or at a message that is not a two-part frame of the scan's
        size (it goes to the reference decoder). The receive timeout comes down as the deadline
        nears, within a millisecond, so a stream that stops does not keep held frames waiting.
        """
        socket = self._socket
        recv, recv_into, get, more = socket.recv, socket.recv_into, socket.get, zmq.RCVMORE
        monotonic = time.monotonic
        headers, stamps = self._held_headers, self._held_arrived
        if not headers:
            self._lend_rows(arrived)
        rows, due = self._held_rows, self._held_due
        full, size = len(rows), len(rows[0])
        until = min(due, arrived + POLL_TICK_S)
        recheck = -math.inf  # when the receive timeout must next come down
        try:
            while True:
                row = rows[len(headers)]
                received = recv_into(row)
                if received != size or get(more):
                    self._refer(header, row, received)
                    return
                headers.append(header)
                stamps.append(arrived)
                if len(headers) == full or arrived >= until:
                    break
                if arrived > recheck:
                    self._wait_at_most(max(1, math.ceil((until - arrived) * 1e3)))
                    recheck = until - self._timeout_ms * 1e-3 + 1e-3
                try:
                    header = recv()
                except zmq.Again:
                    self._quiet()
                    break
                arrived = monotonic()
                if not get(more):
                    self._after_held([header])
                    return
            if arrived >= due:
                self._hand_out()
            elif len(headers) == full:
                self._settle()
        finally:
            self._last_message_mono = arrived

    def _lend_rows(self, arrived: float) -> None:
        """Rows for the frames about to be held: the free rows of the ring's batch being filled or,
        when no slot is free (SUB under back-pressure, or stopping), the open scan's staging rows,
        which :meth:`_settle` offers to the ring again."""
        lent = self._ring.open_rows(arrived)
        if lent is not None:
            self._held_rows, self._held_array, self._held_due = lent.views, lent.array, lent.deadline
        else:
            scan = self._scan
            self._held_rows, self._held_array = scan.stage_views, scan.stage
            self._held_due = arrived + self._ring.max_wait_s
        self._held_in_ring = lent is not None

    def _refer(self, header: bytes, row: memoryview, size: int) -> None:
        """Hand a message the held path cannot take to the reference decoder, after the frames held
        before it. Its second part went into ``row``, cut to the row when longer: such a message is
        refused whatever that part holds (for its size, or for its number of parts), so zeros of
        the part's length stand in for what was cut."""
        self._after_held(self._with_rest([header, row[:size] if size <= len(row) else bytes(size)]))

    def _after_held(self, parts: list) -> None:
        """Decode a message that is not a held frame after the frames held before it, so that a
        scan's end or a malformed frame never overtakes frames that arrived first."""
        self._settle()
        self._on_message(parts)

    def _hand_out(self) -> None:
        """The held frames' wait is up: settle them and hand out the ring's batch."""
        self._settle()
        self._ring.flush()

    def _settle(self) -> None:
        """Check the held frames against the open scan's layout; the ring keeps those it matches and
        that are new, and the rest go through the reference decoder one by one."""
        headers = self._held_headers
        if not headers:
            return
        arrived = np.array(self._held_arrived)
        self._held_headers, self._held_arrived = [], []
        scan = self._scan  # frames are held only while a scan is open, and settled before it closes
        frames = self._held_array[:len(headers)]
        matched = scan.layout.match(headers, frames)
        odd = [[headers[k], bytes(frames[k])] for k in np.flatnonzero(~matched.ok)]  # copied: rows get reused
        rows = np.flatnonzero(matched.ok)
        index = matched.index[rows]
        new = ~scan.seen[index]
        if not (np.diff(index) > 0).all():  # not in increasing order: an index may repeat within the batch
            new[np.setdiff1d(np.arange(rows.size), np.unique(index, return_index=True)[1])] = False
        if not new.all():
            repeated = int(rows.size - new.sum())
            self._reject("duplicate_index", f"index {int(index[~new][0])} of scan {scan.start.scan_id!r} arrived "
                                            "again", count=repeated)
            rows, index = rows[new], index[new]
        self._messages += int(matched.ok.sum())
        t = matched.t[rows]
        received_t = arrived[rows] + (time.time() - time.monotonic())
        if rows.size:
            scan.seen[index] = True
            scan.accepted += rows.size
            scan.max_index = max(scan.max_index, int(index.max()))
            self._frames_received += rows.size
            self._last_message_t = float(received_t[-1])
            self._note_message()
            if self._tap is not None:
                for i, sent, payload in zip(index.tolist(), t.tolist(), frames[rows]):
                    self._call_tap(Frame(scan.start.scan_id, i, sent, memoryview(payload)))
        if self._held_in_ring:
            self._ring.commit(rows, index, t, received_t)
        elif rows.size:
            self._ring.put_frames(index, frames[rows], t, received_t, arrived[rows])
        for parts in odd:
            self._on_message(parts)

    def _timers(self) -> int:
        """Hand out a batch whose wait is up and notice silence; milliseconds the next receive may wait."""
        sleep = POLL_TICK_S
        if self._held_headers and self._held_due <= time.monotonic():
            self._hand_out()
        if self._held_headers:  # they sit in the ring's batch being filled, which is due when they are
            sleep = min(sleep, self._held_due - time.monotonic())
        else:
            due = self._ring.flush_due()
            if due is not None:
                sleep = min(sleep, due)
        if self._state == "receiving":
            quiet_left = self._last_message_mono + self.silence_s - time.monotonic()
            if quiet_left <= 0:
                self._set_state("silent")
            else:
                sleep = min(sleep, quiet_left)
        return max(1, math.ceil(sleep * 1e3))

    def _read_monitor(self) -> None:
        while True:
            try:
                event = recv_monitor_message(self._monitor, zmq.NOBLOCK)["event"]
            except zmq.Again:
                return
            if event & _HANDSHAKE_FAILED and "handshake" not in self._logged:
                self._logged.add("handshake")
                log.warning("%s: the server refused the connection's handshake (a CURVE key it does not accept, or "
                            "CURVE on one side only); retrying", self.url)
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED and self._state == "connecting":
                self._set_state("waiting")
            elif event == zmq.EVENT_DISCONNECTED and self._state == "waiting":
                self._set_state("connecting")

    def _on_message(self, parts: list) -> None:
        # Counters are written by this thread only and read whole under the GIL, so the
        # per-message path takes no lock; state changes, which are rare, still do.
        now = time.time()
        self._messages += 1
        self._last_message_t = now
        self._note_message()
        try:
            message = decode(parts)
        except ProtocolError as error:
            self._reject(error.reason, error.detail)
            return
        if isinstance(message, Frame):
            self._on_frame(message, now, parts[0])
        elif isinstance(message, ScanStart):
            self._on_scan_start(message)
        else:
            self._on_scan_end(message)

    def _note_message(self) -> None:
        if self._state in ("connecting", "silent"):  # a message proves the connection, ends a silence
            with self._lock:
                self._state = "waiting" if self._state == "connecting" else "receiving"

    def _on_frame(self, frame: Frame, received_t: float, header: bytes) -> None:
        scan = self._scan
        if scan is None:
            self._reject("unknown_scan", f"frame of scan {frame.scan_id!r} before any scan_start of it")
            return
        try:
            check_frame(frame, scan.start)
        except ProtocolError as error:
            self._reject(error.reason, error.detail)
            return
        if scan.seen[frame.index]:
            self._reject("duplicate_index", f"index {frame.index} of scan {frame.scan_id!r} arrived again")
            return
        scan.seen[frame.index] = True
        scan.accepted += 1
        if frame.index > scan.max_index:
            scan.max_index = frame.index
        self._frames_received += 1
        scan.layout.learn(header, frame)  # a dict lookup for a header length it has tried already
        self._holding = scan.layout.learnt
        if self._tap is not None:
            self._call_tap(frame)
        self._ring.put_frame(frame.index, frame.payload, frame.t, received_t)

    def _on_scan_start(self, start: ScanStart) -> None:
        scan = self._scan
        if scan is not None and scan.start.scan_id == start.scan_id:
            if _same_scan(scan.start, start):
                self._call_tap(start)  # the publisher's periodic repeat: nothing restarts
            else:
                self._reject("conflicting_scan_start",
                             f"scan_start of open scan {start.scan_id!r} with different contents; the first holds")
            return
        if scan is not None:
            self._finish_scan(scan, None, "superseded")
        stage = np.empty((self._ring.batch_size, start.frame_nbytes), np.uint8)
        self._scan = _OpenScan(start, np.zeros(start.n_frames, dtype=bool), FrameLayout(start), stage)
        self._holding = False
        with self._lock:
            self._scan_id = start.scan_id
            self._state = "receiving"
        self._call_tap(start)
        self._ring.configure(start.scan_id, start.frame_shape, start.dtype)
        self._ring.put_event(ScanStarted(start))

    def _on_scan_end(self, end: ScanEnd) -> None:
        scan = self._scan
        if scan is None or scan.start.scan_id != end.scan_id:
            self._reject("unknown_scan", f"scan_end of scan {end.scan_id!r}, which is not open")
            return
        self._call_tap(end)
        self._finish_scan(scan, end.frames_sent, "scan_end")

    def _finish_scan(self, scan: _OpenScan, frames_sent: int | None,
                     reason: Literal["scan_end", "superseded", "stopped"]) -> None:
        self._scan = None
        self._holding = False
        if reason == "scan_end":
            missing = max(frames_sent - scan.accepted, 0)
        elif reason == "superseded":
            missing = scan.max_index + 1 - scan.accepted
        else:
            missing = 0  # stopped: how many were still to come is unknown
        with self._lock:
            self._dropped_missing += missing
            if reason == "scan_end":
                self._state = "ended"
        self._ring.put_event(ScanFinished(scan.start, frames_sent, scan.accepted, reason))

    def _reject(self, reason: str, detail: str, count: int = 1) -> None:
        with self._lock:
            self._rejected[reason] += count
        if reason not in self._logged:
            self._logged.add(reason)
            log.warning("%s: rejected a message (%s): %s; further %s faults are counted, not logged",
                        self.url, reason, detail, reason)

    def _call_tap(self, message: Message) -> None:
        if self._tap is None:
            return
        try:
            self._tap(message)
        except Exception:
            with self._lock:
                self._tap_errors += 1
            if "tap" not in self._logged:
                self._logged.add("tap")
                log.exception("%s: the tap failed; the stream goes on and further tap errors are counted, not logged",
                              self.url)

    def _set_state(self, state: str) -> None:
        with self._lock:
            self._state = state


def _same_scan(a: ScanStart, b: ScanStart) -> bool:
    """Whether ``b`` repeats ``a``: every specified field but the timestamp agrees (unknown keys may differ)."""
    return (a.kind, a.scan_shape, a.frame_shape, a.dtype, a.encoding, a.geometry) == (
        b.kind, b.scan_shape, b.frame_shape, b.dtype, b.encoding, b.geometry)


def _check_url(url: object) -> None:
    """Reject what cannot be a ZeroMQ endpoint to connect to, with one line naming it."""
    match = _URL.fullmatch(url) if isinstance(url, str) else None
    if match is None:
        raise ValueError(f"cannot connect to {url!r}: expected tcp://HOST:PORT, ipc://PATH or inproc://NAME")
    if match[1] == "tcp":
        host, _, port = match[2].rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"cannot connect to {url!r}: a tcp address needs a host and a port from 1 to 65535, "
                             "as in tcp://127.0.0.1:5555")
