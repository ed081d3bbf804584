"""Paper 2's recipe: the Euler-angle head, the Huber loss on normalised angles, its
learning-rate law and its R² stopping rule, through a quick training run and export."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from orix.quaternion import Rotation

from diffstream.trainer.config import load_config
from diffstream.trainer.evaluation import evaluate_model
from diffstream.trainer.models import build_model
from diffstream.trainer.orientation import euler_to_matrix, normalised_euler
from diffstream.trainer.sped_export import export_sped_checkpoint
from diffstream.trainer.training import MultiTaskLoss, TrainingError, _schedule, load_checkpoint, train

CONFIG = Path(__file__).resolve().parents[2] / "trainer" / "configs" / "paper2-cnn.toml"


def test_euler_head_is_orix_bunge() -> None:
    rotations = Rotation.random(100)
    matrices = euler_to_matrix(torch.tensor(rotations.to_euler()))
    assert np.abs(matrices.numpy() - rotations.to_matrix()).max() < 1e-12
    normalised = normalised_euler(rotations.data)
    assert normalised.min() >= 0 and normalised.max() <= 1


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


def test_quick_run_checks_r2_and_exports(tmp_path: Path) -> None:
    config = load_config(CONFIG, quick=True)
    assert config.train.batch_size == 32 and load_config(CONFIG).train.batch_size == 64
    train(config, tmp_path / "run", progress=False)
    checkpoint = load_checkpoint(tmp_path / "run" / "last.pt")
    history = checkpoint["state"]["history"]
    assert all(entry["val_euler_r2"] <= 1 for entry in history)
    assert len(history) == 2 or history[-1]["val_euler_r2"] >= 0.95
    export_sped_checkpoint(tmp_path / "run" / "best.pt", tmp_path / "paper2.onnx")
    result = evaluate_model(tmp_path / "paper2.onnx", frames=8)
    assert result["frames"] == 8 and result["euler_raw"]["r2"] <= 1
