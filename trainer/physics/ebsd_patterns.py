"""Sets of simulated EBSD patterns with everything needed to reproduce them, and their files.

A pattern without its orientation and detector geometry is useless for training or for
checking an indexer, so they travel together: in memory as ``EBSDPatternSet`` and on disk
as kikuchipy h5ebsd, which kikuchipy, and through it orix and MTEX users, already read.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from orix.crystal_map import CrystalMap, Phase, PhaseList
from orix.quaternion import Rotation

from .detector_model import Detector, preset
from .ebsd_projection import project_patterns
from .errors import PhysicsInputError
from .files import atomic_output
from .geometry import EBSDGeometry
from .master_pattern import DEFAULT_VOLTAGE_KV, MasterPattern, kinematical_master_pattern
from .sampling import check_count, random_rotations

DEFAULT_PC = (0.5, 0.3, 0.6)
"""A typical pattern centre (Bruker x*, y*, z*) for a 70° tilted sample: the centre sits in
the upper part of the screen, about 0.6 detector heights from the beam spot."""


@dataclass(frozen=True)
class EBSDPatternSet:
    """Patterns (N, rows, cols) with the orientations, phase and geometry that made them.

    ``detector`` names the camera preset that turned clean intensities into counts, or
    "clean" for raw float32 master-pattern intensities.
    """

    patterns: np.ndarray
    rotations: Rotation
    phase: Phase
    geometry: EBSDGeometry
    voltage_kv: float
    detector: str


def simulate_ebsd_patterns(
    phase: str,
    n: int,
    size: int | tuple[int, int],
    *,
    clean: bool = False,
    seed: int = 0,
    voltage_kv: float = DEFAULT_VOLTAGE_KV,
    pc: tuple[float, float, float] = DEFAULT_PC,
    tilt: float = 0.0,
    sample_tilt: float = 70.0,
    detector: str = "fast",
    master: MasterPattern | None = None,
) -> EBSDPatternSet:
    """``n`` patterns of ``phase`` at uniformly random orientations drawn from ``seed``.

    Clean patterns are the projected master-pattern intensities (float32); otherwise the
    named detector preset adds background, noise and defects and quantises.
    """
    check_count(n)
    shape = (size, size) if np.isscalar(size) else tuple(size)
    geometry = EBSDGeometry(shape=shape, pc=pc, tilt=tilt, sample_tilt=sample_tilt)
    params = None if clean else preset(detector)
    master = master or kinematical_master_pattern(phase, voltage_kv)
    rotations = random_rotations(n, seed)
    patterns = project_patterns(master, rotations, geometry)
    if params is not None:
        patterns = Detector(params, seed=seed).acquire(patterns, rng=seed)
    return EBSDPatternSet(
        patterns=patterns,
        rotations=rotations,
        phase=master.phase,
        geometry=geometry,
        voltage_kv=master.voltage_kv,
        detector="clean" if clean else detector,
    )


def write_h5ebsd(pattern_set: EBSDPatternSet, path: str | Path) -> Path:
    """Write a kikuchipy h5ebsd file: ``kikuchipy.load(path)`` returns the patterns with
    ``.detector`` (per-pattern PC) and ``.xmap`` (orientations and phase).

    The file is written beside its destination and renamed into place, so an interrupted
    write never leaves a half-written file under the requested name.
    """
    import kikuchipy as kp

    path = Path(path)
    if path.suffix.lower() not in (".h5", ".hdf5", ".h5ebsd"):
        raise PhysicsInputError(f"out: {path} must end in .h5, .hdf5 or .h5ebsd (kikuchipy h5ebsd)")
    n = len(pattern_set.patterns)
    signal = kp.signals.EBSD(pattern_set.patterns)
    signal.axes_manager.navigation_axes[0].name = "x"  # a row of patterns, as the map's x below
    signal.detector = pattern_set.geometry.with_pc(
        np.broadcast_to(pattern_set.geometry.pc_array(), (n, 3))
    ).to_kikuchipy()
    signal.xmap = CrystalMap(
        rotations=pattern_set.rotations,
        phase_id=np.zeros(n, dtype=int),
        x=np.arange(n, dtype=float),
        phase_list=PhaseList(pattern_set.phase),
    )
    signal.metadata.set_item("Acquisition_instrument.SEM.beam_energy", pattern_set.voltage_kv)
    signal.metadata.set_item("General.title", f"diffstream simulated {pattern_set.phase.name}")
    signal.metadata.set_item("Signal.quantity", f"detector: {pattern_set.detector}")
    with atomic_output(path) as tmp:
        signal.save(tmp, overwrite=True)
    return path
