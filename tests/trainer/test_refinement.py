"""Orientation refinement against the master pattern (``physics.refinement``): from a guess
within reach it converges to the orientation that made the frame; from a guess out of reach
the dictionary finds it instead; a frame without a pattern stays unmatched."""
from __future__ import annotations

import numpy as np
import pytest
from orix.quaternion import Rotation

from diffstream.trainer.orientation import disorientation_deg, laue_operators, quaternions_to_matrices
from diffstream.trainer.physics.ebsd_projection import project_patterns
from diffstream.trainer.physics.geometry import EBSDGeometry
from diffstream.trainer.physics.master_pattern import kinematical_master_pattern
from diffstream.trainer.physics.refinement import MIN_NCC, OrientationRefiner
from diffstream.trainer.physics.sampling import random_quaternions

SHAPE = (60, 60)


@pytest.fixture(scope="module")
def master():
    return kinematical_master_pattern("Ni", 20.0, half_size=100)


def _frames(master, quaternions: np.ndarray, geometry: EBSDGeometry, seed: int) -> np.ndarray:
    """Poisson-noisy uint8 frames with a sloped background, as a camera would give them."""
    clean = project_patterns(master, quaternions, geometry)
    clean = (clean - clean.min(axis=(1, 2), keepdims=True)) / np.ptp(clean, axis=(1, 2), keepdims=True)
    ramp = np.linspace(0.6, 1.0, SHAPE[0])[None, :, None]
    counts = np.random.default_rng(seed).poisson(120.0 * ramp * (0.5 + clean))
    return np.clip(counts, 0, 255).astype(np.uint8)


def _turned(quaternions: np.ndarray, degrees: float, seed: int) -> np.ndarray:
    """Each orientation turned by ``degrees`` about a random axis, as (N, 3, 3) matrices."""
    axes = np.random.default_rng(seed).normal(size=(len(quaternions), 3))
    turn = Rotation.from_axes_angles(axes, np.full(len(quaternions), degrees), degrees=True)
    return (turn * Rotation(quaternions)).to_matrix().reshape(-1, 3, 3)


def test_refinement_converges_from_a_near_guess_and_the_dictionary_from_a_far_one(master) -> None:
    quaternions = random_quaternions(6, seed=3)
    pcs = np.array([0.5, 0.5, 0.5]) + np.random.default_rng(4).uniform(-0.03, 0.03, (6, 3))
    geometry = EBSDGeometry(shape=SHAPE, pc=pcs, sample_tilt=70.0)
    frames = _frames(master, quaternions, geometry, seed=5)
    nominal = geometry.with_pc((0.5, 0.5, 0.5))
    truth = quaternions_to_matrices(quaternions)
    operators = laue_operators("m-3m")
    guesses = np.concatenate([_turned(quaternions[:3], 5.0, seed=6), _turned(quaternions[3:], 35.0, seed=7)])
    assert (disorientation_deg(guesses, truth, operators)[3:] > 20.0).all()

    refined = OrientationRefiner(master, nominal).refine(frames, guesses, pcs)

    errors = disorientation_deg(refined.matrices, truth, operators)
    assert (errors < 0.5).all(), errors
    assert refined.matched().all() and (refined.ncc >= MIN_NCC).all()
    assert not refined.from_dictionary[:3].any() and refined.from_dictionary[3:].all()


def test_a_frame_without_a_pattern_stays_unmatched(master) -> None:
    geometry = EBSDGeometry(shape=SHAPE, pc=(0.5, 0.5, 0.5), sample_tilt=70.0)
    noise = np.random.default_rng(8).poisson(100.0, (1, *SHAPE)).astype(np.uint8)
    refined = OrientationRefiner(master, geometry).refine(noise, np.eye(3)[None])
    assert not refined.matched().any() and refined.ncc[0] < MIN_NCC


def test_refinement_checks_its_input(master) -> None:
    geometry = EBSDGeometry(shape=SHAPE, pc=(0.5, 0.5, 0.5), sample_tilt=70.0)
    with pytest.raises(ValueError, match=r"expected frames \(N, 60, 60\)"):
        OrientationRefiner(master, geometry).refine(np.zeros((2, 50, 60), np.uint8), np.tile(np.eye(3), (2, 1, 1)))
    empty = OrientationRefiner(master, geometry).refine(np.zeros((0, *SHAPE), np.uint8), np.zeros((0, 3, 3)))
    assert empty.matrices.shape == (0, 3, 3) and empty.ncc.shape == (0,)
