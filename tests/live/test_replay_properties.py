"""Bad files at replay, property-based: a recording damaged in any way (cut short, its
scan_start garbled, its datasets disagreeing with it) or a file of random bytes is refused
by ``open_source`` with one :class:`UnreadableFileError` naming the file, never a crash or
a replay of bad frames."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from diffstream.live.protocol import Frame, ScanEnd, ScanStart
from diffstream.live.recorder import Recorder
from diffstream.live.replay import RecordingSource, UnreadableFileError, open_source

PROPERTY = settings(max_examples=30, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
START = ScanStart("s", "ebsd", (3, 4), (8, 8), "uint8", t=1.0)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid one-scan recording, to copy and damage."""
    path = tmp_path_factory.mktemp("rec") / "good.h5"
    frames = np.random.default_rng(0).integers(0, 256, (START.n_frames, 8, 8), dtype=np.uint8)
    with Recorder(path) as recorder:
        recorder.on_message(START)
        for i, frame in enumerate(frames):
            recorder.on_message(Frame("s", i, 2.0 + i, memoryview(frame.tobytes())))
        recorder.on_message(ScanEnd("s", START.n_frames, 9.0))
    assert len(list(RecordingSource(path).scans())) == 1  # the undamaged file replays
    return path


def refused(path: Path) -> None:
    with pytest.raises(UnreadableFileError) as raised:
        open_source(path)
    assert str(path) in str(raised.value) and "\n" not in str(raised.value)


@PROPERTY
@given(cut=st.integers(0, 1 << 30))
def test_a_recording_cut_short_is_refused(recording: Path, tmp_path: Path, cut: int) -> None:
    path = tmp_path / "cut.h5"
    data = recording.read_bytes()
    path.write_bytes(data[:cut % len(data)])
    refused(path)


@PROPERTY
# Text HDF5 can store: no NUL, no lone surrogates.
@given(text=st.one_of(st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=40),
                      st.binary(max_size=40).map(repr),
                      st.dictionaries(st.text(max_size=8), st.integers(), max_size=4).map(json.dumps),
                      st.tuples(st.integers(4097, 65536), st.integers(4097, 65536)).map(
                          lambda shape: json.dumps({**START.header(), "scan_shape": list(shape)}))))
def test_a_garbled_scan_start_is_refused(recording: Path, tmp_path: Path, text: str) -> None:
    path = tmp_path / "garbled.h5"
    shutil.copyfile(recording, path)
    with h5py.File(path, "r+") as file:
        file["scans/0"].attrs["scan_start"] = text
    refused(path)


@PROPERTY
@given(damage=st.sampled_from(["frame_shape", "dtype", "short_index", "negative_index", "index_too_high",
                               "no_frames", "no_scan_start", "bad_group_name", "no_scans"]),
       value=st.integers(1, 1000))
def test_datasets_that_disagree_with_their_scan_start_are_refused(recording: Path, tmp_path: Path, damage: str,
                                                                  value: int) -> None:
    path = tmp_path / "damaged.h5"
    shutil.copyfile(recording, path)
    with h5py.File(path, "r+") as file:
        group = file["scans/0"]
        header = json.loads(group.attrs["scan_start"])
        if damage == "frame_shape":
            group.attrs["scan_start"] = json.dumps({**header, "frame_shape": [8, 8 + value]})
        elif damage == "dtype":
            group.attrs["scan_start"] = json.dumps({**header, "dtype": "uint16"})
        elif damage == "short_index":
            group["index"].resize(START.n_frames - 1 - value % START.n_frames, axis=0)
        elif damage in ("negative_index", "index_too_high"):
            group["index"][value % START.n_frames] = -value if damage == "negative_index" else START.n_frames + value
        elif damage == "no_frames":
            del group["frames"]
        elif damage == "no_scan_start":
            del group.attrs["scan_start"]
        elif damage == "bad_group_name":
            file["scans"].move("0", f"x{value}")
        else:
            del file["scans"]
    refused(path)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=512), suffix=st.sampled_from([".h5", ".hspy", ".bin", ""]))
def test_random_bytes_are_refused(tmp_path: Path, data: bytes, suffix: str) -> None:
    path = tmp_path / f"random{suffix}"
    path.write_bytes(data)
    refused(path)
