"""What a camera makes of a clean simulated pattern.

Simulated intensities (kinematical or dynamical) have an arbitrary scale and none of the
faults of a real detector, so a network trained on them alone learns a world it never sees
live. ``Detector.acquire`` turns a batch of clean patterns into the integers a camera
delivers: a backscatter dome and its drift from pattern to pattern, shot noise at a set
dose, the blur of the phosphor, gain, offset and read noise, binning, quantisation with
saturation, fixed hot and dead pixels, and a share of partial patterns (occluded or dim,
as next to holes, edges and grain boundaries).

The order follows the physics, with one exchange made for speed: every stage after the
expected signal runs at the *output* resolution. Binning is linear and the sum of k² Poisson
counts is Poisson with the summed mean, so binning the expected signal before drawing the
noise is exact; blurring the binned counts with the PSF width divided by k instead of
blurring before binning differs only by the box filter of the bins.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

import numpy as np
from scipy import ndimage

from .errors import PhysicsInputError, check_choice, check_integer, check_number

GAUSSIAN_SHOT_NOISE_ABOVE = 20.0
"""Mean electron count above which shot noise is drawn as a Gaussian of the same mean and
variance. numpy's Poisson sampler costs ~60 ns a draw, which alone would exceed the time
budget of a fast camera's pattern; the skewness left out (at most 1/sqrt(20) ≈ 0.22) is
small beside what the model leaves out anyway, such as the phosphor's excess noise."""

_CHUNK_PIXELS = 1 << 17
"""Output pixels processed at once (36 patterns of 60×60): bounds the work buffers at
1.5 MiB whatever the batch, and is past the size below which per-call overhead shows
(measured flat from 2**16 to 2**19 pixels)."""

_NOISE_STREAM, _DEFECT_STREAM = 1, 2


@dataclass(frozen=True)
class DetectorParams:
    """One camera model. Every field is checked on construction; a bad one raises
    ``PhysicsInputError`` naming it.

    Intensities: the clean pattern is rescaled per pattern to [0, 1] (its scale carries no
    physics), ``contrast`` of it rides on a flat level (raw Kikuchi bands are a modulation of
    the backscatter, not the whole signal), and the product with the background is scaled so
    that ``dose`` electrons fall on the mean (``exposure="mean"``) or brightest
    (``exposure="peak"``, what a camera's auto-exposure does) sensor pixel.
    """

    name: str
    dose: float
    """Electrons per sensor pixel (before binning), mean or peak as ``exposure`` says."""
    exposure: Literal["mean", "peak"] = "mean"
    shot_noise: bool = True
    contrast: float = 0.25
    stretch: Literal["spread", "range"] = "spread"
    """How the clean pattern is normalised before ``contrast`` applies: by its mean and
    standard deviation, with bright zone axes saturated (see ``_stretch``), or by its
    extremes onto [0, 1] (for quantising a clean pattern over the full range)."""
    """Share of the signal modulated by the Kikuchi pattern, in (0, 1]."""
    background_amplitude: float = 0.5
    """Depth of the static backscatter dome: 0 is flat, 0.9 takes the far edges down to
    about 10 % of the centre."""
    background_width: float = 0.4
    """Standard deviation of the dome as a fraction of the pattern width."""
    background_centre: tuple[float, float] = (0.5, 0.35)
    """Dome centre (x, y) as fractions of width and height from the top-left corner."""
    background_variation: float = 0.0
    """RMS relative amplitude of a smooth quadratic background drawn anew for each pattern
    (specimen tilt, topography, beam current drift)."""
    blur_sigma: float = 0.0
    """Gaussian PSF standard deviation in sensor pixels."""
    gain: float = 1.0
    """Counts per electron."""
    offset: float = 0.0
    """Counts added to every pixel (the camera's black level)."""
    read_noise: float = 0.0
    """Standard deviation of the read noise per output pixel, in counts."""
    hot_fraction: float = 0.0
    dead_fraction: float = 0.0
    bit_depth: int = 8
    """Saturation at 2**bit_depth - 1; delivered as uint8 up to 8 bits, uint16 above."""
    binning: int = 1
    binning_mode: Literal["sum", "mean"] = "sum"
    partial_fraction: float = 0.0
    """Share of patterns, drawn at random, that come out occluded or dim."""
    partial_dim: float = 0.1
    """Signal left in the occluded part, or in the whole of a dim pattern."""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise PhysicsInputError(f"name: must be a non-empty string, got {self.name!r}")
        check_number("dose", self.dose, 0.0, 1e9, "electrons per pixel", low_open=True)
        check_choice("exposure", self.exposure, ("mean", "peak"))
        check_choice("stretch", self.stretch, ("spread", "range"))
        if not isinstance(self.shot_noise, bool):
            raise PhysicsInputError(f"shot_noise: must be True or False, got {self.shot_noise!r}")
        check_number("contrast", self.contrast, 0.0, 1.0, "", low_open=True)
        check_number("background_amplitude", self.background_amplitude, 0.0, 0.95, "")
        check_number("background_width", self.background_width, 0.0, 10.0, "", low_open=True)
        _check_centre(self.background_centre)
        centre = tuple(float(c) for c in self.background_centre)
        object.__setattr__(self, "background_centre", centre)
        check_number("background_variation", self.background_variation, 0.0, 0.5, "")
        check_number("blur_sigma", self.blur_sigma, 0.0, 50.0, "pixels")
        check_number("gain", self.gain, 0.0, 1e6, "counts per electron", low_open=True)
        check_number("offset", self.offset, 0.0, 65535.0, "counts")
        check_number("read_noise", self.read_noise, 0.0, 65535.0, "counts")
        check_number("hot_fraction", self.hot_fraction, 0.0, 0.1, "")
        check_number("dead_fraction", self.dead_fraction, 0.0, 0.1, "")
        check_integer("bit_depth", self.bit_depth, 1, 16)
        check_integer("binning", self.binning, 1, 32)
        check_choice("binning_mode", self.binning_mode, ("sum", "mean"))
        check_number("partial_fraction", self.partial_fraction, 0.0, 1.0, "")
        check_number("partial_dim", self.partial_dim, 0.0, 1.0, "")

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8 if self.bit_depth <= 8 else np.uint16)

    @property
    def saturation(self) -> int:
        return 2**self.bit_depth - 1





def _check_centre(centre: object) -> None:
    if not isinstance(centre, (tuple, list)) or len(centre) != 2:
        raise PhysicsInputError(f"background_centre: must be a pair (x, y), got {centre!r}")
    for value in centre:
        check_number("background_centre", value, -10.0, 10.0, "pattern widths")


PRESETS: Mapping[str, DetectorParams] = MappingProxyType({
    # A fast CMOS EBSD camera in its speed mode (thousands of patterns/s): on-chip binning
    # already done, so the 60×60 or 80×80 simulated pattern is the delivered frame; few
    # electrons, 8 bits, visible dome and drift, a little blur and a few bad pixels.
    "fast": DetectorParams(
        name="fast", dose=80.0, contrast=0.4, background_amplitude=0.6,
        background_width=0.4, background_variation=0.05, blur_sigma=0.7, gain=1.8,
        offset=4.0, read_noise=1.5, hot_fraction=5e-4, dead_fraction=5e-4, bit_depth=8,
        partial_fraction=0.03,
    ),
    # A high-resolution camera (e.g. 480×480, frame averaging, 16 bits): many electrons,
    # lower relative band contrast, a wider PSF in pixels, a gentle drift.
    "high_res": DetectorParams(
        name="high_res", dose=2000.0, contrast=0.15, background_amplitude=0.5,
        background_width=0.45, background_variation=0.03, blur_sigma=1.5, gain=10.0,
        offset=100.0, read_noise=8.0, hot_fraction=1e-4, dead_fraction=1e-4, bit_depth=16,
        partial_fraction=0.02,
    ),
    # Quantisation alone: the clean pattern stretched over the full 8-bit range.
    "clean": DetectorParams(
        name="clean", dose=255.0, exposure="peak", shot_noise=False, contrast=1.0, stretch="range",
        background_amplitude=0.0, bit_depth=8,
    ),
})


def preset(name: str, **overrides: object) -> DetectorParams:
    """A named camera, with any field replaced (and validated again)."""
    try:
        base = PRESETS[name]
    except KeyError:
        raise PhysicsInputError(
            f"preset: unknown detector preset {name!r}; known: {', '.join(PRESETS)}") from None
    return dataclasses.replace(base, **overrides) if overrides else base


def bin_patterns(patterns: np.ndarray, k: int, mode: Literal["sum", "mean"] = "sum",
                 out: np.ndarray | None = None) -> np.ndarray:
    """Sum or average k×k blocks of (N, h, w) patterns as float32; h and w must divide by k.

    Adds whole slices, k rows then k columns, because numpy's reduction over the two
    strided block axes at once runs about five times slower (measured on 240×240 → 60×60).
    """
    n, h, w = patterns.shape
    if h % k or w % k:
        raise PhysicsInputError(f"binning: pattern shape {h}×{w} does not divide by {k}")
    blocks = patterns.reshape(n, h // k, k, w // k, k)
    rows = blocks[:, :, 0].astype(np.float32)
    for i in range(1, k):
        rows += blocks[:, :, i]
    binned = np.empty((n, h // k, w // k), dtype=np.float32) if out is None else out
    np.copyto(binned, rows[..., 0])
    for j in range(1, k):
        binned += rows[..., j]
    if mode == "mean":
        binned /= np.float32(k * k)
    return binned


@dataclass(frozen=True)
class Defects:
    """The bad pixels of one detector at one output shape, as flat pixel indices."""

    hot: np.ndarray
    hot_counts: np.ndarray
    dead: np.ndarray


class Detector:
    """One camera instance: its parameters and the defects drawn from its seed.

    Hot and dead pixels belong to the sensor, so they are fixed per instance (and output
    shape) and identical in every pattern it acquires; noise is drawn afresh per call.
    """

    def __init__(self, params: DetectorParams, seed: int = 0) -> None:
        self.params = params
        self.seed = seed
        self._rng = np.random.default_rng((seed, _NOISE_STREAM))
        self._defects: dict[tuple[int, int], Defects] = {}

    def output_shape(self, pattern_shape: tuple[int, int]) -> tuple[int, int]:
        h, w = pattern_shape
        k = self.params.binning
        if h % k or w % k:
            raise PhysicsInputError(f"binning: pattern shape {h}×{w} does not divide by {k}")
        return h // k, w // k

    def defects(self, output_shape: tuple[int, int]) -> Defects:
        """Exactly round(fraction × pixels) hot and dead pixels, disjoint, from the seed."""
        if output_shape not in self._defects:
            self._defects[output_shape] = self._draw_defects(output_shape)
        return self._defects[output_shape]

    def _draw_defects(self, shape: tuple[int, int]) -> Defects:
        rng = np.random.default_rng((self.seed, _DEFECT_STREAM, *shape))
        npix = shape[0] * shape[1]
        n_hot = round(self.params.hot_fraction * npix)
        n_dead = round(self.params.dead_fraction * npix)
        chosen = rng.choice(npix, size=n_hot + n_dead, replace=False)
        levels = rng.uniform(0.5, 1.0, n_hot) * self.params.saturation
        return Defects(hot=chosen[:n_hot], hot_counts=np.rint(levels).astype(self.params.dtype),
                       dead=chosen[n_hot:])

    def acquire(self, clean: np.ndarray, rng: np.random.Generator | int | None = None,
                partial: np.ndarray | None = None) -> np.ndarray:
        """Camera frames (N, h/k, w/k) of ``params.dtype`` from clean (N, h, w) patterns.

        ``rng`` draws the noise (a seed or Generator makes a call reproducible; None uses
        the instance's own stream). ``partial`` marks which patterns to degrade, e.g. from
        a specimen's boundary mask; None draws them at ``params.partial_fraction``.
        ``clean`` is never written to.
        """
        clean = _check_patterns(clean)
        rng = self._rng if rng is None else np.random.default_rng(rng)
        partial = self._partial_flags(len(clean), rng, partial)
        shape = self.output_shape(clean.shape[1:])
        out = np.empty((len(clean), *shape), dtype=self.params.dtype)
        chunk = min(len(clean), max(1, _CHUNK_PIXELS // (shape[0] * shape[1])))
        workspace = np.empty((3, chunk, *shape), dtype=np.float32)
        for start in range(0, len(clean), chunk):
            stop = min(start + chunk, len(clean))
            self._acquire_chunk(clean[start:stop], rng, partial[start:stop],
                                workspace[:, : stop - start], out[start:stop])
        self._apply_defects(out)
        return out

    def _partial_flags(self, n: int, rng: np.random.Generator,
                       partial: np.ndarray | None) -> np.ndarray:
        if partial is None:
            return rng.random(n) < self.params.partial_fraction
        partial = np.asarray(partial)
        if partial.shape != (n,) or partial.dtype != bool:
            raise PhysicsInputError(
                f"partial: must be a boolean array of shape ({n},), "
                f"got {partial.dtype} {partial.shape}")
        return partial

    def _acquire_chunk(self, clean: np.ndarray, rng: np.random.Generator, partial: np.ndarray,
                       workspace: np.ndarray, out: np.ndarray) -> None:
        """One chunk into ``out``, every stage writing into the three workspace buffers:
        fresh multi-megabyte temporaries would cost a page fault per 4 KiB each time."""
        p = self.params
        signal, spare, scratch = workspace
        self._expected_electrons(clean, rng, signal, scratch)
        if partial.any():
            signal[partial] *= self._partial_masks(int(partial.sum()), signal.shape[1:], rng)
        counts = signal
        if p.shot_noise:
            counts, spare = _shot_noise(signal, rng, spare, scratch), signal
        if p.blur_sigma > 0:
            sigma = p.blur_sigma / p.binning
            ndimage.gaussian_filter(counts, (0, sigma, sigma), mode="nearest", truncate=3.0,
                                    output=scratch)
            counts, spare = scratch, counts
        counts *= np.float32(p.gain / p.binning**2 if p.binning_mode == "mean" else p.gain)
        if p.read_noise > 0:
            rng.standard_normal(dtype=np.float32, out=spare)
            spare *= np.float32(p.read_noise)
            counts += spare
        counts += np.float32(p.offset)
        np.rint(counts, out=counts)
        np.clip(counts, 0, p.saturation, out=counts)
        np.copyto(out, counts, casting="unsafe")

    def _expected_electrons(self, clean: np.ndarray, rng: np.random.Generator,
                            signal: np.ndarray, scratch: np.ndarray) -> None:
        """Into ``signal``, the mean electrons per output pixel: the stretched pattern times
        the backgrounds, scaled to the dose of the k² sensor pixels behind each one."""
        p = self.params
        k = p.binning
        if k > 1:
            bin_patterns(clean, k, "mean", out=signal)
        else:
            np.copyto(signal, clean, casting="unsafe")
        _stretch(signal, p.contrast, p.stretch)
        signal *= _dome(p, signal.shape[1:])
        if p.background_variation > 0:
            signal *= self._background_variation(len(signal), rng, scratch)
        level = signal.max(axis=(1, 2)) if p.exposure == "peak" else signal.mean(axis=(1, 2))
        signal *= (np.float32(p.dose * k * k) / level)[:, None, None]

    def _background_variation(self, n: int, rng: np.random.Generator,
                              out: np.ndarray) -> np.ndarray:
        """1 + a random quadratic per pattern, into ``out``; the basis has unit RMS so that
        the RMS of the variation is the parameter.

        einsum, not matmul: OpenBLAS spreads so small a product over its thread pool and
        spends ~30× the arithmetic (measured) waking and spinning the threads.
        """
        coeffs = rng.standard_normal((n, 5), dtype=np.float32)
        coeffs *= np.float32(self.params.background_variation / math.sqrt(5))
        np.einsum("nk,kp->np", coeffs, _variation_basis(out.shape[1:]), out=out.reshape(n, -1))
        out += np.float32(1)
        return np.maximum(out, np.float32(0.05), out=out)

    def _partial_masks(self, n: int, shape: tuple[int, int],
                       rng: np.random.Generator) -> np.ndarray:
        """Half the partial patterns are dim all over, half lose a random half-plane (an edge
        of the specimen or a shadow) down to ``partial_dim``."""
        x, y = _grid(shape)
        angle = rng.uniform(0, 2 * np.pi, n).astype(np.float32)[:, None, None]
        edge = rng.uniform(-0.6, 0.6, n).astype(np.float32)[:, None, None]
        occluded = np.cos(angle) * x + np.sin(angle) * y > edge
        dim_all = (rng.random(n) < 0.5)[:, None, None]
        return np.where(occluded | dim_all, np.float32(self.params.partial_dim), np.float32(1))

    def _apply_defects(self, frames: np.ndarray) -> None:
        defects = self.defects(frames.shape[1:])
        flat = frames.reshape(len(frames), -1)
        flat[:, defects.dead] = 0
        flat[:, defects.hot] = defects.hot_counts


@functools.lru_cache(maxsize=16)
def _grid(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates in [-1, 1], x along the width (cached, read-only)."""
    y, x = (np.linspace(-1 + 1 / n, 1 - 1 / n, n, dtype=np.float32) for n in shape)
    return _read_only(*np.meshgrid(x, y))


@functools.lru_cache(maxsize=16)
def _variation_basis(shape: tuple[int, int]) -> np.ndarray:
    """x, y, x², xy, y² over the pattern, each zero-mean with unit RMS, as (5, h·w)."""
    x, y = _grid(shape)
    basis = np.stack([x, y, x * x, x * y, y * y]).reshape(5, -1)
    basis -= basis.mean(axis=1, keepdims=True)
    basis /= np.sqrt((basis**2).mean(axis=1, keepdims=True))
    return _read_only(basis)[0]


@functools.lru_cache(maxsize=16)
def _dome(params: DetectorParams, shape: tuple[int, int]) -> np.ndarray:
    """The static backscatter dome, (1 - a) + a·Gaussian, fixed by the parameters alone."""
    x, y = _grid(shape)
    cx, cy = (2 * c - 1 for c in params.background_centre)
    r2 = (x - cx) ** 2 + (y - cy) ** 2
    gauss = np.exp(-r2 / (2 * (2 * params.background_width) ** 2))
    amplitude = params.background_amplitude
    return _read_only(((1 - amplitude) + amplitude * gauss).astype(np.float32))[0]


def _read_only(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Cached arrays are shared between calls, so they must not be written to."""
    for array in arrays:
        array.setflags(write=False)
    return arrays


def _check_patterns(clean: np.ndarray) -> np.ndarray:
    clean = np.asarray(clean)
    if clean.ndim != 3 or min(clean.shape) == 0:
        raise PhysicsInputError(
            f"patterns: must be a non-empty (N, h, w) array, got shape {clean.shape}")
    if not (np.issubdtype(clean.dtype, np.floating) or np.issubdtype(clean.dtype, np.integer)):
        raise PhysicsInputError(f"patterns: must be real numbers, got dtype {clean.dtype}")
    return clean


def _stretch(signal: np.ndarray, contrast: float, mode: str) -> None:
    """In place: each pattern onto a flat level of 1 modulated by ``contrast``.

    ``mode="range"`` maps the extremes onto [1 − contrast, 1]. ``mode="spread"`` maps the
    pattern to 1 + contrast·tanh(z / 3), z = (pattern − mean) / std. Camera presets use the
    spread: kinematical master patterns pile band intensities up at zone axes (z of 10 and
    more), and an extremes stretch hands the whole contrast to those few bright spots,
    burying the bands in shot noise; the tanh keeps bands (|z| ≲ 2) nearly linear and
    saturates zone axes, as the dynamical intensities of real patterns do. A flat pattern
    becomes flat 1; NaN or inf anywhere is refused (checked on the per-pattern statistics).
    """
    if mode == "range":
        low = signal.min(axis=(1, 2))
        width = signal.max(axis=(1, 2)) - low
    else:
        low = signal.mean(axis=(1, 2), dtype=np.float64)
        width = 3 * signal.std(axis=(1, 2), dtype=np.float64)
    if not (np.isfinite(low).all() and np.isfinite(width).all()):
        raise PhysicsInputError("patterns: contain NaN or infinite values")
    flat = width == 0
    signal -= low.astype(np.float32)[:, None, None]
    signal *= np.where(flat, 0, 1 / np.where(flat, 1, width)).astype(np.float32)[:, None, None]
    if mode == "spread":
        np.tanh(signal, out=signal)
    signal *= np.float32(contrast)
    signal += np.float32(1 - contrast if mode == "range" else 1)
    signal[flat] = 1


def _shot_noise(expected: np.ndarray, rng: np.random.Generator, out: np.ndarray,
                scratch: np.ndarray) -> np.ndarray:
    """Poisson counts into ``out``: exact below ``GAUSSIAN_SHOT_NOISE_ABOVE`` electrons,
    Gaussian with the same mean and variance above."""
    rng.standard_normal(dtype=np.float32, out=out)
    out *= np.sqrt(expected, out=scratch)
    out += expected
    if expected.min() < GAUSSIAN_SHOT_NOISE_ABOVE:
        low = np.flatnonzero(expected < GAUSSIAN_SHOT_NOISE_ABOVE)
        out.flat[low] = rng.poisson(expected.flat[low])
    return out
