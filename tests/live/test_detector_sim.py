"""The detector simulator over real sockets on 127.0.0.1: every frame arrives where it
belongs, scans start and end as the protocol says, and the server stops cleanly."""
from __future__ import annotations

import dataclasses
import re
import signal
import threading
import time

import numpy as np
import pytest
import zmq

from conftest import run_diffstream, start_server
from diffstream.live import scan_render
from diffstream.live.detector_sim import Publisher, array_scan, scan_template, serve
from diffstream.live.protocol import Frame, ScanEnd, ScanStart, decode
from diffstream.live.scan_render import (
    DEFAULT_EBSD_GEOMETRY,
    EBSDRenderer,
    SimulatedSource,
    SpedRenderer,
    render_scan,
)
from diffstream.trainer.physics.master_pattern import kinematical_master_pattern
from diffstream.trainer.physics.specimen import SpecimenSpec, make_specimen

ANY_PORT = "tcp://127.0.0.1:*"
PHASES = (("Ni", 0.4), ("Fe", 0.3), ("Ti", 0.3))


def receive(endpoint: str, scans: int = 1, pull: bool = False, timeout_ms: int = 30_000) -> list:
    """Decoded messages, with each frame's payload copied out, until ``scans`` scan_ends."""
    messages = []
    with zmq.Context() as context, context.socket(zmq.PULL if pull else zmq.SUB) as socket:
        socket.setsockopt(zmq.LINGER, 0)
        if not pull:
            socket.setsockopt(zmq.SUBSCRIBE, b"")
        socket.connect(endpoint)
        while scans:
            assert socket.poll(timeout_ms), "the server went quiet"
            message = decode(socket.recv_multipart())
            messages.append((message, bytes(message.payload)) if isinstance(message, Frame) else message)
            scans -= isinstance(message, ScanEnd)
    return messages


def receiving(endpoint: str, **kwargs: object) -> tuple[threading.Thread, list]:
    """``receive`` on a thread; its messages land in the returned list."""
    out: list = []
    thread = threading.Thread(target=lambda: out.extend(receive(endpoint, **kwargs)), daemon=True)
    thread.start()
    return thread, out


def frames_of(messages: list) -> list[tuple[Frame, bytes]]:
    return [m for m in messages if isinstance(m, tuple)]


def random_scan(n: int, shape: tuple[int, int] = (16, 16)):
    frames = np.random.default_rng(n).integers(0, 256, (n, *shape), dtype=np.uint8)
    return array_scan(scan_template("ebsd", (1, n), shape, "uint8", {"pc": [0.5, 0.5, 0.5]}), frames), frames


class OneScan:
    def __init__(self, scan) -> None:
        self.scan = scan

    def scans(self):
        yield self.scan


def test_multiphase_ebsd_scan_arrives_whole_and_in_order() -> None:
    spec = SpecimenSpec(scan_shape=(8, 8), phases=PHASES, grain_size=3, empty_fraction=0.1, seed=3)
    specimen = make_specimen(spec)
    masters = {name: kinematical_master_pattern(name, half_size=32) for name in spec.phase_names}  # coarse: quick
    renderer = EBSDRenderer(masters, geometry=dataclasses.replace(DEFAULT_EBSD_GEOMETRY, shape=(32, 32)), seed=3)
    source = SimulatedSource(specimen, renderer, threading.Event())
    with Publisher(ANY_PORT) as publisher:
        thread, messages = receiving(publisher.endpoint)
        ends = serve(publisher, source, rate=2000, stop=threading.Event(), wait_subscribers=1, wait_timeout=30)
        thread.join(30)
    starts = [m for m in messages if isinstance(m, ScanStart)]
    start = starts[0]
    assert (start.kind, start.scan_shape, start.frame_shape, start.dtype) == ("ebsd", (8, 8), (32, 32), "uint8")
    assert start.geometry["pc"] == [0.5, 0.5, 0.5] and start.geometry["sample_tilt"] == 70.0
    frames = frames_of(messages)
    assert [frame.index for frame, _ in frames] == list(range(64))
    assert all(frame.scan_id == start.scan_id and len(payload) == 32 * 32 for frame, payload in frames)
    received = np.stack([np.frombuffer(payload, np.uint8).reshape(32, 32) for _, payload in frames])
    np.testing.assert_array_equal(received, source.frames)
    assert [m for m in messages if isinstance(m, ScanEnd)] == ends
    assert ends[0].frames_sent == 64 and ends[0].scan_id == start.scan_id
    assert (specimen.phase_id < 0).sum() == 6  # background-only frames went out too


def test_loop_gives_every_pass_a_new_scan_id_and_repeats_scan_start() -> None:
    scan, _ = random_scan(32)
    stop = threading.Event()
    with Publisher(ANY_PORT) as publisher:
        thread, messages = receiving(publisher.endpoint, scans=2)
        server = threading.Thread(target=serve, args=(publisher, OneScan(scan)), daemon=True,
                                  kwargs=dict(rate=50, stop=stop, loop=True, wait_subscribers=1))
        server.start()
        thread.join(30)
        stop.set()
        server.join(30)
    ends = [m for m in messages if isinstance(m, ScanEnd)]
    assert len({end.scan_id for end in ends}) == 2
    for end in ends:
        starts = [m for m in messages if isinstance(m, ScanStart) and m.scan_id == end.scan_id]
        assert len(starts) >= 2 and all(s == starts[0] for s in starts)  # 0.64 s scans, repeats every 0.5 s
        assert end.frames_sent == 32
    first, second = ({**start.header(), "scan_id": None, "t": None}
                     for start in {m.scan_id: m for m in messages if isinstance(m, ScanStart)}.values())
    assert first == second


def test_push_hands_every_frame_to_a_puller() -> None:
    scan, frames = random_scan(300)
    with Publisher(ANY_PORT, push=True) as publisher:
        thread, messages = receiving(publisher.endpoint, pull=True)
        (end,) = serve(publisher, OneScan(scan), rate=0, stop=threading.Event(), wait_subscribers=1)
        thread.join(30)
    received = frames_of(messages)
    assert end.frames_sent == 300 and [frame.index for frame, _ in received] == list(range(300))
    assert b"".join(payload for _, payload in received) == frames.tobytes()


def test_a_high_rate_is_paced_in_bursts_not_one_wake_up_per_frame(monkeypatch) -> None:
    """At 10,000 frames/s the sender naps at least MIN_SLEEP: about rate × MIN_SLEEP frames
    per wake-up, each frame still sent, and never sent ahead of the rate."""
    from diffstream.live import detector_sim

    naps: list[float] = []
    real_sleep = detector_sim.time.sleep

    def counting_sleep(seconds: float) -> None:
        naps.append(seconds)
        real_sleep(seconds)

    monkeypatch.setattr(detector_sim.time, "sleep", counting_sleep)
    scan, frames = random_scan(2000)
    with Publisher(ANY_PORT, push=True) as publisher:
        thread, messages = receiving(publisher.endpoint, pull=True)
        began = time.perf_counter()
        (end,) = serve(publisher, OneScan(scan), rate=10_000, stop=threading.Event(), wait_subscribers=1)
        took = time.perf_counter() - began
        thread.join(30)
    assert end.frames_sent == 2000 and len(frames_of(messages)) == 2000
    assert took >= 2000 / 10_000 - detector_sim.MIN_SLEEP  # bursts, yet never ahead of the rate
    pacing_naps = [nap for nap in naps if nap <= detector_sim.MAX_SLEEP]
    assert min(pacing_naps) >= detector_sim.MIN_SLEEP
    assert len(pacing_naps) <= 2000 / 10_000 / detector_sim.MIN_SLEEP * 1.5  # ~200 wake-ups, not ~2000


def test_waiting_for_absent_subscribers_times_out_naming_the_endpoint() -> None:
    scan, _ = random_scan(4)
    with Publisher(ANY_PORT) as publisher, pytest.raises(TimeoutError, match=re.escape(publisher.endpoint)):
        serve(publisher, OneScan(scan), rate=0, stop=threading.Event(), wait_subscribers=1, wait_timeout=0.2)


def test_a_scan_too_big_to_render_up_front_is_rendered_ahead_by_workers_identically(monkeypatch) -> None:
    specimen = make_specimen(SpecimenSpec(scan_shape=(4, 80), phases=(("Ni", 0.5), ("Fe", 0.5)), grain_size=4,
                                          empty_fraction=0.2, seed=5))
    renderer = SpedRenderer.for_phases(["Ni", "Fe"], frame_size=16, seed=5)
    up_front = render_scan(renderer, specimen)
    monkeypatch.setattr(scan_render, "RENDER_UP_FRONT_BYTES", 1)  # a buffer of one chunk
    source = SimulatedSource(specimen, renderer, threading.Event())
    assert source.frames is None
    with Publisher(ANY_PORT) as publisher:
        thread, messages = receiving(publisher.endpoint)
        (end,) = serve(publisher, source, rate=0, stop=threading.Event(), wait_subscribers=1)
        thread.join(30)
    frames = frames_of(messages)
    assert end.frames_sent == 320 and [frame.index for frame, _ in frames] == list(range(320))
    received = np.stack([np.frombuffer(payload, np.uint16).reshape(16, 16) for _, payload in frames])
    np.testing.assert_array_equal(received, up_front)
    empty = specimen.phase_id.ravel() < 0
    assert up_front.dtype == np.uint16
    assert up_front[empty].max() < up_front[~empty].max(axis=(1, 2)).min()  # no spots, no direct beam


def test_command_streams_a_scan_and_writes_a_truth_orix_reads(tmp_path) -> None:
    from orix import io

    truth = tmp_path / "truth" / "specimen.h5"
    process, endpoint = start_server("detector-sim", "--kind", "4dstem", "--scan", "6x7", "--frame-size", "24",
                                     "--rate", "0", "--phases", "Ni:0.5,Fe:0.5", "--grain-size", "3",
                                     "--empty-fraction", "0.1", "--truth", str(truth))
    messages = receive(endpoint)
    assert process.wait(30) == 0, process.stderr.read()
    start = messages[0]
    assert (start.kind, start.scan_shape, start.frame_shape, start.dtype) == ("4dstem", (6, 7), (24, 24), "uint16")
    assert start.geometry["voltage_kv"] == 300.0
    assert sorted(frame.index for frame, _ in frames_of(messages)) == list(range(42))
    assert {len(payload) for _, payload in frames_of(messages)} == {24 * 24 * 2}
    assert messages[-1].frames_sent == 42
    xmap = io.load(truth)
    assert xmap.shape == (6, 7)
    assert {"Ni", "Fe"} <= set(xmap.phases.names)
    assert (xmap.phase_id == -1).sum() == 4  # empty points stay distinguishable


def test_sigterm_ends_the_scan_with_a_true_scan_end_and_exit_0() -> None:
    process, endpoint = start_server("detector-sim", "--kind", "4dstem", "--scan", "16x16", "--frame-size", "16",
                                     "--rate", "40", "--phases", "Ni:1")
    with zmq.Context() as context, context.socket(zmq.SUB) as socket:
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.SUBSCRIBE, b"")
        socket.connect(endpoint)
        frames, end = 0, None
        while end is None:
            assert socket.poll(30_000), "the server went quiet"
            message = decode(socket.recv_multipart())
            frames += isinstance(message, Frame)
            if frames == 10 and isinstance(message, Frame):
                process.send_signal(signal.SIGTERM)
            end = message if isinstance(message, ScanEnd) else None
    assert process.wait(30) == 0, process.stderr.read()
    assert end.frames_sent == frames < 256


@pytest.mark.parametrize("command", [["detector-sim"], ["replay", "recording.h5"]])
def test_servers_bind_to_this_machine_only_unless_told_otherwise(command: list[str]) -> None:
    from diffstream.live.cli import build_parser

    args = build_parser().parse_args(command)
    assert args.bind.startswith("tcp://127.0.0.1:")
    assert args.curve_secret is None and args.curve_clients is None  # CURVE is asked for, never half-on


def test_ebsd_frames_come_from_the_simulation_asked_for() -> None:
    """``--patterns dynamical`` serves Bloch-wave frames: the same points render other frames
    than from the kinematical master patterns, and each kind from its own master pattern."""
    from diffstream.live.commands.detector_sim import PATTERN_SIMULATIONS
    from diffstream.trainer.physics.master_pattern import SIMULATIONS

    assert PATTERN_SIMULATIONS == SIMULATIONS
    rotations = np.random.default_rng(4).normal(size=(6, 4))
    rotations /= np.linalg.norm(rotations, axis=1, keepdims=True)
    frames, sources = {}, {}
    for simulation in SIMULATIONS:
        renderer = EBSDRenderer.for_phases(["Ni"], frame_size=24, simulation=simulation, master_half_size=24)
        sources[simulation] = renderer.masters["Ni"].source
        frames[simulation] = renderer.render(rotations, np.zeros(6, int), np.random.default_rng(0))
    assert sources == {"kinematical": "kinematical", "dynamical": "dynamical (Bloch waves)"}
    assert not np.array_equal(frames["kinematical"], frames["dynamical"])


def test_dynamical_patterns_are_refused_for_4dstem_in_one_line() -> None:
    from diffstream.live.cli import build_parser

    assert build_parser().parse_args(["demo", "--patterns", "dynamical"]).patterns == "dynamical"
    done = run_diffstream("detector-sim", "--kind", "4dstem", "--patterns", "dynamical", "--scan", "2x2")
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "--patterns dynamical: master patterns make EBSD frames" in done.stderr
