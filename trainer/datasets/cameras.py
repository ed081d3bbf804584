"""Random cameras for training data, and frames with no pattern in them.

A network trained on one camera setting learns that setting's noise and background. Live,
the dose, contrast, blur and background change with the microscope, the specimen and the
operator, so training frames come from cameras drawn around the ``fast`` preset (the live
demo's camera) over a realistic range, plus a share from a ``high_res``-like camera (many
electrons, weak contrast) delivered as 8-bit frames. The ``demo`` kind is the ``fast``
preset itself, unchanged, for the demo test.

Frames without a pattern (beam off the specimen, a hole, an amorphous or contaminated spot,
a broken read-out) train the usable output to 0: the same cameras imaging a flat or a
smooth random field (``empty_fields``), and plain noise (``noise_frames``).
"""
from __future__ import annotations

import dataclasses

import numpy as np
from scipy import ndimage

from diffstream.trainer.physics.detector_model import DetectorParams, preset

UINT8_MAX = 255


def random_camera(rng: np.random.Generator, high_res_fraction: float) -> DetectorParams:
    """One camera drawn for a block of training frames; always 8 bits, as the stream sends.

    The gain is drawn so that the mean level lands between 50 and 170 counts (cameras are
    set up to use their range), which makes saturation of bright zone axes occur sometimes,
    as it does live."""
    if rng.random() < high_res_fraction:
        dose = float(np.exp(rng.uniform(np.log(500.0), np.log(4000.0))))
        params = preset(
            "high_res", dose=dose, contrast=rng.uniform(0.1, 0.25), blur_sigma=rng.uniform(0.2, 0.8),
            bit_depth=8, offset=rng.uniform(0.0, 10.0), read_noise=rng.uniform(0.5, 2.0),
        )
    else:
        dose = float(np.exp(rng.uniform(np.log(25.0), np.log(300.0))))
        params = preset(
            "fast", dose=dose, contrast=rng.uniform(0.2, 0.6), blur_sigma=rng.uniform(0.3, 1.2),
            background_amplitude=rng.uniform(0.3, 0.8), background_width=rng.uniform(0.3, 0.6),
            background_centre=(rng.uniform(0.4, 0.6), rng.uniform(0.25, 0.5)),
            background_variation=rng.uniform(0.0, 0.1), offset=rng.uniform(0.0, 10.0),
            read_noise=rng.uniform(0.5, 3.0),
        )
    return dataclasses.replace(params, gain=rng.uniform(50.0, 170.0) / params.dose)


def demo_camera() -> DetectorParams:
    """The live demo's camera: the ``fast`` preset as the detector simulator uses it."""
    return preset("fast")


def empty_fields(n: int, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """``n`` clean (float32) scenes without a Kikuchi pattern, for a camera to image: two
    thirds a flat field (the camera adds its dome, noise and bad pixels), one third a smooth
    random field (topography, amorphous material)."""
    fields = np.ones((n, *shape), dtype=np.float32)
    for i in np.flatnonzero(rng.random(n) < 1 / 3):
        fields[i] = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), rng.uniform(2.0, 10.0))
    return fields


def noise_frames(n: int, shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """``n`` uint8 frames of plain Gaussian noise at a random level, one in ten constant (a
    broken or blanked read-out)."""
    level = rng.uniform(5.0, 200.0, (n, 1, 1))
    spread = rng.uniform(0.0, 40.0, (n, 1, 1)) * (rng.random((n, 1, 1)) > 0.1)
    values = level + spread * rng.standard_normal((n, *shape))
    return np.clip(np.rint(values), 0, UINT8_MAX).astype(np.uint8)
