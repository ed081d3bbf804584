"""Batched projection of EBSD master patterns onto a detector (numpy + numba).

The physics is that of kikuchipy's ``EBSDMasterPattern.get_patterns``: each detector pixel
is a ray from the source point (gnomonic projection), expressed in the sample frame, rotated
into the crystal frame by the orientation, mapped to the square Lambert projection of its
hemisphere and read from the master pattern by bilinear interpolation.

Two things make it fast without changing the result:

- The rotation into the crystal and the detector-to-sample rotation are composed into one
  matrix per pattern, and the ray of pixel (row, col) is affine in the pixel position, so a
  pattern is described by three vectors (``pattern_frames``). Direction cosines are never
  stored, so a different pattern centre per pattern costs nothing extra.
- The Lambert coordinates only need the direction, never the normalised vector: 1 - |z|
  is taken as (x² + y²) / (|v| (|v| + |z|)), which also stays accurate at the poles.

``pattern_frames`` is written for any array library with numpy's operators (``xp`` is
``numpy`` or ``torch``), so the torch projector shares it.
"""
from __future__ import annotations

import math
from types import ModuleType
from typing import Any

import numba
import numpy as np
from orix.crystal_map import Phase
from orix.quaternion import Rotation

from .errors import PhysicsInputError
from .geometry import EBSDGeometry
from .master_pattern import DEFAULT_HALF_SIZE, MasterPattern
from .sampling import random_quaternions
from .timing import best_rate

FOUR_OVER_PI = 4.0 / math.pi


def project_patterns(
    master: MasterPattern, orientations: Rotation | np.ndarray, geometry: EBSDGeometry
) -> np.ndarray:
    """EBSD patterns (N, rows, cols) float32 for N orientations (sample → crystal, as orix
    and kikuchipy define them) seen on ``geometry``, whose pattern centre is shared or
    given per pattern (N, 3). Intensities are the master pattern's, not rescaled."""
    quaternions = as_quaternions(orientations)
    frames = pattern_frames(
        quaternions,
        _pattern_centres(geometry, len(quaternions)),
        geometry.detector_to_sample(),
        geometry.cols / geometry.rows,
    )
    x, y = geometry.pixel_offsets()
    out = np.empty((len(quaternions), geometry.rows, geometry.cols), dtype=np.float32)
    _project(np.ascontiguousarray(frames), x, y, master.hemispheres.reshape(-1), master.size, out)
    return out


def sample_master_pattern(master: MasterPattern, directions: np.ndarray) -> np.ndarray:
    """Master-pattern intensities (N,) float32 along crystal-frame directions (N, 3), read
    exactly as the projector reads them; for checking a master pattern against physics
    and for plotting it on the sphere."""
    vectors = _vectors(directions, 3, "directions", "(N, 3) vectors")
    out = np.empty(len(vectors), dtype=np.float32)
    _sample_directions(vectors, master.hemispheres.reshape(-1), master.size, out)
    return out


def as_quaternions(orientations: Rotation | np.ndarray) -> np.ndarray:
    """Orientations as (N, 4) float64 quaternions (w, x, y, z). They need not be unit:
    only ray directions matter, and a scaled rotation matrix keeps them."""
    data = orientations.data if isinstance(orientations, Rotation) else orientations
    return _vectors(data, 4, "orientations", "an orix Rotation or (N, 4) quaternions (w, x, y, z)")


def _vectors(data: object, length: int, field: str, expected: str) -> np.ndarray:
    """``data`` as contiguous float64 rows of ``length``, each finite and non-zero (a zero
    row has no direction), or a PhysicsInputError naming the field. The last axis is
    checked because a flat reshape would silently regroup an (N, 6) array into rows of 4."""
    try:
        array = np.array(data, dtype=np.float64)
    except (TypeError, ValueError):
        raise PhysicsInputError(f"{field}: must be {expected}") from None
    if array.ndim == 0 or array.shape[-1] != length:
        raise PhysicsInputError(f"{field}: must be {expected}, got shape {array.shape}")
    rows = np.ascontiguousarray(array.reshape(-1, length))
    if not np.isfinite(rows).all() or (np.abs(rows).max(axis=1, initial=0.0) == 0).any():
        raise PhysicsInputError(f"{field}: must be finite and non-zero")
    return rows


def pattern_frames(quaternions: Any, pcs: Any, detector_to_sample: Any, aspect: float,
                   xp: ModuleType = np) -> Any:
    """Per pattern, the (3, 3) rows (f0, f1, f2) such that the crystal-frame ray of the
    pixel at (x, y) (``EBSDGeometry.pixel_offsets``) is x·f0 + y·f1 + f2.

    The detector-frame ray is (x - x*·aspect, y* - y, z*); the matrix R(q)·D takes it to
    the crystal frame, with D the detector-to-sample matrix and R(q) the orientation's
    rotation matrix as kikuchipy applies it. ``pcs`` is (1, 3) or (N, 3); arrays may be
    numpy or torch (``xp``), and must share a dtype and device.
    """
    to_crystal = _rotation_matrices(quaternions, xp) @ detector_to_sample
    along_x, along_y, along_z = to_crystal[..., 0], to_crystal[..., 1], to_crystal[..., 2]
    pc_x, pc_y, pc_z = pcs[:, 0:1], pcs[:, 1:2], pcs[:, 2:3]
    origin = along_y * pc_y + along_z * pc_z - along_x * (pc_x * aspect)
    return xp.stack([along_x, -along_y, origin], -2)


def _rotation_matrices(q: Any, xp: ModuleType) -> Any:
    """Rotation matrices (N, 3, 3) of quaternions (w, x, y, z), times |q|²."""
    w, x, y, z = q[:, 0], q[:, 1], q[:, 2], q[:, 3]
    rows = [
        [w * w + x * x - y * y - z * z, 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), w * w - x * x + y * y - z * z, 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), w * w - x * x - y * y + z * z],
    ]
    return xp.stack([xp.stack(row, -1) for row in rows], -2)


def _pattern_centres(geometry: EBSDGeometry, n_patterns: int) -> np.ndarray:
    pcs = geometry.pc_array()
    if len(pcs) not in (1, n_patterns):
        raise PhysicsInputError(
            f"pc: {len(pcs)} pattern centres for {n_patterns} orientations; give one or one per pattern"
        )
    return pcs


@numba.njit(inline="always", fastmath=True)
def _sample_lambert(texture: np.ndarray, n: int, x: float, y: float, z: float) -> float:
    """Bilinear read of the hemisphere that ray (x, y, z) hits, at its square Lambert
    position; the index clamp makes the last row/column read with weight 1 as kikuchipy's
    neighbour clamp does."""
    ax, ay, az = abs(x), abs(y), abs(z)
    r2 = x * x + y * y
    norm = math.sqrt(r2 + z * z)
    u = math.sqrt(r2 / (norm * (norm + az)))
    k = u * FOUR_OVER_PI * math.atan2(min(ax, ay), max(ax, ay))
    if ax >= ay:
        lx, ly = math.copysign(u, x), math.copysign(k, y)
    else:
        lx, ly = math.copysign(k, x), math.copysign(u, y)
    half = 0.5 * (n - 1)
    row = half * (ly + 1.0)
    col = half * (lx + 1.0)
    i = min(max(int(row), 0), n - 2)
    j = min(max(int(col), 0), n - 2)
    di = row - i
    dj = col - j
    base = i * n + j + (0 if z >= 0.0 else n * n)
    top = texture[base] * (1.0 - dj) + texture[base + 1] * dj
    bottom = texture[base + n] * (1.0 - dj) + texture[base + n + 1] * dj
    return top * (1.0 - di) + bottom * di


@numba.njit(parallel=True, fastmath=True, cache=True)
def _project(frames: np.ndarray, xs: np.ndarray, ys: np.ndarray, texture: np.ndarray, n: int,
             out: np.ndarray) -> None:
    for p in numba.prange(frames.shape[0]):
        f = frames[p]
        for r in range(ys.size):
            bx = f[2, 0] + ys[r] * f[1, 0]
            by = f[2, 1] + ys[r] * f[1, 1]
            bz = f[2, 2] + ys[r] * f[1, 2]
            for c in range(xs.size):
                out[p, r, c] = _sample_lambert(
                    texture, n, bx + xs[c] * f[0, 0], by + xs[c] * f[0, 1], bz + xs[c] * f[0, 2]
                )


@numba.njit(parallel=True, fastmath=True, cache=True)
def _sample_directions(vectors: np.ndarray, texture: np.ndarray, n: int, out: np.ndarray) -> None:
    for p in numba.prange(vectors.shape[0]):
        out[p] = _sample_lambert(texture, n, vectors[p, 0], vectors[p, 1], vectors[p, 2])


def synthetic_master_pattern(half_size: int = DEFAULT_HALF_SIZE, seed: int = 0) -> MasterPattern:
    """Random hemispheres of the default size, for timing: the projector's speed depends on
    the master pattern's size and the geometry, not on its values, so benchmarks need no
    simulation."""
    n = 2 * half_size + 1
    data = np.random.default_rng(seed).random((2, n, n), dtype=np.float32)
    return MasterPattern(data, Phase(point_group="m-3m"), 20.0, source="synthetic")


def benchmark_inputs(shape: tuple[int, int], n_patterns: int, seed: int = 0
                     ) -> tuple[EBSDGeometry, np.ndarray]:
    """A typical tilted geometry and random orientations, shared by the numpy and torch
    benchmarks so their figures compare."""
    geometry = EBSDGeometry(shape=shape, pc=(0.5, 0.3, 0.55), tilt=5.0)
    return geometry, random_quaternions(n_patterns, seed)



def measure_projection_rate(shape: tuple[int, int] = (60, 60), n_patterns: int = 4000,
                            repeats: int = 3, master: MasterPattern | None = None) -> float:
    """Patterns per second of ``project_patterns`` on this machine (best of ``repeats``,
    after a warm-up that compiles the kernel); not asserted in tests, printed by
    benchmarks."""
    master = master or synthetic_master_pattern()
    geometry, quaternions = benchmark_inputs(shape, n_patterns)
    return best_rate(lambda: project_patterns(master, quaternions, geometry), n_patterns, repeats)
