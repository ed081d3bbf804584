"""Recording streams and replaying recordings and pattern files, over real sockets on
127.0.0.1: a recording replayed and recorded again is the same recording (but for scan_id
and send times, which replay renews by design), and pattern files stream with the geometry
they hold."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import run_diffstream, start_server
from diffstream.live.detector_sim import Publisher, serve
from diffstream.live.protocol import Frame, ScanEnd, ScanStart
from diffstream.live.receiver import Receiver
from diffstream.live.recorder import FLUSH_INTERVAL_S, Recorder, record
from diffstream.live.replay import open_source
from diffstream.live.scan_render import SimulatedSource, SpedRenderer
from diffstream.trainer.physics.specimen import SpecimenSpec, make_specimen

ANY_PORT = "tcp://127.0.0.1:*"


def serve_and_record(source, path: Path, scans: int = 1, **serve_options: object) -> Recorder:
    """Serve ``source`` on a thread and record ``scans`` scans of it to ``path``."""
    stop = threading.Event()
    with Publisher(ANY_PORT) as publisher, Recorder(path) as recorder:
        server = threading.Thread(target=serve, args=(publisher, source), daemon=True,
                                  kwargs=dict(rate=0, stop=stop, wait_subscribers=1, **serve_options))
        server.start()
        faults = record(publisher.endpoint, recorder, scans=scans, stop=threading.Event())
        stop.set()
        server.join(30)
    assert not faults
    return recorder


def scans_in(path: Path) -> list[dict]:
    """Each recorded scan as plain values, scan_id and times left out."""
    with h5py.File(path, "r") as file:
        assert file.attrs["format"] == "diffstream-recording"
        out = []
        for name in sorted(file["scans"], key=int):
            group = file["scans"][name]
            header = {k: v for k, v in json.loads(group.attrs["scan_start"]).items() if k not in ("scan_id", "t")}
            out.append({"header": header, "frames": group["frames"][()], "index": group["index"][()],
                        "complete": bool(group.attrs["complete"]), "frames_sent": int(group.attrs["frames_sent"]),
                        "compression": group["frames"].compression})
    return out


def assert_same_recordings(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x["header"] == y["header"]
        np.testing.assert_array_equal(x["frames"], y["frames"])
        np.testing.assert_array_equal(x["index"], y["index"])
        assert (x["complete"], x["frames_sent"]) == (y["complete"], y["frames_sent"])


def test_a_replayed_recording_records_identically(tmp_path) -> None:
    specimen = make_specimen(SpecimenSpec(scan_shape=(6, 6), phases=(("Ni", 0.5), ("Fe", 0.5)), grain_size=3,
                                          empty_fraction=0.1, seed=2))
    source = SimulatedSource(specimen, SpedRenderer.for_phases(["Ni", "Fe"], frame_size=16, seed=2),
                             threading.Event())
    first = serve_and_record(source, tmp_path / "first.h5", scans=2, loop=True)
    assert (first.scans, first.frames, first.incomplete) == (2, 72, 0)
    serve_and_record(open_source(tmp_path / "first.h5"), tmp_path / "again.h5", scans=2)
    original = scans_in(tmp_path / "first.h5")
    assert original[0]["header"]["geometry"]["voltage_kv"] == 300.0
    assert original[0]["compression"] == "lzf"  # sparse counts compress
    np.testing.assert_array_equal(original[0]["frames"], source.frames.reshape(-1, 16, 16))
    assert_same_recordings(original, scans_in(tmp_path / "again.h5"))


def test_an_interrupted_scan_is_kept_and_marked_incomplete(tmp_path) -> None:
    start = ScanStart(scan_id="s1", kind="ebsd", scan_shape=(30, 30), frame_shape=(60, 60), dtype="uint8",
                      geometry={"pc": [0.5, 0.5, 0.5]}, t=1.0, extra={"vendor": {"gain": 2}})
    frames = np.random.default_rng(1).integers(0, 256, (700, 60, 60), dtype=np.uint8)  # more than two chunks
    with Recorder(tmp_path / "cut.h5") as recorder:
        recorder.on_message(start)
        for i, frame in enumerate(frames):
            recorder.on_message(Frame("s1", 899 - i, 10.0 + i, memoryview(frame.tobytes())))
            if i == 300:
                recorder.on_message(start)  # a repeat of the same scan's scan_start
        recorder.on_message(Frame("other", 0, 0.0, memoryview(frames[0].tobytes())))
    (scan,) = scans_in(tmp_path / "cut.h5")
    assert (recorder.scans, recorder.frames, recorder.incomplete, recorder.ignored) == (1, 700, 1, 1)
    assert (scan["complete"], scan["frames_sent"]) == (False, -1)
    assert scan["compression"] is None  # noise does not compress: stored plain, at a tenth of the cost
    assert scan["header"]["vendor"] == {"gain": 2}
    np.testing.assert_array_equal(scan["frames"], frames)
    np.testing.assert_array_equal(scan["index"], 899 - np.arange(700))
    (replayed,) = open_source(tmp_path / "cut.h5").scans()
    assert replayed.start.extra == {"vendor": {"gain": 2}}
    chunks = list(replayed.chunks(threading.Event()))
    np.testing.assert_array_equal(np.concatenate([index for index, _ in chunks]), scan["index"])
    np.testing.assert_array_equal(np.concatenate([f for _, f in chunks]), frames)


@pytest.mark.filterwarnings("ignore:Signal navigation axes:UserWarning")  # write_h5ebsd's 1-D navigation
def test_h5ebsd_replays_its_patterns_with_the_files_pattern_centre(tmp_path) -> None:
    from diffstream.trainer.physics.ebsd_patterns import simulate_ebsd_patterns, write_h5ebsd
    from diffstream.trainer.physics.master_pattern import kinematical_master_pattern

    patterns = simulate_ebsd_patterns("Ni", 6, 32, pc=(0.45, 0.35, 0.62), sample_tilt=68.0, seed=4,
                                      master=kinematical_master_pattern("Ni", half_size=32))
    write_h5ebsd(patterns, tmp_path / "ni.h5")
    source = open_source(tmp_path / "ni.h5")
    serve_and_record(source, tmp_path / "ni-stream.h5")
    (scan,) = scans_in(tmp_path / "ni-stream.h5")
    header = scan["header"]
    assert (header["kind"], header["scan_shape"], header["frame_shape"], header["dtype"]) == (
        "ebsd", [1, 6], [32, 32], "uint8")
    np.testing.assert_allclose(header["geometry"]["pc"], (0.45, 0.35, 0.62))
    assert header["geometry"]["sample_tilt"] == 68.0 and header["geometry"]["voltage_kv"] == 20.0
    np.testing.assert_array_equal(scan["frames"], patterns.patterns)
    np.testing.assert_array_equal(scan["index"], np.arange(6))


def test_hspy_replays_as_4dstem_with_its_calibration(tmp_path) -> None:
    from diffstream.trainer.physics.sped_patterns import simulate_sped_patterns, write_hspy

    patterns = simulate_sped_patterns("Ni", 5, 24, seed=1)
    write_hspy(patterns, tmp_path / "ni.hspy")
    (scan,) = open_source(tmp_path / "ni.hspy").scans()
    start = scan.start
    assert (start.kind, start.scan_shape, start.frame_shape, start.dtype) == ("4dstem", (1, 5), (24, 24), "float32")
    assert start.geometry["voltage_kv"] == 300.0 and start.geometry["precession_deg"] == pytest.approx(0.6)
    assert start.geometry["calibration"] == pytest.approx(patterns.geometry.calibration)
    assert start.geometry["direct_beam_px"] == pytest.approx(list(patterns.geometry.centre))
    (indices, frames), = scan.chunks(threading.Event())
    assert list(indices) == list(range(5))
    np.testing.assert_array_equal(frames, patterns.patterns)


@pytest.mark.parametrize("make", [lambda path: None, lambda path: path.write_text("not patterns")],
                         ids=["missing", "unreadable"])
def test_replay_of_a_bad_file_is_one_line_and_exit_2(tmp_path, make) -> None:
    path = tmp_path / "scan.h5"
    make(path)
    result = run_diffstream("replay", str(path), "--bind", ANY_PORT)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("diffstream: error: ")
    assert str(path) in result.stderr


def test_record_and_replay_commands_round_trip(tmp_path) -> None:
    recordings = []
    for server in (["detector-sim", "--kind", "4dstem", "--scan", "5x5", "--frame-size", "16", "--phases", "Ni:1"],
                   ["replay", str(tmp_path / "0.h5")]):
        process, endpoint = start_server(*server, "--rate", "0")
        out = tmp_path / f"{len(recordings)}.h5"
        result = run_diffstream("record", "--connect", endpoint, "--out", str(out))
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"recorded 1 scan(s), 25 frames to {out}; 0 faults"
        assert process.wait(30) == 0, process.stderr.read()
        recordings.append(scans_in(out))
    assert_same_recordings(*recordings)
    assert recordings[0][0]["complete"] and recordings[0][0]["frames_sent"] == 25


def frame_digests(frames: np.ndarray, index: np.ndarray) -> dict[int, str]:
    return {int(i): hashlib.sha256(frame.tobytes()).hexdigest() for i, frame in zip(index, frames)}


def test_every_frame_the_receiver_accepts_is_recorded_even_those_mapping_had_to_drop(tmp_path) -> None:
    from test_receiver import Publisher, pattern

    start = ScanStart("tapped", "ebsd", (12, 25), (16, 16), "uint16", t=1.0)
    publisher = Publisher()
    recorder = Recorder(tmp_path / "tap.h5")
    receiver = Receiver(publisher.url, batch_size=4, n_slots=2, max_wait_s=10.0, tap=recorder.on_message)
    try:
        with receiver:  # nobody consumes: the ring fills and drops, the tap still sees every frame
            deadline = time.monotonic() + 10
            while receiver.stats().scan_id != "tapped":
                assert time.monotonic() < deadline
                publisher.start(start)
                time.sleep(0.02)
            for index in range(start.n_frames):
                publisher.frame(start, index)
            publisher.end(start, start.n_frames)
            while receiver.stats().state != "ended":
                assert time.monotonic() < deadline + 10, receiver.stats()
                time.sleep(0.02)
    finally:
        publisher.close()
        recorder.close()
    stats = receiver.stats()
    assert stats.dropped_backpressure > 0
    (scan,) = scans_in(tmp_path / "tap.h5")
    assert stats.frames_received == len(scan["index"]) == start.n_frames and scan["complete"]
    sent = {i: hashlib.sha256(pattern(start, i).tobytes()).hexdigest() for i in range(start.n_frames)}
    assert frame_digests(scan["frames"], scan["index"]) == sent


def test_a_recorder_killed_mid_scan_leaves_a_readable_file_with_every_flushed_frame(tmp_path) -> None:
    start = ScanStart("known", "ebsd", (40, 50), (16, 16), "uint8", t=1.0)
    frames = np.random.default_rng(2).integers(0, 256, (start.n_frames, 16, 16), dtype=np.uint8)
    with Recorder(tmp_path / "source.h5") as source:
        source.on_message(start)
        for i, frame in enumerate(frames):
            source.on_message(Frame("known", i, 1.0, memoryview(frame.tobytes())))
        source.on_message(ScanEnd("known", start.n_frames, 2.0))
    server, endpoint = start_server("replay", str(tmp_path / "source.h5"), "--rate", "400")  # five seconds
    out = tmp_path / "killed.h5"
    exe = Path(sys.executable).with_name("diffstream")
    recorder = subprocess.Popen([str(exe), "record", "--connect", endpoint, "--out", str(out)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(2.5 + FLUSH_INTERVAL_S)  # well into the scan, and past at least one timed flush
        assert recorder.poll() is None
        recorder.kill()
        recorder.wait(30)
    finally:
        server.kill()
        server.wait(30)
    (scan,) = scans_in(out)
    assert not scan["complete"]
    n = len(scan["index"])
    assert 0 < n < start.n_frames
    assert len(scan["frames"]) == n
    np.testing.assert_array_equal(scan["index"], np.arange(n))  # the stream from its start, in order, no gap
    assert frame_digests(scan["frames"], scan["index"]) == frame_digests(frames[:n], np.arange(n))
    (replayed,) = open_source(out).scans()
    assert replayed.start.scan_shape == start.scan_shape
