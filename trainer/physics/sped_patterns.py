"""Sets of simulated SPED / 4D-STEM patterns with their orientations, and their files.

On disk a set is a HyperSpy ``.hspy`` file, which HyperSpy and pyxem users open directly:
the frames as a ``Signal2D`` with axes calibrated in Å⁻¹, and the orientations, phase and
microscope settings in its metadata under ``Simulation``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from orix.crystal_map import Phase
from orix.quaternion import Rotation

from .catalogue import get_phase_entry
from .errors import PhysicsInputError
from .files import atomic_output
from .sampling import random_rotations
from .sped import RenderSettings, render_patterns, simulate_spots
from .sped_geometry import SpedGeometry

DEFAULT_VOLTAGE_KV = 300.0
"""Paper 2's JEOL 3010."""


@dataclass(frozen=True)
class SpedPatternSet:
    """Frames (N, rows, cols) in expected electrons per pixel, with what made them."""

    patterns: np.ndarray
    rotations: Rotation
    phase: Phase
    geometry: SpedGeometry
    settings: RenderSettings


def simulate_sped_patterns(
    phase: str,
    n: int,
    size: int,
    *,
    clean: bool = False,
    seed: int = 0,
    voltage_kv: float = DEFAULT_VOLTAGE_KV,
    calibration: float | None = None,
    precession_deg: float = 0.6,
) -> SpedPatternSet:
    """``n`` patterns of ``phase`` at uniformly random orientations drawn from ``seed``.

    ``calibration`` (Å⁻¹ per pixel) defaults to the one that gives a 128-pixel detector
    paper 2's reach, scaled so smaller detectors see the same reflections more coarsely.
    Clean patterns have neither diffuse background nor shot noise.
    """
    rotations = random_rotations(n, seed)
    if calibration is None:
        calibration = SpedGeometry().calibration * SpedGeometry().shape[0] / size
    geometry = SpedGeometry(
        voltage_kv=voltage_kv, calibration=calibration, shape=(size, size), precession_deg=precession_deg
    )
    settings = RenderSettings(poisson=False, background_fraction=0.0) if clean else RenderSettings(poisson=True)
    phase_obj = get_phase_entry(phase).full_phase()
    spots = simulate_spots(phase_obj, rotations, geometry)
    patterns = render_patterns(spots, geometry, settings, rng=seed)
    return SpedPatternSet(patterns, rotations, phase_obj, geometry, settings)


def write_hspy(pattern_set: SpedPatternSet, path: str | Path, scan_shape: tuple[int, int] | None = None) -> Path:
    """Write a HyperSpy ``.hspy`` file (see the module docstring for its layout); with
    ``scan_shape`` (rows, cols) the patterns, in row-major order, form a 4D-STEM scan grid
    instead of a list."""
    import hyperspy.api as hs

    path = Path(path)
    if path.suffix.lower() != ".hspy":
        raise PhysicsInputError(f"out: {path} must end in .hspy for 4D-STEM patterns (HyperSpy)")
    n = len(pattern_set.patterns)
    if scan_shape is not None and (len(scan_shape) != 2 or scan_shape[0] * scan_shape[1] != n):
        raise PhysicsInputError(f"scan_shape: {scan_shape} does not hold {n} patterns")
    geometry = pattern_set.geometry
    rows, cols = geometry.shape
    x0, y0 = geometry.centre
    step = geometry.calibration
    navigation = ([{"size": n, "name": "pattern", "navigate": True}] if scan_shape is None else
                  [{"size": scan_shape[0], "name": "y", "navigate": True},
                   {"size": scan_shape[1], "name": "x", "navigate": True}])
    signal = hs.signals.Signal2D(
        pattern_set.patterns.reshape(*(scan_shape or (n,)), rows, cols),
        axes=[
            *navigation,
            {"size": rows, "name": "ky", "units": "1/Å", "scale": step, "offset": -y0 * step},
            {"size": cols, "name": "kx", "units": "1/Å", "scale": step, "offset": -x0 * step},
        ],
    )
    signal.metadata.General.title = f"diffstream simulated SPED {pattern_set.phase.name}"
    signal.metadata.set_item("Acquisition_instrument.TEM.beam_energy", geometry.voltage_kv)
    signal.metadata.set_item("Acquisition_instrument.TEM.rocking_angle", geometry.precession_deg)
    signal.metadata.set_item("Simulation.phase", pattern_set.phase.name)
    signal.metadata.set_item("Simulation.space_group", pattern_set.phase.space_group.number)
    signal.metadata.set_item("Simulation.orientations_wxyz", pattern_set.rotations.data)
    for key, settings in (("geometry", geometry), ("render", pattern_set.settings)):
        signal.metadata.set_item(f"Simulation.{key}", {k: v for k, v in asdict(settings).items() if v is not None})
    with atomic_output(path) as tmp:
        signal.save(tmp, overwrite=True)
    return path
