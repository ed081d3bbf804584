"""CURVE over real sockets: an encrypted stream from ``diffstream replay`` maps exactly as a plain
one; a client whose key the server does not list, and a client without CURVE, receive nothing
while a listed client on the same server does, and the server counts and logs the refusals."""
from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import run_diffstream, start_server
from diffstream.engines import create_engine
from diffstream.live.curve import CurveClient, CurveServer
from diffstream.live.pipeline import LivePipeline
from diffstream.live.receiver import Receiver
from fixture_model import build_fixture_model
from fixture_stream import CLASS_NAMES, FRAME, TIMEOUT, mapped_classes, write_recording


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Key pairs made by the command (server, a listed client, a stranger), a recording, a model."""
    root = tmp_path_factory.mktemp("curve")
    for folder, name in (("server", "server"), ("clients", "beamline"), ("stranger", "stranger")):
        result = run_diffstream("keys", "generate", str(root / folder), "--name", name)
        assert result.returncode == 0, result.stderr
    write_recording(root / "scan.h5")
    return {"root": root, "recording": root / "scan.h5", "model": build_fixture_model(root / "fixture.onnx", FRAME)}


def curve_server(setup: dict[str, Path], *args: str):
    root = setup["root"]
    return start_server("replay", str(setup["recording"]), "--curve-secret", str(root / "server/server.key_secret"),
                        "--curve-clients", str(root / "clients"), *args)


def client(setup: dict[str, Path], name: str) -> CurveClient:
    root = setup["root"]
    folder = "clients" if name == "beamline" else name
    return CurveClient.load(root / "server/server.key", root / folder / f"{name}.key_secret")


def test_an_encrypted_stream_maps_exactly(setup: dict[str, Path], tmp_path: Path) -> None:
    classes = write_recording(tmp_path / "expected.h5")  # the same classes as the served recording
    server, endpoint = curve_server(setup, "--rate", "0")
    try:
        receiver = Receiver(endpoint, batch_size=256, security=client(setup, "beamline"))
        pipeline = LivePipeline(receiver, create_engine(setup["model"]), model_name="fixture", out_dir=tmp_path)
        watchdog = threading.Timer(TIMEOUT, pipeline.stop)  # a failed handshake would otherwise wait forever
        watchdog.start()
        try:
            (report,) = pipeline.run()
        finally:
            watchdog.cancel()
        assert server.wait(TIMEOUT) == 0
    finally:
        if server.poll() is None:
            server.kill()
    assert report.summary["ended_by"] == "scan_end"
    assert report.summary["frames_received"] == classes.size  # at --rate 0 some could drop; none did
    assert mapped_classes(report.files["h5"]) == [CLASS_NAMES[k] for k in classes]


def test_strangers_and_plain_clients_receive_nothing_and_the_server_counts_the_refusals(
        setup: dict[str, Path]) -> None:
    server, endpoint = curve_server(setup, "--rate", "200", "--loop", "--wait-subscribers", "0")
    listed = Receiver(endpoint, security=client(setup, "beamline"))
    stranger = Receiver(endpoint, security=client(setup, "stranger"))
    plain = Receiver(endpoint)
    try:
        with listed, stranger, plain:
            deadline = time.monotonic() + TIMEOUT
            while listed.stats().frames_received < 100:  # the server is streaming to those it lets in
                assert time.monotonic() < deadline, listed.stats()
                time.sleep(0.05)
            for shut_out in (stranger, plain):
                stats = shut_out.stats()
                assert (stats.messages, stats.frames_received, stats.state) == (0, 0, "connecting")
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=TIMEOUT)
    finally:
        if server.poll() is None:
            server.kill()
    assert server.returncode == 0, stderr
    assert stderr.count("refused a client with an unknown CURVE key") == 1  # logged once, however often it retries
    assert "refused" in stderr.splitlines()[-1] and "CURVE handshake(s)" in stderr.splitlines()[-1]


def test_a_server_refuses_a_folder_without_client_keys_and_half_given_options(setup: dict[str, Path],
                                                                               tmp_path: Path) -> None:
    root = setup["root"]
    with pytest.raises(ValueError, match="no client public key"):
        CurveServer.load(root / "server/server.key_secret", tmp_path)
    with pytest.raises(ValueError, match="not a secret key file"):
        CurveServer.load(root / "server/server.key", root / "clients")
    half = run_diffstream("replay", str(setup["recording"]), "--curve-secret", str(root / "server/server.key_secret"))
    assert half.returncode == 2 and "--curve-secret needs --curve-clients" in half.stderr
    assert np.all([line.startswith("diffstream: error:") for line in half.stderr.strip().splitlines()])
