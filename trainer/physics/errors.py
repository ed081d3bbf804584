"""The one exception type for bad physical input, so the command line can tell a user's
mistake (exit code 2, one line) from a bug (a traceback), and the checks that raise it."""
from __future__ import annotations

import math

import numpy as np


class PhysicsInputError(ValueError):
    """A parameter is outside what the physics can model; the message names the field."""


def check_number(field: str, value: object, low: float, high: float, unit: str = "",
                 low_open: bool = False) -> None:
    """Refuse anything but a finite number in [low, high] (or (low, high] if ``low_open``)."""
    unit = f" {unit}" if unit else ""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise PhysicsInputError(f"{field}: must be a number, got {value!r}")
    if not math.isfinite(value):
        raise PhysicsInputError(f"{field}: must be finite, got {value}")
    if low_open and value <= low:
        raise PhysicsInputError(f"{field}: must be > {low:g}{unit}, got {value:g}")
    if value < low or value > high:
        raise PhysicsInputError(f"{field}: must be within [{low:g}, {high:g}]{unit}, got {value:g}")


def check_integer(field: str, value: object, low: int, high: int) -> None:
    """Refuse anything but an integer (not a bool) in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise PhysicsInputError(f"{field}: must be an integer, got {value!r}")
    if not low <= value <= high:
        raise PhysicsInputError(f"{field}: must be within [{low}, {high}], got {value}")


def check_choice(field: str, value: object, choices: tuple[str, ...]) -> None:
    """Refuse a value that is not one of ``choices``."""
    if value not in choices:
        raise PhysicsInputError(f"{field}: must be one of {', '.join(choices)}, got {value!r}")
