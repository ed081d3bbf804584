"""What "the same answers as ONNX Runtime CPU" means for every backend (issue 6): every frame in the
same class, every orientation within 0.1 degrees, and probabilities equal to fp16 tolerance."""
from __future__ import annotations

import numpy as np
import pytest


def max_rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    """Largest angle of the rotations a_i^T b_i, in degrees."""
    cosine = (np.einsum("nji,nji->n", a, b) - 1.0) / 2.0  # (trace(a^T b) - 1) / 2
    return float(np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0))).max())


def check_same_answers(got: dict[str, np.ndarray], expected: dict[str, np.ndarray], probability_atol: float = 2e-3
                       ) -> None:
    assert set(got) == set(expected)
    np.testing.assert_array_equal(got["class_probabilities"].argmax(axis=1),
                                  expected["class_probabilities"].argmax(axis=1))
    np.testing.assert_allclose(got["class_probabilities"], expected["class_probabilities"], atol=probability_atol)
    np.testing.assert_allclose(got["confidence"], expected["confidence"], atol=probability_atol)
    assert max_rotation_angle_deg(got["rotation_matrix"], expected["rotation_matrix"]) < 0.1


@pytest.fixture
def same_answers():
    return check_same_answers
