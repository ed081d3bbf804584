"""What stays fixed while orientations vary: the instrument and the crystal's reflections.

:class:`SpedGeometry` holds the beam and detector, validated once at construction;
:class:`ReflectionTable` holds a phase's allowed reflections and |F|² out to the detector's
reach. Both are built once and reused for every orientation (:mod:`.sped`).

The calibration in Å⁻¹ per pixel is the primary quantity because it is what a 4D-STEM data
set is calibrated in and all the spot geometry needs; camera length and detector pixel size
convert to it (small-angle optics: one pixel spans ``pixel / (λ · L)`` of reciprocal space).

Detector convention (diffsims 0.7's ``Simulation2D.get_diffraction_pattern(fast=False)``):
pixel column = lab x, pixel row = lab y, ``x_px = g_x / calibration + centre_x``, and the
direct beam sits at ``((w - 1) / 2, (h - 1) / 2)`` unless ``direct_beam_px`` says otherwise.
The projection is linear in g, which is what a constant Å⁻¹-per-pixel calibration assumes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from orix.crystal_map import Phase
from orix.vector import Miller
from scipy import constants

from .errors import PhysicsInputError, check_number
from .structure_factors import full_cell_sites, is_extinct, reflections_within, structure_factors

MAX_SCATTERING_ANGLE = 0.2
"""rad; there tan(2θ) exceeds 2θ by 1.4 %, the end of a constant Å⁻¹-per-pixel calibration."""

MAX_REACH = 6.0
"""Å⁻¹; a detector seeing beyond d = 0.17 Å is outside what a kinematic spot model is for."""


def electron_wavelength(voltage_kv: float) -> float:
    """Relativistic electron wavelength in Å; at 300 kV the non-relativistic value is 14 % off."""
    energy = voltage_kv * 1e3 * constants.e
    rest_energy = constants.m_e * constants.c**2
    momentum = math.sqrt(2 * constants.m_e * energy * (1 + energy / (2 * rest_energy)))
    return constants.h / momentum * 1e10


def lorentz_factor(voltage_kv: float) -> float:
    """γ = m/m₀ of electrons at ``voltage_kv``: electron scattering factors are tabulated for
    the rest mass and scale by γ for a moving electron."""
    return 1.0 + voltage_kv * 1e3 * constants.e / (constants.m_e * constants.c**2)


def _check(field: str, ok: bool, value: object, expected: str) -> None:
    if not ok:
        raise PhysicsInputError(f"{field}: {value!r} {expected}")


def _is_finite_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_pair(value: object) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 2


def _is_positive_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


@dataclass(frozen=True)
class SpedGeometry:
    """Everything about the microscope and detector that moves spots or shapes them.

    ``shape`` is (rows, cols); ``direct_beam_px`` is (x, y) in pixels, ``None`` for the centre.
    Precession stops at 5°, where the small-angle swing of the excitation error stops holding.
    """

    voltage_kv: float = 300.0
    calibration: float = 0.025
    shape: tuple[int, int] = (128, 128)
    precession_deg: float = 0.6
    semi_convergence_mrad: float = 1.6
    direct_beam_px: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        check_number("voltage_kv", self.voltage_kv, 10.0, 3000.0, "kV")
        check_number("calibration", self.calibration, 0.0, math.inf, "Å⁻¹ per pixel", low_open=True)
        shape_ok = _is_pair(self.shape) and all(_is_positive_int(n) for n in self.shape)
        _check("shape", shape_ok, self.shape, "must be two positive integers (rows, cols)")
        object.__setattr__(self, "shape", tuple(self.shape))
        check_number("precession_deg", self.precession_deg, 0.0, 5.0, "degrees")
        check_number("semi_convergence_mrad", self.semi_convergence_mrad, 0.0, 50.0, "mrad")
        if self.direct_beam_px is not None:
            beam = self.direct_beam_px
            beam_ok = _is_pair(beam) and all(_is_finite_number(v) for v in beam)
            _check("direct_beam_px", beam_ok, beam, "must be two finite numbers (x, y) in pixels")
            object.__setattr__(self, "direct_beam_px", tuple(float(v) for v in beam))
        angle = self.reciprocal_reach * self.wavelength
        _check(
            "calibration",
            angle <= MAX_SCATTERING_ANGLE and self.reciprocal_reach <= MAX_REACH,
            self.calibration,
            f"Å⁻¹ per pixel makes the detector reach {self.reciprocal_reach:.2f} Å⁻¹ "
            f"({angle * 1e3:.0f} mrad); a linear calibration and a kinematic spot model hold "
            f"to {MAX_SCATTERING_ANGLE * 1e3:.0f} mrad and {MAX_REACH:g} Å⁻¹",
        )

    @classmethod
    def from_camera_length(
        cls, camera_length_mm: float, detector_pixel_um: float, **fields: object
    ) -> SpedGeometry:
        """Geometry from the microscope's camera length and the pixel pitch (after binning)."""
        check_number("camera_length_mm", camera_length_mm, 0.0, math.inf, "mm", low_open=True)
        check_number("detector_pixel_um", detector_pixel_um, 0.0, math.inf, "µm", low_open=True)
        voltage_kv = fields.get("voltage_kv", cls.voltage_kv)
        check_number("voltage_kv", voltage_kv, 10.0, 3000.0, "kV")
        # pixel [µm → Å] / (λ [Å] · L [mm → Å]) gives Å⁻¹ per pixel.
        wavelength = electron_wavelength(voltage_kv)
        calibration = (detector_pixel_um * 1e4) / (wavelength * camera_length_mm * 1e7)
        return cls(calibration=calibration, **fields)

    def camera_length_mm(self, detector_pixel_um: float) -> float:
        """The camera length that gives this calibration on a detector of the given pixel pitch,
        for headers (the wire protocol's scan_start) that speak in camera lengths."""
        check_number("detector_pixel_um", detector_pixel_um, 0.0, math.inf, "µm", low_open=True)
        return (detector_pixel_um * 1e4) / (self.wavelength * self.calibration * 1e7)

    @property
    def wavelength(self) -> float:
        return electron_wavelength(self.voltage_kv)

    @property
    def centre(self) -> tuple[float, float]:
        """Direct-beam position (x, y) in pixels."""
        if self.direct_beam_px is not None:
            return self.direct_beam_px
        rows, cols = self.shape
        return ((cols - 1) / 2, (rows - 1) / 2)

    @property
    def reciprocal_reach(self) -> float:
        """Å⁻¹ from the direct beam to the farthest pixel edge: no reflection beyond it can land
        on the detector, so reflection lists stop there."""
        rows, cols = self.shape
        cx, cy = self.centre
        dx = max(cx + 0.5, cols - 0.5 - cx)
        dy = max(cy + 0.5, rows - 0.5 - cy)
        return math.hypot(dx, dy) * self.calibration

    @property
    def lorentz_factor(self) -> float:
        """γ of the beam electrons (:func:`lorentz_factor`)."""
        return lorentz_factor(self.voltage_kv)

    @property
    def precession_rad(self) -> float:
        return math.radians(self.precession_deg)

    @property
    def disc_radius_px(self) -> float:
        """Radius of a diffracted disc: the probe's semi-convergence angle over λ, in pixels."""
        return self.semi_convergence_mrad * 1e-3 / self.wavelength / self.calibration


@dataclass(frozen=True, eq=False)
class ReflectionTable:
    """The allowed reflections of one phase out to a reciprocal radius, with |F|².

    Built once per phase and detector reach; every orientation reuses it.
    """

    hkl: np.ndarray
    """(G, 3) Miller indices."""
    g_crystal: np.ndarray
    """(G, 3) Å⁻¹, Cartesian in orix's crystal frame."""
    intensity: np.ndarray
    """(G,) |F|² in Å² (Debye–Waller included)."""
    cell_volume: float
    """Å³; with λ it turns |F|² into a fraction of the beam (:mod:`.sped`)."""

    @classmethod
    def from_phase(cls, phase: Phase, max_g: float) -> ReflectionTable:
        """Reflections with 0 < |g| ≤ max_g (Å⁻¹) and a structure factor that is not extinct.

        ``phase`` may hold the asymmetric unit or the full cell: the shared expansion
        (:func:`.structure_factors.full_cell_sites`) merges coincident copies, so either
        gives the same table.
        """
        hkl = reflections_within(phase, max_g)
        g_crystal = Miller(hkl=hkl, phase=phase).data
        sites = full_cell_sites(phase)
        factors = structure_factors(sites, hkl)
        keep = ~is_extinct(factors, sites)
        volume = float(phase.structure.lattice.volume)
        return cls(
            hkl=hkl[keep], g_crystal=g_crystal[keep], intensity=np.abs(factors[keep]) ** 2,
            cell_volume=volume,
        )


PAPER2_GEOMETRY = SpedGeometry()
"""Paper 2's acquisition (JEOL 3010, 300 kV, 0.6° precession, 1.6 mrad semi-convergence,
patterns downsampled to 128×128). The paper does not state its calibration; 0.025 Å⁻¹ per
pixel puts ±1.6 Å⁻¹ across the frame, several orders of LiNiO2's reflections."""

ARINA_96_GEOMETRY = SpedGeometry.from_camera_length(
    camera_length_mm=300.0,
    detector_pixel_um=200.0,
    shape=(96, 96),
    voltage_kv=300.0,
    precession_deg=0.6,
    semi_convergence_mrad=1.0,
)
"""A DECTRIS ARINA-style fast 4D-STEM detector in its 96×96 mode (a 192×192 sensor of
100 µm pixels binned 2×2), at a 300 mm camera length: about 0.034 Å⁻¹ per pixel."""
