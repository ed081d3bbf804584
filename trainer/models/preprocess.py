"""Background removal and per-pattern normalisation, the first layer of every diffstream
network.

It lives inside the network (and so inside the exported ONNX graph, DESIGN.md) so that raw
detector integers go in and every backend computes exactly what training saw.

- Dynamic background removal, as EBSD indexing does before anything else (kikuchipy's
  ``remove_dynamic_background``, which subtracts a Gaussian blur of width/8 by default):
  the backscatter dome and its drift are smooth and as strong as the Kikuchi bands, so
  subtracting a wide Gaussian blur of the frame leaves the bands. A network of a few 3×3
  layers would otherwise spend its capacity learning this high-pass.
- Subtracting each pattern's mean and dividing by its standard deviation removes the
  camera's gain, offset and exposure, which vary between microscopes and sessions.
"""
from __future__ import annotations

import math

import torch
from torch import nn

VARIANCE_FLOOR = 1e-3
"""Added to the variance (in squared detector counts) so that a constant frame, such as a
blanked beam, normalises to zeros instead of dividing by zero."""

BACKGROUND_SIGMA = 0.125
"""Width of the background blur as a fraction of the frame width (kikuchipy's default)."""


def gaussian_kernel(sigma: float) -> torch.Tensor:
    """A normalised 1-D Gaussian of radius 3σ."""
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    return (kernel / kernel.sum()).to(torch.float32)


def separable_blur(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """(N, 1, h, w) convolved with a 1-D kernel along rows, then along columns (views
    (1, 1, k, 1) and (1, 1, 1, k) of ``gaussian_kernel``), edges extended (replicate padding)
    so that the frame's border is not darkened."""
    r = rows.shape[2] // 2
    x = nn.functional.conv2d(nn.functional.pad(x, (0, 0, r, r), mode="replicate"), rows)
    return nn.functional.conv2d(nn.functional.pad(x, (r, r, 0, 0), mode="replicate"), cols)


class PatternNormalise(nn.Module):
    """Raw frames (N, H, W) of any integer or float dtype → float32 (N, 1, h, w): resized
    (bilinear) to ``input_size`` when it differs, background removed, then each pattern at
    zero mean and unit variance."""

    channels = 1
    """Images per frame that the backbone receives."""

    def __init__(self, input_size: tuple[int, int], background_sigma: float = BACKGROUND_SIGMA) -> None:
        super().__init__()
        self.input_size = tuple(int(n) for n in input_size)
        self.sigma_px = background_sigma * self.input_size[1]
        self.register_gaussian("blur", self.sigma_px)

    def register_gaussian(self, name: str, sigma_px: float) -> None:
        """``gaussian_kernel(sigma_px)`` as the row and column kernels ``separable_blur``
        takes, buffers ``NAME_rows`` and ``NAME_cols`` (not saved: rebuilt from the size)."""
        kernel = gaussian_kernel(sigma_px)
        self.register_buffer(f"{name}_rows", kernel.view(1, 1, -1, 1), persistent=False)
        self.register_buffer(f"{name}_cols", kernel.view(1, 1, 1, -1), persistent=False)

    def background(self, x: torch.Tensor) -> torch.Tensor:
        """The wide Gaussian blur of (N, 1, h, w) that stands for the backscatter dome."""
        return separable_blur(x, self.blur_rows, self.blur_cols)

    def describe(self) -> str:
        """What this layer does, in words, for the model card."""
        return f"{self.background_text()}; {STANDARDISE_TEXT}"

    def background_text(self) -> str:
        """The resize and the background removal, in words."""
        return (f"{_resize_text(self.input_size)}; subtract the dynamic background, a Gaussian blur of sigma "
                f"{self.sigma_px:.1f} px (frame width / 8, as kikuchipy's remove_dynamic_background)")

    def bands(self, frames: torch.Tensor) -> torch.Tensor:
        """Raw frames (N, H, W) → float32 (N, 1, h, w) at the input size, background removed."""
        x = frames.to(torch.float32).unsqueeze(1)
        if tuple(x.shape[-2:]) != self.input_size:
            x = nn.functional.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)
        return x - self.background(x)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return standardise(self.bands(frames))


class LocalContrastNormalise(PatternNormalise):
    """``PatternNormalise`` with each pixel's band signal divided by its neighbourhood's RMS
    before the per-pattern standardisation: every band then stands out about equally, weak
    or strong, as adaptive histogram equalisation (kikuchipy's
    ``adaptive_histogram_equalization``, context 1/8 of the frame) makes them for indexing.

    Why: with two training materials per lattice, a network learns their band intensities,
    which depend on the atoms, rather than the band geometry, which depends on the lattice.
    Equalised bands leave it mostly the geometry."""

    def __init__(self, input_size: tuple[int, int]) -> None:
        super().__init__(input_size)
        self.local_sigma_px = LOCAL_SIGMA * self.input_size[1]
        self.register_gaussian("local", self.local_sigma_px)

    def local_power(self, x: torch.Tensor) -> torch.Tensor:
        """Gaussian-weighted mean of x² around each pixel."""
        return separable_blur(x * x, self.local_rows, self.local_cols)

    def describe(self) -> str:
        """What this layer does, in words, for the model card."""
        return (f"{self.background_text()}; divide each pixel by sqrt of its neighbourhood's mean square (a "
                f"Gaussian of sigma {self.local_sigma_px:.1f} px, frame width / 16) plus {LOCAL_FLOOR:g} count^2 "
                f"(equalises band contrast, as adaptive histogram equalisation); {STANDARDISE_TEXT}")

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = self.bands(frames)
        return standardise(x * torch.rsqrt(self.local_power(x) + LOCAL_FLOOR))


LOCAL_SIGMA = 1 / 16
"""Neighbourhood of the local contrast normalisation as a fraction of the frame width:
a Gaussian of this σ weighs about the 1/8-frame context that kikuchipy's adaptive histogram
equalisation uses by default, a few band widths at 20 kV."""

LOCAL_FLOOR = 1.0
"""Added to the local power, in squared detector counts: differences below one count (the
detector's quantisation step) carry no band, so flat, noise-free regions stay flat instead
of being blown up."""


STANDARDISE_TEXT = (f"per pattern subtract the mean and divide by sqrt(variance + {VARIANCE_FLOOR:g}) "
                    "(removes gain, offset and exposure)")


def standardise(x: torch.Tensor) -> torch.Tensor:
    """Each pattern of (N, 1, h, w) at zero mean and unit variance (removes gain, offset and
    exposure)."""
    centred = x - x.mean(dim=(2, 3), keepdim=True)
    variance = (centred * centred).mean(dim=(2, 3), keepdim=True)
    return centred * torch.rsqrt(variance + VARIANCE_FLOOR)


class LogUnitScale(nn.Module):
    """Paper 2's preprocessing for SPED frames, as ``physics.sped.log_unit_scale`` does it:
    raw counts (N, H, W) → float32 (N, 1, h, w), resized (bilinear) to ``input_size`` when it
    differs, log(1 + counts), then each pattern linearly onto [0, 1] (a constant frame gives
    zeros). The log lets weak high-order spots, which carry the orientation, compete with
    the direct beam."""

    channels = 1

    def __init__(self, input_size: tuple[int, int]) -> None:
        super().__init__()
        self.input_size = tuple(int(n) for n in input_size)

    def describe(self) -> str:
        """What this layer does, in words, for the model card."""
        return (f"{_resize_text(self.input_size)}; log(1 + counts); each pattern linearly onto [0, 1] "
                "(paper 2's preprocessing)")

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.to(torch.float32).unsqueeze(1)
        if tuple(x.shape[-2:]) != self.input_size:
            x = nn.functional.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False)
        x = torch.log1p(torch.relu(x))
        low = x.amin(dim=(2, 3), keepdim=True)
        span = x.amax(dim=(2, 3), keepdim=True) - low
        return (x - low) / span.clamp_min(SPAN_FLOOR)


class FriedelPairs(LogUnitScale):
    """``LogUnitScale``'s image x and, as a second channel, its part that is odd under a
    half turn about the frame centre, x − x turned by 180° (both (N, 1, h, w), stacked to
    (N, 2, h, w)).

    Why: on a flat Ewald sphere Friedel's law would make a spot pattern its own half turn.
    The sphere's curvature excites the spots on one side of the Laue circle more than their
    Friedel mates opposite, and that imbalance says which way the crystal is tilted off its
    zone axis; in simulated LiNiO2 frames the odd part holds about 0.7 of the image's RMS
    (tests/trainer/test_augment.py). The comparison lies between opposite sides of the
    frame, which a small convolutional network reaches only after pooling has blurred where
    things are; the odd part puts each spot beside its mate's intensity from the first
    layer. It adds no information (the orientation turned by 180° about the beam has this
    frame turned, and both channels with it), but it makes the difference easy to learn:
    with it the shipped grid network learnt to tell that twin apart, and its median
    disorientation fell from 43.5° to 6.4° (docs/models.md, "The Friedel channel"). It
    needs the direct beam at the frame centre, as the simulated and detector-sim frames
    have it."""

    channels = 2

    def describe(self) -> str:
        """What this layer does, in words, for the model card."""
        return (f"{super().describe()}; a second channel x - (x turned by 180 degrees about the frame centre), the "
                "part odd under the half turn, each spot beside its Friedel mate (direct beam at the frame centre)")

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = super().forward(frames)
        return torch.cat((x, x - torch.flip(x, dims=(2, 3))), dim=1)


SPAN_FLOOR = 1e-6
"""Below any real span of log counts (log 2 ≈ 0.69 for one count), so only a constant frame
is affected, and it maps to zeros."""

def _resize_text(size: tuple[int, int]) -> str:
    return (f"resize (bilinear) to {size[0]}x{size[1]} if the frame differs "
            "(a frame of twice the size becomes the mean of each 2x2 block)")


PREPROCESSORS = {"background": PatternNormalise, "background-local": LocalContrastNormalise,
                 "log-unit": LogUnitScale, "log-unit-friedel": FriedelPairs}
"""The ``preprocess`` option of ``build_model``: EBSD's background removal and
standardisation (the default), the same with local contrast equalised, or paper 2's log
scaling to [0, 1] for SPED, alone or with its part odd under a half turn about the beam."""
