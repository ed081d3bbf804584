"""Paper 2's recipe: the Euler-angle head, the Huber loss on normalised angles, its
learning-rate law and its R² stopping rule, through a quick training run and export."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from orix.quaternion import Rotation

from diffstream.trainer.config import load_config
from diffstream.trainer.datasets import Shard
from diffstream.trainer.evaluation import evaluate_model
from diffstream.trainer.models import build_model
from diffstream.trainer.orientation import EULER_RANGES, euler_to_matrix, indexed_euler, laue_operators
from diffstream.trainer.sped_export import export_sped_checkpoint
from diffstream.trainer.training import (
    Batchable,
    MultiTaskLoss,
    OrientationTask,
    TrainingError,
    _schedule,
    load_checkpoint,
    train,
)

CONFIGS = Path(__file__).resolve().parents[2] / "trainer" / "configs"
PAPER2_RECIPES = {"paper2-cnn": ("paper2-cnn", 64, 5e-4, "paper2"),
                  "paper2-densenet121": ("densenet121", 64, 5e-4, "paper2"),
                  "paper2-swin-t": ("swin_t", 32, 1e-4, "constant")}
"""Architecture, batch size, initial learning rate and schedule of each network as paper 2
trained it: the decaying rate for the CNN and the DenseNets, a constant 1e-4 for Swin-T."""


def test_euler_head_is_orix_bunge() -> None:
    rotations = Rotation.random(100)
    matrices = euler_to_matrix(torch.tensor(rotations.to_euler()))
    assert np.abs(matrices.numpy() - rotations.to_matrix()).max() < 1e-12
    normalised = indexed_euler(rotations.data, "-3m") / np.array(EULER_RANGES)
    assert normalised.min() >= 0 and normalised.max() <= 1


def test_euler_target_is_the_indexed_label() -> None:
    """The simulator draws any of a grain's symmetry equivalents; paper 2's target must not
    depend on which, as an indexing program reports one triplet per orientation."""
    rotations = Rotation.random(60)
    ops = laue_operators("-3m")
    equivalents = Rotation.from_matrix(ops[np.arange(60) % len(ops)] @ rotations.to_matrix())
    task = OrientationTask.for_phases(("LiNiO2",))
    phase = np.array(["LiNiO2"] * 59 + [""])

    def targets(quaternions: np.ndarray) -> np.ndarray:
        shard = Shard(frames=np.zeros((60, 4, 4), np.uint8), lattice=np.zeros(60, np.int8),
                      quaternions=quaternions, phase=phase, usable=phase != "", pc=np.zeros((60, 3)))
        return Batchable.from_shard(shard, task).euler.numpy()

    drawn, moved = targets(rotations.data), targets(equivalents.data)
    assert np.allclose(drawn, moved, atol=1e-6)
    assert np.allclose(drawn[:59], indexed_euler(rotations.data[:59], "-3m") / np.array(EULER_RANGES), atol=1e-6)
    assert np.all(drawn[59] == 0)


def test_huber_loss_on_euler_angles() -> None:
    network = build_model("paper2-cnn", 1, (32, 32), rotation="euler").eval()
    out = network(torch.zeros(4, 32, 32, dtype=torch.uint8))
    batch = {"usable": torch.ones(4), "lattice": torch.zeros(4, dtype=torch.int64), "rotation": out.rotation,
             "operator_row": torch.zeros(4, dtype=torch.int64), "euler": out.euler.detach()}
    loss_fn = MultiTaskLoss(np.eye(3)[None, None], 1.0, 0.0, orientation_loss="euler-huber")
    assert loss_fn(out, batch)[1]["orientation"] == 0.0
    batch["euler"] = batch["euler"] + 0.1
    assert loss_fn(out, batch)[1]["orientation"] == pytest.approx(0.5 * 0.1**2, rel=1e-4)
    six_d = build_model("paper2-cnn", 1, (32, 32))
    with pytest.raises(TrainingError, match="rotation = 'euler'"):
        loss_fn(six_d(torch.zeros(4, 32, 32, dtype=torch.uint8)), batch)


def test_paper2_learning_rate_law() -> None:
    factor = _schedule("paper2", 0)
    assert factor(499) == pytest.approx(0.995) and factor(999) == pytest.approx(0.995**2)


@pytest.mark.parametrize("name", PAPER2_RECIPES)
def test_recipe_is_paper2s(name: str) -> None:
    """The three networks share paper 2's data, target, loss and stopping rule (so they compare
    side by side on one cached dataset) and differ only where the paper trained them apart."""
    config, cnn = load_config(CONFIGS / f"{name}.toml"), load_config(CONFIGS / "paper2-cnn.toml")
    architecture, batch_size, learning_rate, schedule = PAPER2_RECIPES[name]
    assert config.model.architecture == architecture and config.model.input_size == (128, 128)
    assert (config.train.batch_size, config.train.learning_rate, config.train.lr_schedule) == (
        batch_size, learning_rate, schedule)
    assert config.data == cnn.data
    assert config.train.orientation_loss == "euler-huber" and config.model.options["rotation"] == "euler"
    assert (config.train.stop_val_r2, config.train.r2_every) == (0.95, 10)


@pytest.mark.parametrize("name", PAPER2_RECIPES)
def test_quick_run_checks_r2_and_exports(name: str, tmp_path: Path) -> None:
    config = load_config(CONFIGS / f"{name}.toml", quick=True)
    train(config, tmp_path / "run", progress=False)
    checkpoint = load_checkpoint(tmp_path / "run" / "last.pt")
    history = checkpoint["state"]["history"]
    assert all(entry["val_euler_r2"] <= 1 for entry in history)
    assert len(history) == 2 or history[-1]["val_euler_r2"] >= 0.95
    card = export_sped_checkpoint(tmp_path / "run" / "best.pt", tmp_path / "paper2.onnx")
    assert "Euler angles" in card.outputs["rotation_matrix"] and "Laue" not in card.outputs["rotation_matrix"]
    result = evaluate_model(tmp_path / "paper2.onnx", frames=8)
    assert result["frames"] == 8 and result["euler_raw"]["r2"] <= 1
