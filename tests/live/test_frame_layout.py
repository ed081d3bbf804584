"""The batch header check (live/frame_layout.py) against the reference decoder it stands in for.

Property: whatever the messages, the layout accepts a frame only if ``protocol.decode`` and
``check_frame`` accept it, with the same index and timestamp; and it accepts every valid
frame whose header is encoded like the one it learnt from.
"""
from __future__ import annotations

import math

import msgpack
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from diffstream.live.frame_layout import FrameLayout
from diffstream.live.protocol import ProtocolError, ScanStart, check_frame, decode

START = ScanStart("scan-a", "ebsd", (30, 40), (4, 5), "uint8")
GOOD_PAYLOAD = bytes(range(20))
KEYS = ("v", "type", "scan_id", "index", "t")


def header(index: int, t: float, order: tuple[str, ...] = KEYS, **changes: object) -> bytes:
    fields = {"v": 1, "type": "frame", "scan_id": START.scan_id, "index": index, "t": t, **changes}
    return msgpack.packb({key: fields[key] for key in order + tuple(k for k in fields if k not in order)})


def reference(head: bytes, payload: bytes) -> tuple[int, float] | None:
    """(index, t) if the reference decoder accepts the frame for START, else None."""
    try:
        frame = decode([head, payload])
        check_frame(frame, START)
    except ProtocolError:
        return None
    return frame.index, frame.t


def rows_of(payloads) -> np.ndarray:
    """Payloads as the receiver stages them: rows of bytes."""
    rows = [np.frombuffer(p, np.uint8) for p in payloads]
    return np.stack(rows) if rows else np.zeros((0, START.frame_nbytes), np.uint8)


def learnt_layout(order: tuple[str, ...] = KEYS, start: ScanStart = START) -> FrameLayout:
    """A layout that has seen an accepted header of every index width a START index can have."""
    layout = FrameLayout(start)
    for index in (5, 200, 1000):  # positive fixint, uint8, uint16
        head = header(index, 1.5, order)
        layout.learn(head, decode([head, GOOD_PAYLOAD]))
    return layout


messages = st.one_of(
    st.builds(lambda i, t: (header(i, t), GOOD_PAYLOAD), st.integers(0, 1199),
              st.floats(0, 2e9, allow_nan=False)),
    st.builds(lambda i, t: (header(i, t), GOOD_PAYLOAD), st.integers(0, 2**40), st.floats()),
    st.builds(lambda i: (header(i, 3.0, scan_id="scan-b"), GOOD_PAYLOAD), st.integers(0, 1199)),
    st.builds(lambda i: (header(i, 3.0, v=2), GOOD_PAYLOAD), st.integers(0, 1199)),
    st.builds(lambda i: (header(i, 3), GOOD_PAYLOAD), st.integers(0, 1199)),  # an integer t: valid, not canonical
    st.builds(lambda i, at, byte: (_flipped(header(i, 4.0), at, byte), GOOD_PAYLOAD), st.integers(0, 1199),
              st.integers(0, 60), st.integers(0, 255)),
    st.builds(lambda raw: (raw, GOOD_PAYLOAD), st.binary(max_size=60)),
)


def _flipped(head: bytes, at: int, byte: int) -> bytes:
    at %= len(head)
    return head[:at] + bytes([byte]) + head[at + 1:]


@settings(max_examples=300, deadline=None)
@given(st.lists(messages, min_size=1, max_size=30), st.permutations(KEYS))
def test_the_layout_accepts_exactly_what_the_reference_decoder_accepts_in_its_encoding(batch, order):
    layout = learnt_layout(tuple(order))
    # The receiver sends a payload of another size than the scan's to the reference decoder itself.
    batch = [(head, payload) for head, payload in batch if len(payload) == START.frame_nbytes]
    matched = layout.match([h for h, _ in batch], rows_of(p for _, p in batch))
    for k, (head, payload) in enumerate(batch):
        expected = reference(head, payload)
        if matched.ok[k]:
            assert expected == (matched.index[k], matched.t[k])
        elif expected is not None:  # valid, so it must be in an encoding the layout never saw
            fields = msgpack.unpackb(head, strict_map_key=False)
            assert msgpack.packb(fields) != head or list(fields) != list(order) or type(fields["t"]) is not float


def test_headers_in_another_encoding_teach_nothing_and_match_nothing():
    single = msgpack.packb({"v": 1, "type": "frame", "scan_id": START.scan_id, "index": 7, "t": 2.5},
                           use_single_float=True)  # t as float32: valid, but not at float64's offsets
    layout = FrameLayout(START)
    layout.learn(single, decode([single, GOOD_PAYLOAD]))
    assert not layout.learnt
    assert not layout.match([single], rows_of([GOOD_PAYLOAD])).ok.any()


def test_float32_frames_with_a_nan_pixel_do_not_match():
    start = ScanStart("scan-a", "ebsd", (30, 40), (2, 2), "float32")
    layout = learnt_layout(start=start)
    clean = np.arange(4, dtype=np.float32).tobytes()
    dirty = np.array([0, math.nan, 1, 2], dtype=np.float32).tobytes()
    matched = layout.match([header(1, 1.0), header(2, 1.0), header(3, 1.0)], rows_of([clean, dirty, clean]))
    assert matched.ok.tolist() == [True, False, True]


def test_a_negative_index_in_the_bytes_of_a_small_one_does_not_match():
    negative = header(-27, 1.0)  # msgpack's negative fixint: one byte, like index 5's
    assert len(negative) == len(header(5, 1.0)) and reference(negative, GOOD_PAYLOAD) is None
    assert not learnt_layout().match([negative], rows_of([GOOD_PAYLOAD])).ok.any()
