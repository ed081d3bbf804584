"""``diffstream bench soak`` with a small N: the figures it promises are there, and every frame
offered is mapped or dropped under a counted cause (no rate is checked: speed is the bench's to print)."""
from __future__ import annotations

import json

import pytest

from conftest import run_diffstream
from fixture_model import build_fixture_model


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(build_fixture_model(tmp_path_factory.mktemp("model") / "fixture.onnx", (24, 24)))


def test_soak_accounts_for_every_frame_and_reports_memory(model: str) -> None:
    result = run_diffstream("bench", "soak", "--frames", "5000", "--rate", "5000", "--model", model,
                            "--batch-size", "64", "--json")
    assert result.returncode == 0, result.stderr
    figures = json.loads(result.stdout)
    assert figures["frames"] == 5000 and figures["frame_shape"] == [24, 24]
    for key in ("frames_received", "frames_dropped", "frames_dropped_unexplained", "rss_growth_mb", "duration_s"):
        assert figures[key] is not None, key
    assert figures["frames_dropped_unexplained"] == 0
    causes = figures["dropped_by_cause"]
    assert figures["frames_mapped"] + sum(causes.values()) == figures["frames"]
    assert figures["frames_sent"] == figures["frames"] - causes["sender_queue_full"]
    assert figures["frames_received"] == figures["frames_sent"]  # nothing queued at the sender was lost
    assert 0 < figures["frames_mapped"] <= figures["frames_received"]
    assert figures["rss_peak_mb"] >= figures["rss_after_warmup_mb"] > 0 and figures["rss_after_scan_mb"] > 0


def test_soak_refuses_a_frame_count_beyond_one_scan(model: str) -> None:
    result = run_diffstream("bench", "soak", "--frames", "0", "--model", model)
    assert result.returncode == 2 and result.stderr.startswith("diffstream: error: frames")
