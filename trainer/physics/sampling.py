"""Reproducible orientation draws shared by every pattern kind and the specimens, so that
sets made with the same seed see the same orientations (orix's ``Rotation.random`` takes
no seed)."""
from __future__ import annotations

import numpy as np
from orix.quaternion import Rotation

from .errors import PhysicsInputError


def check_count(n: object) -> int:
    """A pattern count as a positive int, or a PhysicsInputError naming ``n``."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise PhysicsInputError(f"n: number of patterns must be a positive integer, got {n!r}")
    return n


def uniform_quaternions(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 4) unit quaternions (w, x, y, z), uniform on SO(3) as orix draws them
    (normalised 4-D Gaussians), with w ≥ 0."""
    q = rng.standard_normal((n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    q[q[:, 0] < 0] *= -1
    return q


def random_quaternions(n: int, seed: int) -> np.ndarray:
    """``uniform_quaternions`` from a seed."""
    return uniform_quaternions(n, np.random.default_rng(seed))


def random_rotations(n: int, seed: int) -> Rotation:
    """``n`` uniformly distributed rotations from ``seed``."""
    return Rotation(random_quaternions(check_count(n), seed))
