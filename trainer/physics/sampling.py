"""Reproducible draws shared by every pattern kind, so EBSD and SPED sets made with the same
seed see the same orientations."""
from __future__ import annotations

from orix.quaternion import Rotation

from .ebsd_projection import random_quaternions
from .errors import PhysicsInputError


def check_count(n: object) -> int:
    """A pattern count as a positive int, or a PhysicsInputError naming ``n``."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise PhysicsInputError(f"n: number of patterns must be a positive integer, got {n!r}")
    return n


def random_rotations(n: int, seed: int) -> Rotation:
    """``n`` uniformly distributed rotations from ``seed``."""
    return Rotation(random_quaternions(check_count(n), seed))
