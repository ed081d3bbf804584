"""Turning an engine's raw outputs into the per-frame quantities a map is made of.

Kept apart from the engine so that every backend's outputs are read the same way, and
apart from the assembler so that the assembler never needs to know output names.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Decoded:
    """One batch, decoded: n rows each."""

    class_id: np.ndarray
    class_probability: np.ndarray
    usable: np.ndarray | None
    rotation_matrices: np.ndarray | None


def decode_outputs(outputs: dict[str, np.ndarray], n: int) -> Decoded:
    """Argmax class and its probability, plus the optional usable score and rotation."""
    probabilities = outputs["class_probabilities"][:n]
    class_id = probabilities.argmax(axis=1)
    class_probability = np.take_along_axis(probabilities, class_id[:, None], axis=1)[:, 0]
    usable = outputs.get("confidence")
    rotations = outputs.get("rotation_matrix")
    return Decoded(
        class_id=class_id.astype(np.int16),
        class_probability=class_probability.astype(np.float32),
        usable=None if usable is None else usable[:n].astype(np.float32),
        rotation_matrices=None if rotations is None else rotations[:n],
    )
