"""Out-of-memory fallback: a batch too large for the device is halved and run in chunks, for any backend."""
from __future__ import annotations

import logging

import numpy as np
import pytest

from diffstream.engines import BatchFallback, Engine, EngineError, OutOfDeviceMemory
from fixture_model import fixture_card


class SmallDeviceEngine(Engine):
    """A backend whose device holds at most ``limit`` frames per batch; records the batch sizes it ran."""

    name = "fake"

    def __init__(self, limit: int) -> None:
        super().__init__(fixture_card())
        self.limit = limit
        self.batches: list[int] = []

    def infer(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        if len(frames) > self.limit:
            raise OutOfDeviceMemory(f"CUDA out of memory at batch {len(frames)}")
        self.batches.append(len(frames))
        mean = frames.mean(axis=(1, 2), dtype=np.float32)
        return {"class_probabilities": np.stack([mean, -mean], axis=1), "confidence": mean / 255}


def _frames(n: int) -> np.ndarray:
    return np.random.default_rng(n).integers(0, 256, (n, 60, 60), dtype=np.uint8)


def test_oom_halves_the_batch_and_results_match_one_big_batch(caplog):
    frames = _frames(256)
    expected = SmallDeviceEngine(limit=10_000).infer(frames)
    inner = SmallDeviceEngine(limit=40)
    engine = BatchFallback(inner)
    with caplog.at_level(logging.INFO, logger="diffstream.engines.batch_fallback"):
        out = engine.infer(frames)
        again = engine.infer(_frames(100))
    for name in expected:
        np.testing.assert_array_equal(out[name], expected[name])
    assert engine.max_batch == 32
    assert inner.batches[:8] == [32] * 8 and sum(inner.batches) == 356
    assert again["confidence"].shape == (100,)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "batch 256" in warnings[0].getMessage() and "at most 128" in warnings[0].getMessage()


def test_batches_that_fit_pass_straight_through():
    inner = SmallDeviceEngine(limit=64)
    engine = BatchFallback(inner)
    engine.infer(_frames(64))
    engine.infer(np.zeros((0, 60, 60), np.uint8))
    assert inner.batches == [64, 0] and engine.max_batch is None
    assert engine.name == "fake" and engine.device == "cpu" and engine.precision == "fp32"


def test_oom_on_a_single_frame_is_one_clear_error():
    with pytest.raises(EngineError, match="out of device memory even for one frame"):
        BatchFallback(SmallDeviceEngine(limit=0)).infer(_frames(5))
