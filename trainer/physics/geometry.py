"""EBSD detector geometry: the one description of where the detector sits relative to the
sample, shared by the numpy and torch projectors and convertible to kikuchipy's
``EBSDDetector`` (whose conventions it follows: Bruker pattern centre, angles in degrees).

kikuchipy is imported only inside the functions that need it: it pulls in hyperspy (about
a second), which describing a detector should not cost.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .errors import PhysicsInputError, check_number

if TYPE_CHECKING:
    from kikuchipy.detectors import EBSDDetector

_PC_Z_MAX = 10.0
"""A pattern centre further than ten detector heights away leaves the whole pattern inside a
few degrees: almost certainly a unit mistake (microns for fractions)."""


@dataclass(frozen=True, eq=False)
class EBSDGeometry:
    """Detector size, pattern centre and tilts for projecting EBSD patterns.

    ``pc`` is (x*, y*, z*) in Bruker's convention: x* and y* as fractions of the detector
    width and height from its upper-left corner, z* as a fraction of its height. It may
    also be an (N, 3) array, one pattern centre per pattern, because training jitters the
    pattern centre to make networks robust to calibration errors. The array is copied and
    made read-only so that a frozen geometry cannot change under a projector.

    ``binning`` and ``px_size`` do not change a projected pattern (the pattern centre is in
    fractions of the detector); they travel so that the geometry round-trips through
    kikuchipy and into file headers.
    """

    shape: tuple[int, int]
    pc: np.ndarray | tuple[float, float, float] = (0.5, 0.5, 0.5)
    sample_tilt: float = 70.0
    tilt: float = 0.0
    azimuthal: float = 0.0
    twist: float = 0.0
    binning: int = 1
    px_size: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", _valid_shape(self.shape))
        object.__setattr__(self, "pc", _valid_pc(self.pc))
        check_number("sample_tilt", self.sample_tilt, 0.0, 90.0, "°")
        for name in ("tilt", "azimuthal", "twist"):
            check_number(name, getattr(self, name), -90.0, 90.0, "°")
        check_number("binning", self.binning, 1, math.inf)
        if int(self.binning) != self.binning:
            raise PhysicsInputError(f"binning: must be a positive integer, got {self.binning!r}")
        object.__setattr__(self, "binning", int(self.binning))
        check_number("px_size", self.px_size, 0.0, math.inf, "µm", low_open=True)

    @property
    def rows(self) -> int:
        return self.shape[0]

    @property
    def cols(self) -> int:
        return self.shape[1]

    @property
    def n_pc(self) -> int:
        """How many pattern centres the geometry holds: 1, or one per pattern."""
        return 1 if self.pc.ndim == 1 else self.pc.shape[0]

    def pc_array(self) -> np.ndarray:
        """The pattern centres as (n_pc, 3), the shape projectors broadcast over patterns."""
        return self.pc.reshape(-1, 3)

    def with_pc(self, pc: np.ndarray | tuple[float, float, float]) -> EBSDGeometry:
        """The same detector with other pattern centres (e.g. jittered per pattern)."""
        return dataclasses.replace(self, pc=pc)

    def detector_to_sample(self) -> np.ndarray:
        """The (3, 3) matrix taking detector-frame vectors to the sample frame.

        Built by kikuchipy itself so that sample tilt, detector tilt, azimuthal and twist
        follow its conventions exactly, whichever version is installed.
        """
        return _detector_to_sample(self.sample_tilt, self.tilt, self.azimuthal, self.twist).copy()

    def pixel_offsets(self) -> tuple[np.ndarray, np.ndarray]:
        """Pixel-centre positions across (x, from the left) and down (y, from the top) the
        detector, in units of the detector height: the unit of z*, so that a pixel's ray
        from the source point is (x - x*·cols/rows, y* - y, z*) in the detector frame."""
        x = (np.arange(self.cols) + 0.5) / self.rows
        y = (np.arange(self.rows) + 0.5) / self.rows
        return x, y

    def to_kikuchipy(self) -> EBSDDetector:
        """The same geometry as a kikuchipy ``EBSDDetector`` (Bruker pattern centre)."""
        from kikuchipy.detectors import EBSDDetector

        return EBSDDetector(
            shape=self.shape, pc=self.pc.copy(), sample_tilt=self.sample_tilt, tilt=self.tilt,
            azimuthal=self.azimuthal, twist=self.twist, binning=self.binning,
            px_size=self.px_size, convention="bruker",
        )

    @classmethod
    def from_kikuchipy(cls, detector: EBSDDetector) -> EBSDGeometry:
        """Read a kikuchipy detector; a single pattern centre becomes (3,), several (N, 3)."""
        pc = np.asarray(detector.pc, dtype=np.float64).reshape(-1, 3)
        return cls(
            shape=tuple(int(n) for n in detector.shape),
            pc=pc[0] if len(pc) == 1 else pc,
            sample_tilt=float(detector.sample_tilt),
            tilt=float(detector.tilt),
            azimuthal=float(detector.azimuthal),
            twist=float(detector.twist),
            binning=int(detector.binning),
            px_size=float(detector.px_size),
        )


@functools.lru_cache(maxsize=64)
def _detector_to_sample(sample_tilt: float, tilt: float, azimuthal: float, twist: float) -> np.ndarray:
    from kikuchipy.detectors import EBSDDetector

    detector = EBSDDetector(sample_tilt=sample_tilt, tilt=tilt, azimuthal=azimuthal, twist=twist)
    return (~detector.sample_to_detector).to_matrix().reshape(3, 3)


def _valid_shape(shape: object) -> tuple[int, int]:
    try:
        rows, cols = (int(n) for n in shape)  # type: ignore[union-attr]
        integral = all(int(n) == n for n in shape)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise PhysicsInputError(f"shape: must be (rows, cols), got {shape!r}") from None
    if not integral or rows < 1 or cols < 1:
        raise PhysicsInputError(f"shape: rows and columns must be positive integers, got {shape!r}")
    return rows, cols


def _valid_pc(pc: object) -> np.ndarray:
    try:
        arr = np.array(pc, dtype=np.float64)
    except (TypeError, ValueError):
        raise PhysicsInputError(f"pc: must be (x*, y*, z*) or an (N, 3) array, got {pc!r}") from None
    if arr.shape[-1:] != (3,) or arr.ndim > 2 or arr.size == 0:
        raise PhysicsInputError(f"pc: must have shape (3,) or (N, 3), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise PhysicsInputError("pc: pattern centre has non-finite values")
    flat = arr.reshape(-1, 3)
    for axis, name in ((0, "x*"), (1, "y*")):
        bad = (flat[:, axis] < 0) | (flat[:, axis] > 1)
        if bad.any():
            value = flat[bad, axis][0]
            raise PhysicsInputError(
                f"pc: pattern centre {name}={value:g} is off the detector (must be in [0, 1])"
            )
    bad_z = (flat[:, 2] <= 0) | (flat[:, 2] > _PC_Z_MAX)
    if bad_z.any():
        raise PhysicsInputError(
            f"pc: pattern centre z*={flat[bad_z, 2][0]:g} must be in (0, {_PC_Z_MAX:g}] "
            "detector heights"
        )
    arr.setflags(write=False)
    return arr
