"""Template matching of SPED frames (``physics.sped_indexing``): the templates cover every beam
direction once under the proper point group; a frame turned about the beam is found at its
turn; noisy frames as the training data holds them are indexed to a fraction of a degree,
and the reliability flags the ones that are not; a guess joins the candidates, and one that
is a symmetry equivalent of the answer is not a second answer."""
from __future__ import annotations

import numpy as np
import pytest
from orix.quaternion import Rotation
from orix.sampling import sample_S2
from orix.vector import Vector3d

from diffstream.trainer.datasets.sped_synthesis import SpedShardPlan, sped_geometry, synthesize_sped_shard
from diffstream.trainer.orientation import disorientation_deg, laue_operators, quaternions_to_matrices
from diffstream.trainer.physics.catalogue import get_phase_entry
from diffstream.trainer.physics.errors import PhysicsInputError
from diffstream.trainer.physics.sped import RenderSettings, render_patterns, simulate_spots
from diffstream.trainer.physics.sped_indexing import MIN_RELIABILITY, SpedIndexer, template_rotations

GEOMETRY = sped_geometry((128, 128), 300.0)
OPERATORS = laue_operators("-3m")


@pytest.fixture(scope="module")
def phase():
    return get_phase_entry("LiNiO2").full_phase()


@pytest.fixture(scope="module")
def indexer(phase) -> SpedIndexer:
    return SpedIndexer(phase, GEOMETRY)


@pytest.fixture(scope="module")
def noisy() -> tuple[np.ndarray, np.ndarray]:
    """Frames as the training set makes them: Poisson counts on a diffuse halo, dose, halo
    and foil thickness drawn per block, uniformly random orientations."""
    plan = SpedShardPlan(phases=("LiNiO2",), counts=(32,), unusable=0, geometry=GEOMETRY, dose=(2e4, 5e5),
                         seed=(17,))
    shard = synthesize_sped_shard(plan)
    return shard.frames, quaternions_to_matrices(shard.quaternions)


def test_templates_cover_each_beam_direction_once_under_the_proper_group(phase) -> None:
    templates = template_rotations(phase, 3.0)
    proper = phase.point_group.proper_subgroup
    assert proper.name == "32"
    # Six proper operators: the sector is a sixth of the sphere (orix's hexagonal mesh).
    assert 0.15 < templates.size / sample_S2(3.0, method="hexagonal").size < 0.19
    beams = (templates * Vector3d.zvector()).unit.data.reshape(-1, 3)
    directions = np.random.default_rng(0).normal(size=(300, 3))
    equivalents = proper.outer(Vector3d(directions)).unit.data  # (6, 300, 3)
    cosines = np.einsum("snk,tk->snt", equivalents, beams).max(axis=(0, 2))
    assert np.degrees(np.arccos(np.clip(cosines, -1, 1))).max() < 3.0


def test_a_frame_turned_about_the_beam_is_found_at_its_turn(indexer: SpedIndexer) -> None:
    turns = np.array([37.3, 181.0, 302.6])
    base = indexer.templates[[200, 2000, 4000]]
    truth = base * Rotation.from_axes_angles([0, 0, 1], np.radians(turns))
    spots = simulate_spots(indexer.table, truth, GEOMETRY, thickness_nm=70.0)
    frames = render_patterns(spots, GEOMETRY, RenderSettings(dose=2e5, background_fraction=0.1))
    found = indexer.index(frames)
    errors = disorientation_deg(found.matrices, truth.to_matrix().reshape(-1, 3, 3), OPERATORS)
    assert (errors < 0.5).all(), errors


def test_noisy_frames_are_indexed_to_a_fraction_of_a_degree(indexer: SpedIndexer, noisy) -> None:
    frames, truth = noisy
    seen = []
    found = indexer.index(frames, progress=seen.append)
    assert sum(seen) == len(frames)
    errors = disorientation_deg(found.matrices, truth, OPERATORS)
    assert np.median(errors) < 0.5 and np.mean(errors < 1.0) >= 0.75, np.sort(errors)
    reliable = found.reliable()
    assert reliable.mean() >= 0.5 and (errors[reliable] < 2.0).all(), (found.reliability, errors)
    assert (found.reliability[errors > 5.0] < MIN_RELIABILITY).all()
    assert found.matrices.shape == (len(frames), 3, 3) and found.index.shape == (len(frames),)


def test_a_guess_joins_the_candidates(phase, noisy) -> None:
    """A 10° grid leaves its answers out of the local search's reach on some frames; the
    right orientation given as a guess is refined with the grid's candidates and wins."""
    frames, truth = noisy
    coarse = SpedIndexer(phase, GEOMETRY, resolution_deg=10.0, candidates=1)
    alone = disorientation_deg(coarse.index(frames[:16]).matrices, truth[:16], OPERATORS)
    nudged = Rotation.from_axes_angles([1, 1, 0], np.radians(0.4)).to_matrix()[0] @ truth[:16]
    helped = disorientation_deg(coarse.index(frames[:16], guesses=nudged).matrices, truth[:16], OPERATORS)
    assert np.mean(alone > 5.0) > 0.1
    assert np.mean(helped < 1.0) > np.mean(alone < 1.0) and np.median(helped) < 0.5


def test_a_symmetry_equivalent_guess_is_the_same_answer(phase, indexer: SpedIndexer, noisy) -> None:
    """A network may answer with any symmetry equivalent; refined, it lands on the grid's
    answer turned by the crystal's 3-fold, which is the same orientation and must not count
    as a second answer that lowers the reliability."""
    frames = noisy[0][:6]
    alone = indexer.index(frames)
    three_fold = Rotation.from_axes_angles([0, 0, 1], np.radians(120)).to_matrix()[0]
    equivalent = three_fold @ alone.matrices
    assert disorientation_deg(equivalent, alone.matrices, OPERATORS).max() < 1e-6
    guessed = indexer.index(frames, guesses=equivalent)
    assert np.allclose(guessed.reliability, alone.reliability, atol=0.5), (guessed.reliability, alone.reliability)
    assert (alone.reliability >= MIN_RELIABILITY).sum() >= 3


def test_bad_input_is_named(phase, indexer: SpedIndexer) -> None:
    with pytest.raises(PhysicsInputError, match="resolution_deg"):
        SpedIndexer(phase, GEOMETRY, resolution_deg=0.1)
    with pytest.raises(PhysicsInputError, match="candidates"):
        SpedIndexer(phase, GEOMETRY, candidates=0)
    with pytest.raises(PhysicsInputError, match=r"frames: expected \(N, 128, 128\)"):
        indexer.index(np.zeros((2, 64, 64)))
    with pytest.raises(PhysicsInputError, match="guesses"):
        indexer.index(np.zeros((2, 128, 128)), guesses=np.zeros((3, 3, 3)))
