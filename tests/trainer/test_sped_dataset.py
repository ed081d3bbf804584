"""The 4D-STEM (SPED) dataset of paper 2's task: its 60/20/20 split, determinism, what its
frames and labels hold, and paper 2's preprocessing inside the network."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from orix.quaternion import Rotation

from diffstream.trainer.config import ConfigError, load_config, parse_config
from diffstream.trainer.datasets import SPED_SPLIT, class_names, load_split, sped_split_sizes, split_spec
from diffstream.trainer.datasets.store import split_key
from diffstream.trainer.models import build_model
from diffstream.trainer.physics.sped import log_unit_scale

CONFIG = Path(__file__).resolve().parents[2] / "trainer" / "configs" / "sped-orientation.toml"


def _data(**changes: object):
    return dataclasses.replace(load_config(CONFIG, quick=True).data, **changes)


@pytest.mark.parametrize("patterns", [5, 160, 1000, 80_001])
def test_split_is_60_20_20(patterns: int) -> None:
    sizes = sped_split_sizes(patterns)
    assert sum(sizes.values()) == patterns
    for split, fraction in SPED_SPLIT.items():
        assert abs(sizes[split] - fraction * patterns) <= 1


def test_split_specs_hold_the_split_and_frames_without_pattern() -> None:
    data = _data(patterns=1000)
    specs = {split: split_spec(data, split) for split in SPED_SPLIT}
    assert [sum(s.counts) for s in specs.values()] == [600, 200, 200]
    assert all(s.phases == ("LiNiO2",) for s in specs.values())
    assert specs["train"].unusable == round(600 * 0.08 / 0.92)
    assert class_names(data) == ("LiNiO2",)


def test_no_blind_or_demo_split() -> None:
    for split in ("blind", "demo"):
        with pytest.raises(ConfigError, match="only train, val, test"):
            split_spec(_data(), split)


def test_config_needs_patterns() -> None:
    with pytest.raises(ConfigError, match="patterns"):
        parse_config({"name": "x", "data": {"kind": "4dstem"}})
    with pytest.raises(ConfigError, match="kind"):
        parse_config({"name": "x", "data": {"kind": "tem"}})


def test_orientation_spread_narrows_the_orientations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A study set about one orientation: every label near the centre, a cache of its own."""
    monkeypatch.setenv("DIFFSTREAM_CACHE", str(tmp_path))
    data = _data(orientation_centre=(30.0, 45.0, 0.0), orientation_spread=5.0)
    assert split_key(data, split_spec(data, "test")) != split_key(_data(), split_spec(_data(), "test"))
    shard = load_split(data, "test", progress=False)
    centre = Rotation.from_euler(np.radians([30.0, 45.0, 0.0]))
    angles = np.degrees((Rotation(shard.quaternions[shard.usable]) * ~centre).angle)
    assert 2.0 < np.mean(angles) < 8.0 and angles.max() < 25.0
    for bad, message in (({"orientation_spread": 70.0}, "orientation_spread must be"),
                         ({"orientation_spread": 5.0, "kind": "ebsd"}, "4D-STEM sets only"),
                         ({"orientation_spread": 5.0, "orientation_centre": [1.0, 2.0]}, "three Bunge angles")):
        with pytest.raises(ConfigError, match=message):
            parse_config({"name": "x", "data": {"kind": "4dstem", "patterns": 10, **bad}})


@pytest.fixture(scope="module")
def test_split():
    return load_split(_data(), "test", progress=False)


def test_frames_and_labels(test_split) -> None:
    shard = test_split
    assert shard.frames.dtype == np.uint16 and shard.frames.shape[1:] == (128, 128)
    assert int(shard.usable.sum()) == sped_split_sizes(160)["test"] == 32
    assert (shard.lattice[shard.usable] == 0).all() and (shard.lattice[~shard.usable] == -1).all()
    assert set(shard.phase[shard.usable]) == {"LiNiO2"}
    assert np.allclose(np.linalg.norm(shard.quaternions, axis=1), 1.0)
    # Patterns: a direct beam at the centre far above the halo; frames without one do not have it.
    centre = shard.frames[:, 62:66, 62:66].reshape(len(shard), -1).max(axis=1)
    assert (centre[shard.usable] > 10 * np.median(shard.frames[shard.usable], axis=(1, 2))).all()
    assert len(np.unique(shard.quaternions[shard.usable], axis=0)) == 32


def test_deterministic_given_the_seed(test_split, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DIFFSTREAM_CACHE", str(tmp_path))
    again = load_split(_data(), "test", progress=False)
    for key, value in test_split.arrays().items():
        assert np.array_equal(value, again.arrays()[key]), key
    other = load_split(_data(seed=4), "test", progress=False)
    assert not np.array_equal(other.quaternions, test_split.quaternions)
    assert not np.array_equal(other.frames, test_split.frames)


def test_log_unit_preprocessing_is_paper2s(test_split) -> None:
    network = build_model("compact", 1, (128, 128), preprocess="log-unit")
    frames = test_split.frames[:6].copy()
    frames[0] = 7  # a constant frame maps to zeros
    inside = network.normalise(torch.from_numpy(frames))[:, 0].numpy()
    assert np.abs(inside - log_unit_scale(frames.astype(np.float32))).max() < 1e-5
    assert (inside[0] == 0).all() and inside[1:].min() == 0 and np.isclose(inside[1:].max(), 1)
