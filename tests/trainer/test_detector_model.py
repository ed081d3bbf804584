"""The detector model: its statistics, its fixed defects, its bookkeeping and its refusals."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from diffstream.trainer.physics.detector_model import (
    GAUSSIAN_SHOT_NOISE_ABOVE,
    PRESETS,
    Detector,
    DetectorParams,
    bin_patterns,
    preset,
)
from diffstream.trainer.physics.errors import PhysicsInputError


def bare(**fields: object) -> DetectorParams:
    """A camera with nothing but what a test switches on: flat, noiseless, 16 bits."""
    base = dict(name="bare", dose=100.0, shot_noise=False, contrast=1.0, background_amplitude=0.0,
                bit_depth=16)
    return DetectorParams(**{**base, **fields})


def flat(n: int, h: int = 32, w: int = 32) -> np.ndarray:
    return np.ones((n, h, w), dtype=np.float32)


def smooth_pattern(h: int = 60, w: int = 60) -> np.ndarray:
    """A stand-in Kikuchi pattern: a few bright bands on a gradient."""
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    bands = sum(np.exp(-((np.cos(a) * x + np.sin(a) * y - c) ** 2) / 0.002)
                for a, c in ((0.3, 0.4), (1.2, 0.5), (2.4, -0.1)))
    return (0.5 + 0.3 * x + bands).astype(np.float32)


@pytest.mark.parametrize("dose, exact", [(5.0, True), (300.0, False)], ids=["poisson", "gaussian"])
def test_shot_noise_variance_equals_mean_at_the_dose(dose: float, exact: bool) -> None:
    assert (dose < GAUSSIAN_SHOT_NOISE_ABOVE) == exact
    frames = Detector(bare(dose=dose, shot_noise=True)).acquire(flat(200), rng=1).astype(float)
    assert frames.mean() == pytest.approx(dose, rel=0.01)
    assert frames.var() == pytest.approx(dose, rel=0.03)


def test_gain_offset_and_read_noise_set_the_variance_per_pixel() -> None:
    gain, offset, read_noise = 2.0, 20.0, 3.0
    params = bare(dose=50.0, shot_noise=True, contrast=0.8, gain=gain, offset=offset,
                  read_noise=read_noise)
    clean = np.broadcast_to(smooth_pattern(16, 16), (4000, 16, 16))
    frames = Detector(params).acquire(clean, rng=2).astype(float)
    signal = frames.mean(axis=0) - offset
    expected_variance = gain * signal + read_noise**2
    assert np.median(frames.var(axis=0) / expected_variance) == pytest.approx(1.0, abs=0.05)


def high_frequency_power(frames: np.ndarray) -> float:
    spectrum = np.abs(np.fft.fft2(frames - frames.mean(axis=(1, 2), keepdims=True))) ** 2
    f = np.abs(np.fft.fftfreq(frames.shape[-1]))
    high = (f[:, None] > 0.25) | (f[None, :] > 0.25)
    return float(spectrum[:, high].sum())


def test_blur_removes_high_frequency_power() -> None:
    clean = np.random.default_rng(0).random((20, 64, 64), dtype=np.float32)
    sharp = Detector(bare(dose=20000.0)).acquire(clean, rng=0).astype(float)
    blurred = Detector(bare(dose=20000.0, blur_sigma=2.0)).acquire(clean, rng=0).astype(float)
    assert high_frequency_power(blurred) < 0.05 * high_frequency_power(sharp)
    assert blurred.mean() == pytest.approx(sharp.mean(), rel=0.01)


def test_hot_and_dead_pixels_are_fixed_per_detector_and_at_the_fraction() -> None:
    params = bare(dose=1000.0, shot_noise=True, hot_fraction=0.01, dead_fraction=0.02)
    detector = Detector(params, seed=7)
    first = detector.acquire(flat(10, 100, 100), rng=1)
    second = detector.acquire(flat(10, 100, 100), rng=2)
    frames = np.concatenate([first, second]).reshape(20, -1)
    defects = detector.defects((100, 100))
    assert len(defects.hot) == 100 and len(defects.dead) == 200
    always_zero = np.flatnonzero((frames == 0).all(axis=0))
    assert set(always_zero) == set(defects.dead)
    constant = np.flatnonzero((frames == frames[0]).all(axis=0))
    assert set(constant) == set(defects.hot) | set(defects.dead)
    assert (frames[:, defects.hot] >= params.saturation // 2).all()
    other = Detector(params, seed=8).defects((100, 100))
    assert len(set(other.dead) & set(defects.dead)) < 20


def test_quantisation_dtype_and_saturation() -> None:
    clean = np.random.default_rng(0).random((5, 20, 20), dtype=np.float32)
    eight = Detector(bare(bit_depth=8, dose=1000.0)).acquire(clean, rng=0)
    twelve = Detector(bare(bit_depth=12, dose=1e5)).acquire(clean, rng=0)
    assert eight.dtype == np.uint8 and twelve.dtype == np.uint16
    assert eight.max() == 255 and (eight == 255).mean() > 0.5
    assert twelve.max() == 4095 and (twelve == 4095).mean() > 0.5
    assert PRESETS["fast"].dtype == np.uint8 and PRESETS["high_res"].dtype == np.uint16


def test_clean_preset_only_quantises() -> None:
    clean = 3.0 * smooth_pattern()[None] - 1.0
    frames = Detector(preset("clean")).acquire(clean, rng=0)
    stretched = (clean - clean.min()) / (clean.max() - clean.min())
    assert np.abs(frames.astype(int) - np.rint(255 * stretched)).max() <= 1
    assert frames.min() == 0 and frames.max() == 255


def test_bin_patterns_sums_and_averages_blocks() -> None:
    patterns = np.arange(2 * 6 * 4, dtype=np.float32).reshape(2, 6, 4)
    summed = bin_patterns(patterns, 2, "sum")
    assert summed.shape == (2, 3, 2)
    assert summed[0, 0, 0] == patterns[0, :2, :2].sum()
    assert summed.sum() == patterns.sum()
    np.testing.assert_allclose(bin_patterns(patterns, 2, "mean"), summed / 4)
    with pytest.raises(PhysicsInputError, match="^binning:"):
        bin_patterns(patterns, 4)


@pytest.mark.parametrize("mode, level", [("sum", 4 * 40.0), ("mean", 40.0)])
def test_binned_camera_delivers_the_binned_dose(mode: str, level: float) -> None:
    params = bare(dose=40.0, shot_noise=True, binning=2, binning_mode=mode)
    frames = Detector(params).acquire(flat(50, 40, 60), rng=0)
    assert frames.shape == (50, 20, 30)
    assert frames.mean() == pytest.approx(level, rel=0.01)
    # k² sensor pixels summed: the relative noise falls by k whichever way they are reported
    assert frames.std() / frames.mean() == pytest.approx(1 / np.sqrt(4 * 40.0), rel=0.05)


def test_same_seed_same_frames_and_input_untouched() -> None:
    clean = np.stack([smooth_pattern()] * 8)
    before = clean.copy()
    params = dataclasses.replace(PRESETS["fast"], partial_fraction=0.5)
    a = Detector(params, seed=3).acquire(clean, rng=11)
    b = Detector(params, seed=3).acquire(clean, rng=11)
    c = Detector(params, seed=3).acquire(clean, rng=12)
    d = Detector(params, seed=4).acquire(clean, rng=11)
    np.testing.assert_array_equal(a, b)
    assert (a != c).mean() > 0.5
    assert (a != d).any()
    np.testing.assert_array_equal(clean, before)


def test_instance_stream_reproduces_from_the_seed() -> None:
    clean = np.stack([smooth_pattern()] * 4)
    first = [Detector(PRESETS["fast"], seed=5).acquire(clean) for _ in range(2)]
    detector = Detector(PRESETS["fast"], seed=5)
    calls = [detector.acquire(clean), detector.acquire(clean)]
    np.testing.assert_array_equal(first[0], calls[0])
    assert (calls[0] != calls[1]).any()


def test_partial_patterns_lose_signal_where_flagged() -> None:
    params = bare(dose=200.0, partial_dim=0.1)
    flagged = np.arange(40) % 4 == 0
    frames = Detector(params).acquire(flat(40, 40, 40), rng=0, partial=flagged)
    dark_share = (frames < 100).mean(axis=(1, 2))
    assert (dark_share[~flagged] == 0).all()
    assert (dark_share[flagged] > 0.1).all()


def test_partial_fraction_draws_that_share_of_patterns() -> None:
    params = bare(dose=200.0, partial_fraction=0.2, partial_dim=0.1)
    frames = Detector(params).acquire(flat(2000, 16, 16), rng=0)
    degraded = (frames < 100).any(axis=(1, 2))
    assert degraded.mean() == pytest.approx(0.2, abs=0.03)


def test_background_dome_and_its_variation() -> None:
    params = bare(background_amplitude=0.6, background_centre=(0.5, 0.5))
    still = Detector(params).acquire(flat(3, 41, 41), rng=0).astype(float)
    assert still[0, 20, 20] > 1.5 * still[0, 0, 0]
    np.testing.assert_array_equal(still[0], still[1])
    drifting = dataclasses.replace(params, background_variation=0.1)
    varying = Detector(drifting).acquire(flat(3, 41, 41), rng=0)
    assert np.abs(varying[0].astype(float) - varying[1]).mean() > 1.0


def test_presets_give_plausible_frames() -> None:
    clean = np.stack([smooth_pattern()] * 200)
    fast = Detector(PRESETS["fast"]).acquire(clean, rng=0)
    assert fast.shape == (200, 60, 60) and fast.dtype == np.uint8
    assert 60 < fast.mean() < 200 and (fast == 255).mean() < 0.01
    hires = Detector(PRESETS["high_res"]).acquire(np.stack([smooth_pattern(480, 480)] * 2), rng=0)
    assert hires.shape == (2, 480, 480) and hires.dtype == np.uint16
    assert (hires == PRESETS["high_res"].saturation).mean() < 0.01


@pytest.mark.parametrize("field, value", [
    ("name", ""),
    ("dose", -3.0),
    ("dose", float("nan")),
    ("exposure", "max"),
    ("shot_noise", "yes"),
    ("contrast", 0.0),
    ("contrast", 1.5),
    ("background_amplitude", 1.0),
    ("background_width", 0.0),
    ("background_centre", (0.5,)),
    ("background_variation", -0.1),
    ("blur_sigma", -1.0),
    ("gain", 0.0),
    ("offset", -1.0),
    ("read_noise", "3"),
    ("hot_fraction", 0.5),
    ("dead_fraction", -0.01),
    ("bit_depth", 17),
    ("bit_depth", 8.0),
    ("binning", 0),
    ("binning_mode", "median"),
    ("partial_fraction", 2.0),
    ("partial_dim", -0.5),
])
def test_bad_parameters_name_their_field(field: str, value: object) -> None:
    with pytest.raises(PhysicsInputError, match=f"^{field}:"):
        dataclasses.replace(PRESETS["fast"], **{field: value})


def test_bad_input_is_refused_by_name() -> None:
    detector = Detector(PRESETS["fast"])
    with pytest.raises(PhysicsInputError, match="^patterns:"):
        detector.acquire(np.ones((60, 60), dtype=np.float32))
    with pytest.raises(PhysicsInputError, match="^patterns:"):
        detector.acquire(np.full((2, 8, 8), np.nan, dtype=np.float32))
    with pytest.raises(PhysicsInputError, match="^partial:"):
        detector.acquire(flat(3), partial=np.ones(2, dtype=bool))
    with pytest.raises(PhysicsInputError, match="^preset:"):
        preset("hubble")
    with pytest.raises(PhysicsInputError, match="^dose:"):
        preset("fast", dose=0)
