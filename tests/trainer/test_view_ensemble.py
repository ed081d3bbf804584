"""The view ensemble's vote: the majority's answer wins and is averaged, symmetry equivalents
count as the same answer, and turning the input frame turns the answer with it."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from orix.quaternion import Rotation

from diffstream.trainer.augment import quarter_turn, quarter_turn_matrices
from diffstream.trainer.config import parse_config
from diffstream.trainer.export import ExportError
from diffstream.trainer.orientation import disorientation_deg, laue_operators, rotation_6d_to_matrix
from diffstream.trainer.physics.sampling import uniform_quaternions
from diffstream.trainer.sped_export import check_views_exact
from diffstream.trainer.view_ensemble import ViewEnsemble, combine_rotations

OPERATORS = laue_operators("-3m")


def _tilted(matrices: np.ndarray, degrees: float, rng: np.random.Generator) -> np.ndarray:
    axes = rng.normal(size=(len(matrices), 3))
    return Rotation.from_axes_angles(axes, np.radians(degrees)).to_matrix() @ matrices


def test_majority_wins_and_is_averaged_over_symmetry_equivalents() -> None:
    """Per frame five views within 3° of the truth, each given as a different symmetry
    equivalent, and three on the half turn about the beam: the answer is the mean of the five.
    (Truths whose beam lies near a two-fold axis are left out: their half turn is nearly a
    symmetry equivalent, so its views would rightly join the mean.)"""
    rng = np.random.default_rng(1)
    half_turn = quarter_turn_matrices()[2].numpy()
    truth = Rotation(uniform_quaternions(40, rng)).to_matrix()
    truth = truth[disorientation_deg(truth @ half_turn, truth, OPERATORS) > 30.0][:20]
    near = np.stack([OPERATORS[k] @ _tilted(truth, 3.0, rng) for k in (0, 1, 2, 3, 5)])
    twin = np.stack([_tilted(truth, 2.0, rng) @ half_turn for _ in range(3)])
    views = np.concatenate((twin[:1], near[:3], twin[1:], near[3:]))  # majority not first
    answer = combine_rotations(torch.tensor(views, dtype=torch.float32), torch.tensor(OPERATORS, dtype=torch.float32))
    moved = np.stack([OPERATORS[0] @ (OPERATORS[k].T @ v) for k, v in zip((0, 1, 2, 3, 5), near)])
    u, _, vt = np.linalg.svd(moved.mean(axis=0))
    assert np.median(disorientation_deg(answer.numpy(), truth, OPERATORS)) < 2.0
    assert disorientation_deg(answer.numpy(), u @ vt, OPERATORS).max() < 0.05  # the SVD's nearest rotation (float32)
    assert np.allclose(answer.numpy() @ answer.numpy().transpose(0, 2, 1), np.eye(3), atol=1e-5)


class _LinearAnswers(torch.nn.Module):
    """A stand-in network whose answers are fixed random linear functions of the pixels: no
    symmetry at all, so every view of a frame gets a different answer."""

    def __init__(self, pixels: int) -> None:
        super().__init__()
        self.weights = torch.nn.Parameter(torch.randn(pixels, 9) / pixels**0.5, requires_grad=False)

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        features = (frames.flatten(1).float() / 1000.0) @ self.weights
        return torch.softmax(features[:, 6:8], dim=1), rotation_6d_to_matrix(features[:, :6]), features[:, 8].sigmoid()


def test_turning_the_frame_turns_the_answer() -> None:
    """The views of a frame turned by a quarter turn are the frame's views in another order,
    so the ensemble's answer for it is its answer for the frame, turned, whatever the network
    answers per view: a check that each view's answer is taken back by the right matrix."""
    torch.manual_seed(2)
    ensemble = ViewEnsemble(_LinearAnswers(16 * 16), 8, OPERATORS)
    frames = torch.randint(0, 3000, (50, 16, 16), dtype=torch.int32)
    probabilities, rotation, confidence = ensemble(frames)
    single = ensemble.single(frames)[1]
    assert np.median(disorientation_deg(single.numpy(), rotation.numpy(), OPERATORS)) > 1.0  # the vote matters
    for k in (1, 2, 3):
        turned = ensemble(quarter_turn(frames, k))
        expected = rotation.numpy() @ quarter_turn_matrices()[k].numpy()
        assert disorientation_deg(turned[1].numpy(), expected, OPERATORS).max() < 0.05
        assert torch.allclose(turned[0], probabilities, atol=1e-6) and torch.allclose(turned[2], confidence, atol=1e-6)
    mirrored = ensemble(frames.flip(-1))[1].numpy()
    assert disorientation_deg(mirrored, rotation.numpy() @ np.diag([1.0, -1.0, -1.0]), OPERATORS).max() < 0.05


def test_view_counts_are_checked() -> None:
    with pytest.raises(ValueError, match="views: 3"):
        ViewEnsemble(torch.nn.Identity(), 3, OPERATORS)


def test_views_refused_where_they_are_not_exact() -> None:
    """Views need square simulated frames (the beam at the centre) and one Laue group."""
    data = {"kind": "4dstem", "materials": ["LiNiO2"], "patterns": 100}
    check_views_exact("run/best.pt", parse_config({"name": "x", "data": data}), {"LiNiO2": "-3m"})
    cases = (({**data, "frame_shape": [128, 96]}, {"LiNiO2": "-3m"}, "square"),
             ({**data, "source": "folder", "folder": "experiment"}, {"LiNiO2": "-3m"}, "imported frames"),
             (data, {"LiNiO2": "-3m", "Si": "m-3m"}, "one phase's Laue group"))
    for raw, oriented, message in cases:
        with pytest.raises(ExportError, match=message):
            check_views_exact("run/best.pt", parse_config({"name": "x", "data": raw}), oriented)
