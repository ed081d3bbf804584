"""Wire protocol v1: the messages a detector server publishes and diffstream reads.

Every message is a ZeroMQ multipart message. Part 0 is a msgpack map (the header); a
``frame`` message has exactly one more part, the raw pattern bytes in C order. The
decoder validates everything that comes from the wire and raises :class:`ProtocolError`
with a short machine-readable ``reason`` so a receiver can count faults by kind and go on.
docs/protocol.md is the specification a detector vendor implements; this module is its
reference implementation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple

import msgpack
import numpy as np

VERSION = 1
KINDS = ("ebsd", "4dstem")
DTYPES = ("uint8", "uint16", "float32")
ENCODINGS = ("raw",)

MAX_SCAN_POINTS = 1 << 24
"""Most scan positions (rows·cols) a scan_start may announce: 4096×4096, above any EBSD or
4D-STEM map acquired today. Receivers keep several numbers per position, so an absurd
scan_shape (65536×65536 is 4·10⁹ points) must be refused before anything is allocated."""

MAX_FRAME_BYTES = 1 << 24
"""Most bytes (h·w·itemsize) one frame may hold: 16 MiB, e.g. 4096×4096 uint8 or 2048×2048
float32. Receivers preallocate batches of frames, so the bound is checked at scan_start."""

#: Every ``reason`` a :class:`ProtocolError` can carry, so counters can be pre-filled.
REASONS = (
    "not_msgpack",
    "not_a_map",
    "unknown_version",
    "unknown_type",
    "missing_field",
    "bad_field",
    "unsupported_encoding",
    "wrong_part_count",
    "unknown_scan",
    "payload_size",
    "index_out_of_range",
    "too_large",
    "non_finite",
)


class ProtocolError(ValueError):
    """A message that does not follow protocol v1; ``reason`` is one of :data:`REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ScanStart:
    """Announces a scan; every later frame of ``scan_id`` is checked against it."""

    scan_id: str
    kind: str
    scan_shape: tuple[int, int]
    frame_shape: tuple[int, int]
    dtype: str
    encoding: str = "raw"
    geometry: dict[str, Any] = field(default_factory=dict)
    t: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def n_frames(self) -> int:
        return self.scan_shape[0] * self.scan_shape[1]

    @cached_property
    def frame_nbytes(self) -> int:
        return self.frame_shape[0] * self.frame_shape[1] * np.dtype(self.dtype).itemsize

    def header(self) -> dict[str, Any]:
        """The msgpack map for this message; ``extra`` keys travel unchanged for forward compatibility."""
        return {
            **self.extra,
            "v": VERSION,
            "type": "scan_start",
            "scan_id": self.scan_id,
            "kind": self.kind,
            "scan_shape": list(self.scan_shape),
            "frame_shape": list(self.frame_shape),
            "dtype": self.dtype,
            "encoding": self.encoding,
            "geometry": dict(self.geometry),
            "t": self.t,
        }


class Frame(NamedTuple):
    """One pattern at one scan position; ``payload`` is a zero-copy view of the received bytes.

    A named tuple rather than a frozen dataclass: one is built per frame, tens of
    thousands a second, and a tuple is several times cheaper to construct.
    """

    scan_id: str
    index: int
    t: float
    payload: memoryview

    def array(self, start: ScanStart) -> np.ndarray:
        return np.frombuffer(self.payload, dtype=start.dtype).reshape(start.frame_shape)


@dataclass(frozen=True)
class ScanEnd:
    """Closes a scan; ``frames_sent`` lets the receiver tell loss from a short scan."""

    scan_id: str
    frames_sent: int
    t: float = 0.0


Message = ScanStart | Frame | ScanEnd


def encode_scan_start(start: ScanStart) -> list[bytes]:
    return [msgpack.packb(start.header())]


def encode_frame(scan_id: str, index: int, t: float, payload: bytes | memoryview | np.ndarray) -> list:
    """Header plus payload; an ndarray payload is sent without a copy (it must be C-contiguous)."""
    header = msgpack.packb({"v": VERSION, "type": "frame", "scan_id": scan_id, "index": int(index), "t": float(t)})
    return [header, payload]


def encode_scan_end(end: ScanEnd) -> list[bytes]:
    header = {"v": VERSION, "type": "scan_end", "scan_id": end.scan_id, "frames_sent": end.frames_sent, "t": end.t}
    return [msgpack.packb(header)]


def decode(parts: list) -> Message:
    """Parse one multipart message (a list of bytes, ``zmq.Frame`` or buffers) into a message object.

    Only the message's own shape is checked here; whether a frame fits its scan is
    :func:`check_frame`'s job, because that needs the scan_start the receiver holds.
    """
    if not parts:
        raise ProtocolError("wrong_part_count", "empty message")
    header = _unpack_header(parts[0])
    version = header.get("v")
    if version != VERSION:
        raise ProtocolError("unknown_version", f"protocol version {version!r}, this reader speaks {VERSION}")
    kind = header.get("type")
    if kind == "frame":
        return _decode_frame(header, parts)
    if len(parts) != 1:
        raise ProtocolError("wrong_part_count", f"a {kind} message has 1 part, got {len(parts)}")
    if kind == "scan_start":
        return _decode_scan_start(header)
    if kind == "scan_end":
        return ScanEnd(
            scan_id=_scan_id(header),
            frames_sent=_integer(header, "frames_sent", minimum=0),
            t=_time(header),
        )
    raise ProtocolError("unknown_type", f"message type {kind!r}")


def check_frame(frame: Frame, start: ScanStart) -> None:
    """Raise :class:`ProtocolError` unless ``frame`` belongs to and fits ``start``; float32 frames
    must also be finite, because a NaN pixel turns a network's every output for the frame to NaN."""
    if frame.scan_id != start.scan_id:
        raise ProtocolError("unknown_scan", f"frame of scan {frame.scan_id!r}, current scan is {start.scan_id!r}")
    if not 0 <= frame.index < start.n_frames:
        raise ProtocolError("index_out_of_range", f"index {frame.index} outside a scan of {start.n_frames} frames")
    if frame.payload.nbytes != start.frame_nbytes:
        raise ProtocolError(
            "payload_size", f"payload of {frame.payload.nbytes} bytes, scan_start implies {start.frame_nbytes}"
        )
    if start.dtype == "float32" and not _finite(frame.payload):
        raise ProtocolError("non_finite", f"frame {frame.index} of scan {frame.scan_id!r} holds NaN or infinite pixels")


def _finite(payload: memoryview) -> bool:
    """Whether a float32 payload holds only finite pixels. One float64 sum is the cheapest test:
    NaN and ±inf propagate into it, and finite float32 values cannot overflow it."""
    return math.isfinite(np.add.reduce(np.frombuffer(payload, np.float32), dtype=np.float64))


def _unpack_header(part: Any) -> dict:
    try:
        # bytes go in as they are (a memoryview costs a wrapper per message); text keys and
        # values come back as str, msgpack 1.x's default, which pyproject requires.
        header = msgpack.unpackb(part if type(part) is bytes else _buffer(part), strict_map_key=False)
    except Exception as error:  # msgpack raises several unrelated types for garbage
        raise ProtocolError("not_msgpack", f"header is not msgpack ({type(error).__name__})") from None
    if not isinstance(header, dict):
        raise ProtocolError("not_a_map", f"header is a {type(header).__name__}, not a map")
    return header


def _buffer(part: Any) -> memoryview:
    buffer = getattr(part, "buffer", None)  # zmq.Frame
    return buffer if buffer is not None else memoryview(part)


def _decode_frame(header: dict, parts: list) -> Frame:
    if len(parts) != 2:
        raise ProtocolError("wrong_part_count", f"a frame message has 2 parts, got {len(parts)}")
    scan_id, index, t = header.get("scan_id"), header.get("index"), header.get("t")
    if type(scan_id) is str and scan_id and type(index) is int and index >= 0 and type(t) is float and math.isfinite(t):
        return Frame(scan_id, index, t, _buffer(parts[1]))  # the common case, checked inline for speed
    return Frame(
        scan_id=_scan_id(header),
        index=_integer(header, "index", minimum=0),
        t=_time(header),
        payload=_buffer(parts[1]),
    )


def _decode_scan_start(header: dict) -> ScanStart:
    kind = _require(header, "kind")
    if kind not in KINDS:
        raise ProtocolError("bad_field", f"kind {kind!r} is not one of {', '.join(KINDS)}")
    dtype = _require(header, "dtype")
    if dtype not in DTYPES:
        raise ProtocolError("bad_field", f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    encoding = header.get("encoding", "raw")
    if encoding not in ENCODINGS:
        raise ProtocolError("unsupported_encoding", f"encoding {encoding!r}; v1 readers accept {', '.join(ENCODINGS)}")
    scan_shape, frame_shape = _shape(header, "scan_shape"), _shape(header, "frame_shape")
    _check_size(scan_shape, frame_shape, np.dtype(dtype).itemsize)
    geometry = header.get("geometry", {})
    if not isinstance(geometry, dict):
        raise ProtocolError("bad_field", "geometry must be a map")
    known = {"v", "type", "scan_id", "kind", "scan_shape", "frame_shape", "dtype", "encoding", "geometry", "t"}
    return ScanStart(
        scan_id=_scan_id(header),
        kind=kind,
        scan_shape=scan_shape,
        frame_shape=frame_shape,
        dtype=dtype,
        encoding=encoding,
        geometry=geometry,
        t=_time(header),
        extra={key: value for key, value in header.items() if key not in known},
    )


def _check_size(scan_shape: tuple[int, int], frame_shape: tuple[int, int], itemsize: int) -> None:
    points = scan_shape[0] * scan_shape[1]
    if points > MAX_SCAN_POINTS:
        raise ProtocolError("too_large", f"scan_shape {list(scan_shape)} is {points:,} points; "
                                         f"the limit is {MAX_SCAN_POINTS:,}")
    nbytes = frame_shape[0] * frame_shape[1] * itemsize
    if nbytes > MAX_FRAME_BYTES:
        raise ProtocolError("too_large", f"frame_shape {list(frame_shape)} is {nbytes:,} bytes a frame; "
                                         f"the limit is {MAX_FRAME_BYTES:,}")


def _require(header: dict, key: str) -> Any:
    if key not in header:
        raise ProtocolError("missing_field", f"{header.get('type')} header has no {key!r}")
    return header[key]


def _scan_id(header: dict) -> str:
    scan_id = _require(header, "scan_id")
    if not isinstance(scan_id, str) or not scan_id:
        raise ProtocolError("bad_field", "scan_id must be a non-empty string")
    return scan_id


def _integer(header: dict, key: str, minimum: int) -> int:
    value = _require(header, key)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ProtocolError("bad_field", f"{key} must be an integer ≥ {minimum}, got {value!r}")
    return value


def _time(header: dict) -> float:
    value = header.get("t", 0.0)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ProtocolError("bad_field", f"t must be a finite number of seconds, got {value!r}")
    return float(value)


def _shape(header: dict, key: str) -> tuple[int, int]:
    value = _require(header, key)
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(n, int) and not isinstance(n, bool) and 0 < n <= 1 << 16 for n in value)
    ):
        raise ProtocolError("bad_field", f"{key} must be two positive integers ≤ 65536, got {value!r}")
    return int(value[0]), int(value[1])
