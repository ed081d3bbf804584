"""Wire protocol v1: whatever arrives, ``decode`` either returns a message or raises
ProtocolError with a known reason; valid messages round-trip; docs/protocol.md lists every
reason a receiver counts."""
from __future__ import annotations

import re
from pathlib import Path

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffstream.live.protocol import (
    DTYPES,
    KINDS,
    REASONS,
    Frame,
    ProtocolError,
    ScanEnd,
    ScanStart,
    check_frame,
    decode,
    encode_frame,
    encode_scan_end,
    encode_scan_start,
)
from diffstream.live.receiver import REJECT_REASONS

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
FAST = settings(deadline=None, max_examples=100, suppress_health_check=[HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(), st.text(max_size=8),
                    st.binary(max_size=8))
msgpack_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                               st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                              max_leaves=12)
ids = st.text(min_size=1, max_size=12)
scan_dims = st.tuples(st.integers(1, 4096), st.integers(1, 4096))  # within MAX_SCAN_POINTS
frame_dims = st.tuples(st.integers(1, 2048), st.integers(1, 2048))  # within MAX_FRAME_BYTES at 4 bytes a pixel
small_dims = st.tuples(st.integers(1, 16), st.integers(1, 16))
times = st.floats(allow_nan=False, allow_infinity=False)
geometry = st.dictionaries(st.text(max_size=6), st.one_of(st.floats(allow_nan=False), st.integers(-10, 10),
                                                          st.lists(st.floats(allow_nan=False), max_size=3)),
                           max_size=4)
extras = st.dictionaries(st.text(max_size=6).filter(lambda k: k not in {
    "v", "type", "scan_id", "kind", "scan_shape", "frame_shape", "dtype", "encoding", "geometry", "t"}),
    st.one_of(st.integers(0, 9), st.text(max_size=4)), max_size=3)
starts = st.builds(ScanStart, scan_id=ids, kind=st.sampled_from(KINDS), scan_shape=scan_dims, frame_shape=frame_dims,
                   dtype=st.sampled_from(DTYPES), geometry=geometry, t=times, extra=extras)


def decodes_or_rejects(parts: list) -> object:
    """What every input must do: a message, or a ProtocolError with a listed reason."""
    try:
        return decode(parts)
    except ProtocolError as error:
        assert error.reason in REASONS
        return error


def valid_headers() -> dict[str, dict]:
    start = ScanStart("s", "ebsd", (2, 3), (4, 5), "uint16", geometry={"pc": [0.5, 0.5, 0.6]}, t=1.5)
    return {
        "scan_start": start.header(),
        "frame": msgpack.unpackb(encode_frame("s", 3, 2.5, b"")[0]),
        "scan_end": msgpack.unpackb(encode_scan_end(ScanEnd("s", 6, 3.5))[0]),
    }


@FAST
@given(st.lists(st.binary(max_size=64), max_size=3))
def test_arbitrary_bytes_only_ever_raise_protocol_errors(parts: list[bytes]) -> None:
    decodes_or_rejects(parts)


@FAST
@given(msgpack_values, st.integers(0, 2))
def test_arbitrary_msgpack_values_only_ever_raise_protocol_errors(value: object, n_payloads: int) -> None:
    decodes_or_rejects([msgpack.packb(value), *[b"\0" * 4] * n_payloads])


@FAST
@given(st.dictionaries(st.text(max_size=10), msgpack_values, max_size=6),
       st.sampled_from(["scan_start", "frame", "scan_end", "other", None]), st.sampled_from([1, 2, None]),
       st.integers(1, 2))
def test_arbitrary_maps_only_ever_raise_protocol_errors(header: dict, kind: str | None, version: int | None,
                                                        n_parts: int) -> None:
    header = {**header, **({} if kind is None else {"type": kind}), **({} if version is None else {"v": version})}
    decodes_or_rejects([msgpack.packb(header), b"\0" * 8][:n_parts])


@FAST
@given(st.sampled_from(["scan_start", "frame", "scan_end"]), st.data())
def test_mutated_valid_headers_only_ever_raise_protocol_errors(kind: str, data: st.DataObject) -> None:
    header = valid_headers()[kind]
    for _ in range(data.draw(st.integers(1, 3))):
        key = data.draw(st.sampled_from(sorted(header)) | st.text(max_size=6))
        if data.draw(st.booleans()) and key in header:
            del header[key]
        else:
            header[key] = data.draw(msgpack_values)
    parts = [msgpack.packb(header)] + ([b"\0" * 40] if kind == "frame" else [])
    message = decodes_or_rejects(parts)
    if not isinstance(message, ProtocolError):
        assert type(message).__name__ == {"scan_start": "ScanStart", "frame": "Frame", "scan_end": "ScanEnd"}[kind]


@FAST
@given(starts)
def test_scan_starts_round_trip_with_unknown_keys_preserved(start: ScanStart) -> None:
    assert decode(encode_scan_start(start)) == start


@FAST
@given(ids, st.integers(0, 2**63 - 1), times, st.binary(max_size=64))
def test_frames_round_trip_without_copying_the_payload(scan_id: str, index: int, t: float, payload: bytes) -> None:
    frame = decode(encode_frame(scan_id, index, t, payload))
    assert (frame.scan_id, frame.index, frame.t, bytes(frame.payload)) == (scan_id, index, t, payload)


@FAST
@given(ids, st.integers(0, 2**64 - 1), times)
def test_scan_ends_round_trip(scan_id: str, frames_sent: int, t: float) -> None:
    assert decode(encode_scan_end(ScanEnd(scan_id, frames_sent, t))) == ScanEnd(scan_id, frames_sent, t)


@FAST
@given(st.builds(ScanStart, scan_id=ids, kind=st.sampled_from(KINDS), scan_shape=small_dims, frame_shape=small_dims,
                 dtype=st.sampled_from(DTYPES)), st.data())
def test_check_frame_accepts_exactly_the_frames_that_fit(start: ScanStart, data: st.DataObject) -> None:
    index = data.draw(st.integers(0, 2 * start.n_frames))
    nbytes = data.draw(st.sampled_from([start.frame_nbytes, start.frame_nbytes + 1, max(start.frame_nbytes - 1, 0)]))
    scan_id = data.draw(st.sampled_from([start.scan_id, start.scan_id + "x"]))
    frame = decode(encode_frame(scan_id, index, 0.0, b"\0" * nbytes))
    try:
        check_frame(frame, start)
    except ProtocolError as error:
        expected = ("unknown_scan" if scan_id != start.scan_id else
                    "index_out_of_range" if index >= start.n_frames else "payload_size")
        assert error.reason == expected
    else:
        assert scan_id == start.scan_id and index < start.n_frames and nbytes == start.frame_nbytes
        assert frame.array(start).shape == start.frame_shape


def test_a_frame_array_is_little_endian_c_order() -> None:
    start = ScanStart("s", "4dstem", (1, 1), (2, 3), "uint16")
    frame = decode(encode_frame("s", 0, 0.0, bytes([1, 0, 2, 0, 3, 0, 0, 1, 0, 2, 0, 3])))
    np.testing.assert_array_equal(frame.array(start), [[1, 2, 3], [256, 512, 768]])


def test_an_ndarray_payload_is_sent_as_is() -> None:
    pattern = np.arange(12, dtype=np.float32).reshape(3, 4)
    parts = encode_frame("s", 5, 1.0, pattern)
    frame = decode([parts[0], memoryview(pattern)])
    assert isinstance(frame, Frame)
    np.testing.assert_array_equal(frame.array(ScanStart("s", "ebsd", (2, 3), (3, 4), "float32")), pattern)


def _header(**fields: object) -> bytes:
    return msgpack.packb({"v": 1, "type": "frame", "scan_id": "s", "index": 0, **fields})


@pytest.mark.parametrize(("parts", "reason"), [
    ([], "wrong_part_count"),
    ([b"\xc1"], "not_msgpack"),
    ([msgpack.packb([1, 2])], "not_a_map"),
    ([_header(v=2), b""], "unknown_version"),
    ([msgpack.packb({"type": "frame"}), b""], "unknown_version"),
    ([msgpack.packb({"v": 1, "type": "hello"})], "unknown_type"),
    ([msgpack.packb({"v": 1, "type": "frame", "scan_id": "s"}), b""], "missing_field"),
    ([_header(index=-1), b""], "bad_field"),
    ([_header(index=1.0), b""], "bad_field"),
    ([_header(scan_id=""), b""], "bad_field"),
    ([_header(t=float("inf")), b""], "bad_field"),
    ([msgpack.packb({**valid_headers()["scan_start"], "encoding": "zstd"})], "unsupported_encoding"),
    ([msgpack.packb({**valid_headers()["scan_start"], "dtype": "int64"})], "bad_field"),
    ([msgpack.packb({**valid_headers()["scan_start"], "scan_shape": [0, 3]})], "bad_field"),
    ([msgpack.packb({**valid_headers()["scan_start"], "scan_shape": [4097, 4096]})], "too_large"),
    ([msgpack.packb({**valid_headers()["scan_start"], "scan_shape": [31623, 31623]})], "too_large"),  # 10⁹ points
    ([msgpack.packb({**valid_headers()["scan_start"], "frame_shape": [2048, 4097]})], "too_large"),
    ([_header()], "wrong_part_count"),
    ([_header(), b"", b""], "wrong_part_count"),
    ([msgpack.packb(valid_headers()["scan_end"]), b""], "wrong_part_count"),
])
def test_each_fault_has_its_reason(parts: list, reason: str) -> None:
    with pytest.raises(ProtocolError) as raised:
        decode(parts)
    assert raised.value.reason == reason


def test_the_specification_lists_every_reason_a_receiver_counts() -> None:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## What a receiver does with faults", 1)[1].split("\n## ", 1)[0]
    assert set(re.findall(r"^\| `(\w+)` \|", section, re.MULTILINE)) == set(REJECT_REASONS)
