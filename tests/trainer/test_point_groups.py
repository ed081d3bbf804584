"""Paper 1's point-group study: ordered vs disordered labels, class balance, and the whole
quick training path of its config."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from diffstream.trainer.config import ConfigError, load_config, parse_config
from diffstream.trainer.datasets import class_names, load_split, split_spec
from diffstream.trainer.datasets.lattices import ORDERING_CLASSES, POINT_GROUP_PAIRS, class_index
from diffstream.trainer.training import load_checkpoint, train

CONFIG = Path(__file__).resolve().parents[2] / "trainer" / "configs" / "paper1-point-groups.toml"


def test_pairs_are_labelled_ordered_then_disordered() -> None:
    for pairs in POINT_GROUP_PAIRS.values():
        for ordered, disordered in pairs:
            assert ORDERING_CLASSES[class_index(ordered, "ordering")] == "ordered"
            assert ORDERING_CLASSES[class_index(disordered, "ordering")] == "disordered"
    assert class_index("NiAl") == class_index("Cr3Si")  # both cP as lattices
    with pytest.raises(ValueError, match="point-group pairs"):
        class_index("quartz", "ordering")


def test_config_splits() -> None:
    data = load_config(CONFIG).data
    assert class_names(data) == ORDERING_CLASSES
    train_spec = split_spec(data, "train")
    counts = dict(zip(train_spec.phases, train_spec.counts))
    assert set(counts.values()) == {640}  # paper 1: 640 patterns per material
    assert split_spec(data, "blind").phases == ("Ni3Al", "Mo3Si", "TaC", "Al", "FeAl", "W")
    with pytest.raises(ConfigError, match="labels"):
        parse_config({"name": "x", "data": {"labels": "space-group"}})


def test_quick_training(tmp_path: Path) -> None:
    config = load_config(CONFIG, quick=True)
    best = train(config, tmp_path / "run", progress=False)
    checkpoint = load_checkpoint(tmp_path / "run" / "best.pt")
    assert checkpoint["classes"] == list(ORDERING_CLASSES) and checkpoint["model"]["num_classes"] == 2
    assert 0 <= best["val_lattice_accuracy"] <= 1
    blind = load_split(config.data, "blind", progress=False)
    expected = np.array([class_index(p, "ordering") for p in blind.phase])
    assert np.array_equal(blind.lattice, expected) and set(expected) == {0, 1}
