"""A scan recorded while it is mapped live, then replayed, maps to the same map."""
from __future__ import annotations

import numpy as np
from orix import io

from conftest import run_diffstream, start_server
from fixture_model import build_fixture_model


def test_a_recorded_then_replayed_scan_yields_the_same_map(tmp_path):
    model = build_fixture_model(tmp_path / "fixture.onnx", (32, 32))
    recording = tmp_path / "scan.h5"
    maps = []
    servers = (("detector-sim", "--kind", "ebsd", "--scan", "6x8", "--frame-size", "32", "--phases", "Ni:1",
                "--rate", "0"), ("replay", str(recording), "--rate", "0"))
    for n, server in enumerate(servers):
        process, endpoint = start_server(*server)
        out = tmp_path / f"map-{n}"
        extra = ("--record", str(recording)) if n == 0 else ()
        result = run_diffstream("live", "--connect", endpoint, "--model", str(model), "--headless",
                                "--out", str(out), *extra)
        assert result.returncode == 0, result.stderr
        assert process.wait(60) == 0
        maps.append(io.load(out / "map.h5"))
    first, second = maps
    assert first.size == second.size == 48
    np.testing.assert_array_equal(first.phase_id, second.phase_id)
    np.testing.assert_allclose(first.prop["confidence"], second.prop["confidence"], rtol=0, atol=0)
    np.testing.assert_allclose(first.rotations.data, second.rotations.data)
    assert len(set(first.phase_id.tolist())) >= 1 and (first.phase_id >= 0).any()
