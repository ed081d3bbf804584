"""Checking many frame headers at once: the byte layout of one publisher's frame headers.

A detector server encodes every frame header of a scan the same way; only the index and
the timestamp change. Once the reference decoder (:mod:`.protocol`) has accepted one header,
and re-encoding what it read gives back the same bytes, the header's bytes are a template:
a header of the same length that matches it everywhere but in the index and timestamp
fields is a valid frame header of that scan, and those two fields can be read straight
from their offsets. :meth:`FrameLayout.match` does that for a whole batch of headers in a
few numpy operations, where decoding them one by one costs microseconds each in Python;
at detector rates on two cores that difference is most of the receiver's time
(docs/benchmarks.md). Anything that does not match goes through the reference decoder, so
the layout only ever speeds up what that decoder would accept.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import msgpack
import numpy as np

from .protocol import Frame, ScanStart

MAX_TEMPLATES = 8
"""Header lengths learnt per scan (the index's msgpack width gives at most five); a publisher
whose headers vary more is served by the reference decoder."""

_FLOAT64 = 0xCB
_INDEX_WIDTH = {0xCC: 1, 0xCD: 2, 0xCE: 4, 0xCF: 8}
"""msgpack's unsigned integer markers and the bytes that follow them."""


@dataclass(frozen=True)
class _Template:
    values: np.ndarray  # the header's bytes, zero where the index and the timestamp sit
    fixed: np.ndarray  # 0xFF where every header of this length must agree with ``values``, else 0
    index_at: int  # first byte of the index's value (a positive fixint is its own marker)
    index_width: int
    fixint: bool
    t_at: int  # first of the timestamp's eight big-endian float64 bytes


@dataclass(frozen=True)
class Matched:
    """The outcome of :meth:`FrameLayout.match`: which headers fit, and the index and ``t`` of each
    (meaningful where ``ok``)."""

    ok: np.ndarray
    index: np.ndarray
    t: np.ndarray


class FrameLayout:
    """The frame-header templates of one scan, learnt from headers the reference decoder accepted."""

    def __init__(self, start: ScanStart) -> None:
        self.start = start
        self._templates: dict[int, _Template | None] = {}  # None: that length gave no template
        self._learnt = False

    @property
    def learnt(self) -> bool:
        """Whether any header length has a template, so that :meth:`match` can match anything."""
        return self._learnt

    def learn(self, header: bytes, frame: Frame) -> None:
        """Add ``header`` (accepted by the reference decoder as ``frame``) as the template for its
        length, when it is in the canonical encoding whose fields sit at fixed offsets. Each
        length is tried once: a header of a length that gave no template says nothing new."""
        if len(header) in self._templates or len(self._templates) >= MAX_TEMPLATES:
            return
        template = _template(header)
        self._templates[len(header)] = template
        self._learnt = self._learnt or template is not None

    def match(self, headers: list[bytes], frames: np.ndarray) -> Matched:
        """Which of the frame messages ``headers[k]``, ``frames[k]`` are valid frames of this scan
        (the reference decoder's checks, float32 pixels finite included) and their index and
        ``t``; ``frames`` holds the payloads as rows of bytes (uint8), so each is of the size the
        scan implies: the caller sends one of another size to the reference decoder instead.
        Duplicates are the caller's to find."""
        n = len(headers)
        ok = np.zeros(n, bool)
        index = np.zeros(n, np.int64)
        t = np.zeros(n, np.float64)
        lengths = np.fromiter(map(len, headers), np.int64, n)
        data = np.frombuffer(b"".join(headers), np.uint8)
        one_length = n > 0 and (lengths == lengths[0]).all()  # the usual case: no gathering needed
        starts = None if one_length else np.cumsum(lengths) - lengths
        for length, template in self._templates.items():
            if template is None:
                continue
            if one_length:
                if length != lengths[0]:
                    continue
                rows = slice(None)
                block = data.reshape(n, length)
            else:
                rows = np.flatnonzero(lengths == length)
                if rows.size == 0:
                    continue
                block = data[starts[rows, None] + np.arange(length)]
            differs = (block ^ template.values) & template.fixed
            fits = ~differs.any(axis=1) if differs.any() else np.ones(len(block), bool)  # rows rarely differ
            value = _big_endian(block, template.index_at, template.index_width, np.uint64).astype(np.int64)
            if template.fixint:
                fits &= value < 0x80
            ok[rows] = fits
            index[rows] = value
            t[rows] = _big_endian(block, template.t_at, 8, np.float64)
        if frames.shape != (n, self.start.frame_nbytes):
            raise ValueError(f"frames must be {n} rows of {self.start.frame_nbytes} bytes, got {frames.shape}")
        ok &= (index >= 0) & (index < self.start.n_frames) & np.isfinite(t)
        if self.start.dtype == "float32" and ok.any():
            rows = np.flatnonzero(ok)
            pixels = frames[rows].view(np.float32)
            ok[rows] = np.isfinite(np.add.reduce(pixels, axis=1, dtype=np.float64))  # as protocol._finite
        return Matched(ok, index, t)


def _big_endian(block: np.ndarray, at: int, width: int, dtype: type) -> np.ndarray:
    code = "u" if dtype is np.uint64 else "f"
    return np.ascontiguousarray(block[:, at:at + width]).view(f">{code}{width}").ravel().astype(dtype)


def _template(header: bytes) -> _Template | None:
    """The template of a header whose re-encoding is itself (so no field can sit anywhere else),
    with an integer index and a float64 ``t``; None for any other header."""
    try:
        fields = msgpack.unpackb(header, strict_map_key=False)
    except Exception:  # the reference decoder accepted it; anything odd simply means no template
        return None
    if not isinstance(fields, dict) or len(fields) >= 16 or msgpack.packb(fields) != header:
        return None
    if type(fields.get("index")) is not int or type(fields.get("t")) is not float:
        return None
    offset, index_at, t_at = 1, -1, -1  # past the fixmap marker
    for key, value in fields.items():
        offset += len(msgpack.packb(key))
        if key == "index":
            index_at = offset
        elif key == "t":
            t_at = offset
        offset += len(msgpack.packb(value))
    marker = header[index_at]
    fixint = marker < 0x80
    if (not fixint and marker not in _INDEX_WIDTH) or header[t_at] != _FLOAT64 or not math.isfinite(fields["t"]):
        return None
    width = 1 if fixint else _INDEX_WIDTH[marker]
    index_at += 0 if fixint else 1
    fixed = np.full(len(header), 0xFF, np.uint8)
    fixed[index_at:index_at + width] = 0
    fixed[t_at + 1:t_at + 9] = 0
    values = np.frombuffer(header, np.uint8) & fixed
    return _Template(values, fixed, index_at, width, fixint, t_at + 1)
