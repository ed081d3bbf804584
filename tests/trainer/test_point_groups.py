"""Paper 1's point-group study: ordered vs disordered labels, class balance, and the whole
quick training path of its config."""
from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import numpy as np
import pytest

from diffstream.engines.model_card import read_card
from diffstream.trainer.config import ConfigError, load_config, parse_config
from diffstream.trainer.datasets import class_names, class_point_groups, load_split, split_spec
from diffstream.trainer.datasets.lattices import ORDERING_CLASSES, POINT_GROUP_PAIRS, class_index
from diffstream.trainer.evaluation import evaluate_model, load_for_evaluation
from diffstream.trainer.evaluation_report import write_report
from diffstream.trainer.export import export_checkpoint
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


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """The config's quick variant trained once: its best metrics and run folder."""
    run = tmp_path_factory.mktemp("point-groups") / "run"
    return train(load_config(CONFIG, quick=True), run, progress=False), run


def test_quick_training(quick_run: tuple[dict, Path]) -> None:
    best, run = quick_run
    config = load_config(CONFIG, quick=True)
    checkpoint = load_checkpoint(run / "best.pt")
    assert checkpoint["classes"] == list(ORDERING_CLASSES) and checkpoint["model"]["num_classes"] == 2
    assert 0 <= best["val_lattice_accuracy"] <= 1
    blind = load_split(config.data, "blind", progress=False)
    expected = np.array([class_index(p, "ordering") for p in blind.phase])
    assert np.array_equal(blind.lattice, expected) and set(expected) == {0, 1}


def test_class_point_groups_are_the_materials_laue_group(monkeypatch: pytest.MonkeyPatch) -> None:
    assert class_point_groups(load_config(CONFIG).data) == ("m-3m", "m-3m")
    monkeypatch.setitem(POINT_GROUP_PAIRS, "training", (*POINT_GROUP_PAIRS["training"], ("TiC", "Ti")))
    mixed = dataclasses.replace(load_config(CONFIG).data, materials=("FeNi3", "Ni", "Ti"))
    with pytest.raises(ConfigError, match="one Laue group"):
        class_point_groups(mixed)


def test_export_and_blind_evaluation(quick_run: tuple[dict, Path], tmp_path: Path) -> None:
    """The exported card names the two classes under m-3m, and the blind evaluation scores
    the pairs by material without the lattice model's superstructure subset."""
    _, run = quick_run
    out = tmp_path / "point-groups.onnx"
    card = export_checkpoint(run / "best.pt", out, evaluate=True)
    assert [(c.name, c.point_group) for c in card.classes] == [("disordered", "m-3m"), ("ordered", "m-3m")]
    assert read_card(out).metrics["blind"]["per_lattice"].keys() == {"disordered", "ordered"}
    result = evaluate_model(out, blind=True, frames=4)
    assert result["classes"] == list(ORDERING_CLASSES)
    assert result["materials"] == ["Ni3Al", "Mo3Si", "TaC", "Al", "FeAl", "W"]
    assert np.array(result["confusion_by_material"]).sum() == 24
    assert "accuracy_without_ordered_superstructures" not in result
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a classifier's training curves have no empty angle panel
        report = write_report(result, load_for_evaluation(out), tmp_path / "report")
    assert report["files"] == ["confusion.png", "confusion_by_material.png", "training_curves.png"]
