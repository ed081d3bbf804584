"""Recording protocol streams, lossless, to HDF5; and the stand-alone loop that feeds a recorder.

:class:`Recorder` is a sink for decoded messages. The live pipeline's receiver taps it with
messages it has already validated; ``diffstream record`` feeds it from :func:`record`, its
own SUB or PULL loop. Per frame it only copies the payload into a buffer; a buffer-full of
frames (about a MiB) goes to the file in one chunk-aligned write.

File format, version 1 (every scan's frames exactly as they came off the wire)::

    /                  attrs: format = "diffstream-recording", version = 1
    /scans/<n>         one group per scan, n = 0, 1, 2, ... in the order the scans began
        attrs:  scan_start   the scan_start header as received (the protocol's map, every key
                             including vendor extras), as JSON text; a value JSON cannot hold
                             (bytes) is kept as its repr
                scan_id      the scan's id
                complete     true once the scan's scan_end arrived; false when recording
                             stopped first (Ctrl-C, close) - what arrived is kept
                frames_sent  the scan_end's frames_sent; -1 without a scan_end
                t_end        the scan_end's t; NaN without one
        frames  (N, h, w)    the N frames received, in arrival order, in the scan's dtype;
                             chunks of whole frames along N (about 1 MiB each); lzf-compressed
                             (byte-shuffled first when a pixel has several bytes) when that
                             saves a tenth of the scan's first chunk, else stored plain (see
                             :func:`compression_for`)
        index   (N,) int64   each frame's scan index (row = index // cols, col = index % cols)
        t_sent  (N,) float64 each frame's t: the sender's clock, Unix seconds

N below ``frames_sent`` means frames were lost in transport (SUB drops when a receiver
falls behind). Only a killed process (SIGKILL, power loss) can lose the unflushed tail: at
most the last :data:`FLUSH_INTERVAL_S` of frames, since the buffer is written and the file
flushed at least that often; the file stays readable, holding every frame flushed before.
"""
from __future__ import annotations

import collections
import io
import json
import math
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np
import zmq

from .protocol import Frame, Message, ProtocolError, ScanEnd, ScanStart, check_frame, decode

if TYPE_CHECKING:
    from .curve import CurveClient

FORMAT = "diffstream-recording"
FORMAT_VERSION = 1

CHUNK_BYTES = 1 << 20
"""Bytes of frames per write and per HDF5 chunk: HDF5's default chunk cache size, and large
enough that a write's fixed cost is spread over hundreds of small frames."""

MIN_SAVING = 0.1
"""Share of bytes compression must save for a scan's frames to be stored compressed."""

FLUSH_INTERVAL_S = 1.0
"""Longest a received frame waits in memory before it is written and the file flushed to disk,
however slowly frames come: what a killed process (SIGKILL, power loss) can lose."""

RECEIVE_HWM = 20_000
"""Messages ``record`` lets queue while it writes (a second at 20,000 frames/s)."""


class Recorder:
    """Stores decoded protocol messages to ``path`` (see the module docstring for the format).

    Expects messages that passed validation (a receiver's, or :func:`record`'s): frames of
    any scan but the open one are not stored, only counted in ``ignored``. A scan_start
    repeated under the same scan_id is the same scan; one with a new id closes the open scan
    (as incomplete, if its scan_end never came) and opens a new group. Not thread-safe: call
    it from one thread. Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, path: str | Path, *, overwrite: bool = False) -> None:
        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise FileExistsError(f"{self.path} exists; choose another name or allow overwriting")
        self._file = h5py.File(self.path, "w")
        self._file.attrs.update(format=FORMAT, version=FORMAT_VERSION)
        self._scans = self._file.create_group("scans")
        self._open: _ScanWriter | None = None
        self.scans = 0
        self.frames = 0
        self.incomplete = 0
        self.ignored = 0
        self._flush_due = time.monotonic() + FLUSH_INTERVAL_S

    def on_message(self, message: Message) -> None:
        if isinstance(message, Frame):
            if self._open is not None and message.scan_id == self._open.scan_id and self._open.add(message):
                self.frames += 1
            else:
                self.ignored += 1
        elif isinstance(message, ScanStart):
            if self._open is None or message.scan_id != self._open.scan_id:
                self._finish(None)
                self._open = _ScanWriter(self._scans.create_group(str(self.scans)), message)
                self.scans += 1
        elif self._open is not None and message.scan_id == self._open.scan_id:
            self._finish(message)
        else:
            self.ignored += 1
        self.flush_if_due()

    def flush_if_due(self) -> None:
        """Write buffered frames and flush the file if :data:`FLUSH_INTERVAL_S` has passed since
        the last flush; a receive loop calls this when idle too, so a stream that stops is not held."""
        if time.monotonic() >= self._flush_due:
            self.flush()

    def flush(self) -> None:
        """Write buffered frames and flush the file to disk: a process killed afterwards loses none of them."""
        if self._open is not None:
            self._open.flush()
        if self._file.id.valid:
            self._file.flush()
        self._flush_due = time.monotonic() + FLUSH_INTERVAL_S

    def close(self) -> None:
        """Write what is buffered, mark an open scan incomplete, and close the file."""
        if self._file.id.valid:
            self._finish(None)
            self._file.close()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _finish(self, end: ScanEnd | None) -> None:
        if self._open is None:
            return
        self._open.finish(end)
        self.incomplete += end is None
        self._open = None
        self._file.flush()


class _ScanWriter:
    """One scan's group: buffers frames and appends them a chunk at a time."""

    def __init__(self, group: h5py.Group, start: ScanStart) -> None:
        self.scan_id = start.scan_id
        self.group = group
        self.dtype = np.dtype(start.dtype)
        self.shape = start.frame_shape
        self.nbytes = start.frame_nbytes
        group.attrs.update(
            scan_start=json.dumps(start.header(), ensure_ascii=False, default=repr),
            scan_id=start.scan_id, complete=False, frames_sent=-1, t_end=math.nan,
        )
        k = max(1, CHUNK_BYTES // self.nbytes)
        self.frames: h5py.Dataset | None = None  # made at the first write, once its compression is known
        self.index = group.create_dataset("index", shape=(0,), maxshape=(None,), chunks=(k,), dtype=np.int64)
        self.t_sent = group.create_dataset("t_sent", shape=(0,), maxshape=(None,), chunks=(k,), dtype=np.float64)
        self.buffers = (np.empty((k, *self.shape), self.dtype), np.empty(k, np.int64), np.empty(k, np.float64))
        self.filled = 0

    def add(self, frame: Frame) -> bool:
        """Buffer one frame (False, and nothing stored, if its payload is the wrong size)."""
        if frame.payload.nbytes != self.nbytes:
            return False
        frames, index, t_sent = self.buffers
        i = self.filled
        frames[i] = np.frombuffer(frame.payload, self.dtype).reshape(self.shape)
        index[i] = frame.index
        t_sent[i] = frame.t
        self.filled = i + 1
        if self.filled == len(index):
            self.flush()
        return True

    def flush(self) -> None:
        n, self.filled = self.filled, 0
        if self.frames is None:
            self._create_frames(self.buffers[0][:n])
        if n == 0:
            return
        for dataset, buffer in zip((self.frames, self.index, self.t_sent), self.buffers):
            stored = dataset.shape[0]
            dataset.resize(stored + n, axis=0)
            dataset[stored:] = buffer[:n]

    def _create_frames(self, sample: np.ndarray) -> None:
        chunk = self.buffers[0].shape
        self.frames = self.group.create_dataset(
            "frames", shape=(0, *self.shape), maxshape=(None, *self.shape), chunks=chunk, dtype=self.dtype,
            **compression_for(sample),
        )

    def finish(self, end: ScanEnd | None) -> None:
        self.flush()
        if end is not None:
            self.group.attrs.update(complete=True, frames_sent=end.frames_sent, t_end=end.t)


def record(endpoint: str, recorder: Recorder, *, scans: int = 1, pull: bool = False,
           stop: threading.Event, security: CurveClient | None = None) -> collections.Counter[str]:
    """Receive from ``endpoint`` (SUB, or PULL with ``pull``) into ``recorder`` until
    ``scans`` scans have ended (0: until ``stop``) or ``stop`` is set. Every message is
    decoded and checked against its scan_start; what fails is counted by
    ``ProtocolError.reason`` (returned) and skipped, never fatal. Frames before the first
    scan_start a late subscriber hears count as ``unknown_scan``. ``security`` connects with
    CURVE (:mod:`.curve`). Raises ``zmq.ZMQError`` for an address that cannot be connected to."""
    faults: collections.Counter[str] = collections.Counter()
    with zmq.Context() as context, context.socket(zmq.PULL if pull else zmq.SUB) as socket:
        socket.setsockopt(zmq.RCVHWM, RECEIVE_HWM)
        socket.setsockopt(zmq.LINGER, 0)
        if not pull:
            socket.setsockopt(zmq.SUBSCRIBE, b"")
        if security is not None:
            security.apply(socket)
        socket.connect(endpoint)
        current: ScanStart | None = None
        ended = 0
        while not stop.is_set() and (scans == 0 or ended < scans):
            if not socket.poll(100, zmq.POLLIN):
                recorder.flush_if_due()
                continue
            try:
                message = decode(socket.recv_multipart(copy=False))
                _check(message, current)
            except ProtocolError as error:
                faults[error.reason] += 1
                continue
            recorder.on_message(message)
            if isinstance(message, ScanStart):
                current = message
            elif isinstance(message, ScanEnd):
                current = None
                ended += 1
    return faults


def _check(message: Message, current: ScanStart | None) -> None:
    """Raise ProtocolError unless a frame or scan_end belongs to the scan being recorded."""
    if isinstance(message, ScanStart):
        return
    if current is None:
        kind = "frame" if isinstance(message, Frame) else "scan_end"
        raise ProtocolError("unknown_scan", f"{kind} of scan {message.scan_id!r} before its scan_start")
    if isinstance(message, Frame):
        check_frame(message, current)
    elif message.scan_id != current.scan_id:
        raise ProtocolError("unknown_scan", f"scan_end of {message.scan_id!r}, current scan is {current.scan_id!r}")


def compression_for(sample: np.ndarray) -> dict[str, object]:
    """HDF5 filter options for frames like ``sample``: lzf (after a byte shuffle for
    multi-byte pixels) if it saves at least :data:`MIN_SAVING` of the sample's bytes, else none.

    Compressing pays for sparse frames (4D-STEM counts) but not for a fast EBSD camera's:
    their noise fills every bit, and on 60×60 uint8 frames lzf measured a ratio of 0.995 for
    61 µs per frame against 7 µs stored plain (gzip level 1: 1.2 for 90 µs), which would
    cap recording far below the stream. One trial chunk per scan decides.
    """
    options: dict[str, object] = {"compression": "lzf", "shuffle": sample.dtype.itemsize > 1}
    if sample.size == 0:
        return {}
    with h5py.File(io.BytesIO(), "w") as scratch:
        trial = scratch.create_dataset("trial", data=sample, chunks=sample.shape, **options)
        stored = trial.id.get_storage_size()
    return options if stored <= (1 - MIN_SAVING) * sample.nbytes else {}
