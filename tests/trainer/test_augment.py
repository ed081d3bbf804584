"""Turns about the beam: a turned training frame is the simulator's frame of the turned
orientation, and the config admits the turns only where that holds; the Friedel channel
(the part of a frame odd under the half turn) is large in SPED frames, and only 4D-STEM
configs take it."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from orix.quaternion import Rotation

from diffstream.trainer.augment import (
    epoch_turns,
    quarter_turn,
    quarter_turn_matrices,
    turn_about_beam,
    view_frames,
    view_matrices,
)
from diffstream.trainer.config import ConfigError, load_config, parse_config
from diffstream.trainer.datasets.sped_synthesis import _reflections, sped_geometry
from diffstream.trainer.models.preprocess import FriedelPairs
from diffstream.trainer.physics.sampling import uniform_quaternions
from diffstream.trainer.physics.sped import RenderSettings, render_patterns, simulate_spots
from diffstream.trainer.training import train

GEOMETRY = sped_geometry((128, 128), 300.0)
MEASURED_ODD_SHARE = 0.72
"""Median rms of the odd part over the rms of the centred image, 8 noise-free LiNiO2 frames."""


def _frames(matrices: np.ndarray) -> np.ndarray:
    """Noise-free uint16 frames (expected electrons, rounded), as the detector sends them, of
    LiNiO2 at orientation matrices ``matrices``."""
    quaternions = Rotation.from_matrix(matrices).data
    spots = simulate_spots(_reflections("LiNiO2", GEOMETRY), quaternions, GEOMETRY, thickness_nm=50.0)
    electrons = render_patterns(spots, GEOMETRY, RenderSettings(dose=3e5))
    return np.clip(np.rint(electrons), 0, np.iinfo(np.uint16).max).astype(np.uint16)


def test_turned_frame_is_the_turned_orientation_s_frame() -> None:
    """Each frame of a batch under its own view (quarter turns, then mirrored ones) is the
    simulator's frame of its label turned with it."""
    matrices = Rotation(uniform_quaternions(8, np.random.default_rng(3))).to_matrix().astype(np.float32)
    frames = _frames(matrices)
    views = torch.tensor([0, 5, 1, 7, 2, 4, 3, 6])
    batch = {"frames": torch.from_numpy(frames), "rotation": torch.from_numpy(matrices),
             "usable": torch.ones(8)}
    turned = turn_about_beam(batch, views)
    expected = _frames(turned["rotation"].numpy().astype(np.float64))
    difference = np.abs(turned["frames"].numpy().astype(np.int64) - expected)
    assert turned["frames"].dtype == torch.uint16 and difference.max() <= 1  # rounding of equal floats
    assert np.abs(turned["frames"][1].numpy().astype(np.int64) - frames[1]).max() > 100
    assert turned["usable"] is batch["usable"]
    assert torch.equal(turned["frames"][0], batch["frames"][0])


def test_each_view_is_the_frame_of_its_orientation() -> None:
    """The eight views (quarter turns, then the same after reversing the columns) of a frame of
    M are the simulator's frames of M · T_v: the symmetry the view ensemble relies on."""
    matrices = Rotation(uniform_quaternions(3, np.random.default_rng(8))).to_matrix()
    frames = torch.from_numpy(_frames(matrices))
    views = view_frames(frames, 8).reshape(8, 3, 128, 128).numpy().astype(np.int64)
    for v, turn in enumerate(view_matrices(8).numpy().astype(np.float64)):
        assert np.abs(views[v] - _frames(matrices @ turn)).max() <= 1, v  # rounding of equal floats
    assert np.abs(views[4] - views[0]).max() > 100  # the mirror is another orientation's frame
    assert torch.equal(view_frames(frames, 4), view_frames(frames, 8)[:12])
    assert torch.equal(view_frames(frames, 1), frames)


def test_quarter_turn_is_rot90() -> None:
    frames = torch.randint(0, 255, (2, 5, 5), dtype=torch.uint8)
    for k in range(-1, 5):
        assert torch.equal(quarter_turn(frames, k), torch.rot90(frames, k, dims=(-2, -1))), k


def test_friedel_channel_of_simulated_frames() -> None:
    """On a flat Ewald sphere Friedel's law would make a SPED pattern its own half turn; the
    sphere's curvature breaks it. The part of the frame odd under the half turn
    (``FriedelPairs``' second channel) is a large share of the pattern, and the orientation
    turned by 180° about the beam has the same part with the opposite sign."""
    matrices = Rotation(uniform_quaternions(8, np.random.default_rng(5))).to_matrix()
    half_turn = quarter_turn_matrices()[2].numpy().astype(np.float64)
    layer = FriedelPairs((64, 64))
    pairs = layer(torch.from_numpy(_frames(matrices)))
    twins = layer(torch.from_numpy(_frames(matrices @ half_turn)))
    rms = lambda x: x.pow(2).mean(dim=(1, 2)).sqrt()  # noqa: E731
    odd, image = pairs[:, 1], pairs[:, 0] - pairs[:, 0].mean(dim=(1, 2), keepdim=True)
    assert torch.median(rms(odd) / rms(image)) > MEASURED_ODD_SHARE / 2
    assert torch.all(rms(twins[:, 1] + odd) < 0.05 * rms(odd))


def test_quarter_turns_are_rotations_about_the_optic_axis() -> None:
    matrices = quarter_turn_matrices().numpy()
    expected = Rotation.from_axes_angles([0, 0, 1], np.arange(4) * np.pi / 2).to_matrix()
    assert np.array_equal(matrices, np.rint(expected))


def test_turns_repeat_per_epoch_and_differ_between_epochs() -> None:
    draw = lambda epoch: torch.randint(0, 4, (64,), generator=epoch_turns(1, epoch))  # noqa: E731
    assert torch.equal(draw(3), draw(3)) and not torch.equal(draw(3), draw(4))


def test_config_admits_turns_only_where_they_are_exact() -> None:
    data = {"kind": "4dstem", "materials": ["LiNiO2"], "patterns": 100}
    raw = {"name": "x", "data": data, "train": {"quarter_turns": True}}
    assert parse_config(raw).train.quarter_turns
    with pytest.raises(ConfigError, match="quarter_turns"):
        parse_config({"name": "x", "train": {"quarter_turns": True}})
    with pytest.raises(ConfigError, match="quarter_turns"):
        parse_config({**raw, "train": {"quarter_turns": True, "orientation_loss": "euler-huber"}})
    assert parse_config({**raw, "train": {"quarter_turns": True, "mirrors": True}}).train.mirrors
    with pytest.raises(ConfigError, match="mirrors come with the quarter turns"):
        parse_config({**raw, "train": {"mirrors": True}})
    with pytest.raises(ConfigError, match="quarter_turns needs square frames"):
        parse_config({**raw, "data": {**data, "frame_shape": [128, 96]}})


def test_config_admits_friedel_channel_only_for_4dstem() -> None:
    model = {"preprocess": "log-unit-friedel"}
    data = {"kind": "4dstem", "materials": ["LiNiO2"], "patterns": 100}
    assert parse_config({"name": "x", "model": model, "data": data}).model.options == model
    with pytest.raises(ConfigError, match="log-unit-friedel"):
        parse_config({"name": "x", "model": model})


def test_quick_training_with_turns(tmp_path: Path) -> None:
    """The turns run inside the loop on the uint16 frames the 4D-STEM sets hold."""
    config = load_config("sped-orientation", quick=True)
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, quarter_turns=True))
    best = train(config, tmp_path / "run", progress=False)
    assert np.isfinite(best["val_loss"]) and (tmp_path / "run" / "best.pt").exists()
