"""The grid rotation head: its bins cover the fundamental zone, the label's bump is the same
for every symmetry equivalent and decodes back to the label, the loss is zero exactly at the
bump, and a grid network trains, exports and runs the same in ONNX Runtime."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from orix.quaternion import Rotation

from diffstream.trainer.config import load_config
from diffstream.trainer.datasets import LATTICES
from diffstream.trainer.export import ExportWrapper, onnx_session, run_onnx
from diffstream.trainer.models import ModelSpecError, build_model
from diffstream.trainer.orientation import disorientation_deg, laue_operators
from diffstream.trainer.orientation_grid import GridHeads, GridRotation, grid_loss, orientation_grid, soft_targets
from diffstream.trainer.sped_export import export_sped_checkpoint
from diffstream.trainer.training import (
    OrientationTask,
    TrainingError,
    _build,
    load_checkpoint,
    model_from_checkpoint,
    train,
)

CONFIGS = Path(__file__).resolve().parents[2] / "trainer" / "configs"
RESOLUTION = 10.0


@pytest.fixture(scope="module")
def head() -> GridRotation:
    return GridRotation("-3m", RESOLUTION)


def _random_matrices(n: int, seed: int) -> np.ndarray:
    """Rotations uniform on SO(3): normalised Gaussian quaternions."""
    return Rotation(np.random.default_rng(seed).normal(size=(n, 4))).to_matrix().reshape(n, 3, 3)


def _nearest_bin(targets: np.ndarray, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index and angle (degrees) of each target's nearest bin, counting symmetry equivalents."""
    equivalents = np.einsum("kil,nlj->nkij", laue_operators("-3m"), targets)
    traces = np.einsum("gij,nkij->ngk", grid, equivalents).max(axis=2)
    return traces.argmax(axis=1), np.degrees(np.arccos(np.clip((traces.max(axis=1) - 1) / 2, -1, 1)))


def _labels(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    targets = torch.tensor(_random_matrices(n, seed), dtype=torch.float32)
    operators = torch.tensor(laue_operators("-3m"), dtype=torch.float32).expand(n, -1, -1, -1)
    return targets, operators


def test_bins_cover_the_fundamental_zone() -> None:
    """Every random orientation has a bin within about one resolution, counting equivalents;
    a grid on one side of the zone only would leave some three times as far."""
    _, nearest = _nearest_bin(_random_matrices(1000, 0), orientation_grid("-3m", RESOLUTION))
    assert nearest.max() < 1.2 * RESOLUTION and np.median(nearest) < 0.6 * RESOLUTION


def test_neighbours_are_equivalents_next_to_their_bin(head: GridRotation) -> None:
    index = head.neighbour_index.numpy()
    matrices = head.neighbour_matrices.numpy().astype(np.float64)
    grid = head.grid.numpy().astype(np.float64)
    assert np.array_equal(index[:, 0], np.arange(head.bins))
    rows = np.random.default_rng(1).choice(head.bins, 100, replace=False)
    flat_grid = grid[index[rows]].reshape(-1, 3, 3)
    flat_matrices = matrices[rows].reshape(-1, 3, 3)
    assert disorientation_deg(flat_matrices, flat_grid, laue_operators("-3m")).max() < 0.05  # float32 matrices
    direct = disorientation_deg(flat_matrices, np.repeat(grid[rows], index.shape[1], 0), np.eye(3)[None])
    assert direct.max() < 2 * RESOLUTION


def test_label_bump_ignores_which_equivalent_was_drawn(head: GridRotation) -> None:
    targets, operators = _labels(50, 2)
    moved = operators[:, 3] @ targets
    original = soft_targets(targets, head.grid, operators, RESOLUTION)
    assert torch.allclose(original, soft_targets(moved, head.grid, operators, RESOLUTION), atol=1e-5)
    assert torch.allclose(original.sum(dim=1), torch.ones(50), atol=1e-5)
    nearest, _ = _nearest_bin(targets.numpy().astype(np.float64), head.grid.numpy().astype(np.float64))
    assert np.array_equal(original.argmax(dim=1).numpy(), nearest)


def test_decoding_the_bump_gives_back_the_label(head: GridRotation) -> None:
    """Finer than the grid: the weighted mean over the neighbours interpolates between bins."""
    targets, operators = _labels(400, 3)
    decoded = head(torch.log(soft_targets(targets, head.grid, operators, RESOLUTION)))
    error = disorientation_deg(decoded.numpy(), targets.numpy(), laue_operators("-3m"))
    assert np.median(error) < 1.5 and np.percentile(error, 95) < 6.0
    assert torch.allclose(decoded @ decoded.transpose(1, 2), torch.eye(3).expand(400, 3, 3), atol=1e-5)


def test_loss_is_zero_at_the_bump_only(head: GridRotation) -> None:
    targets, operators = _labels(20, 4)
    bump = torch.log(soft_targets(targets, head.grid, operators, RESOLUTION))
    assert grid_loss(bump, targets, operators, head).abs().max() < 1e-4
    assert grid_loss(bump.roll(1, dims=0), targets, operators, head).min() > 1.0


def test_grid_options_are_checked() -> None:
    with pytest.raises(ModelSpecError, match="need rotation = 'grid'"):
        build_model("compact", 1, (32, 32), grid_resolution=10.0)
    with pytest.raises(ModelSpecError, match="needs grid_point_group and grid_resolution"):
        build_model("compact", 1, (32, 32), rotation="grid", grid_resolution=10.0)
    with pytest.raises(ModelSpecError, match="grid_resolution"):
        build_model("compact", 1, (32, 32), rotation="grid", grid_point_group="-3m", grid_resolution=1.0)


def test_ebsd_grid_gets_a_head_per_laue_group() -> None:
    """Ni and Fe are m-3m, Ti 6/mmm: the trainer gives the network one grid for each, and
    each phase's lattice as the class whose rating picks the head."""
    config = load_config(CONFIGS / "ebsd-lattice.toml", quick=True)
    options = {**config.model.options, "rotation": "grid", "grid_resolution": 10.0}
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, options=options))
    model = _build(config, OrientationTask.for_phases(config.data.orientation_phases))
    assert model.options["grid_point_group"] == ["m-3m", "m-3m", "6/mmm"]
    assert model.options["grid_classes"] == [LATTICES.index(c) for c in ("cF", "cI", "hP")]
    assert [head.point_group for head in model.grid.heads] == ["m-3m", "6/mmm"]
    assert model.grid.bins == len(orientation_grid("m-3m", 10.0)) + len(orientation_grid("6/mmm", 10.0))


def test_the_grids_come_from_the_data_not_the_config() -> None:
    config = load_config(CONFIGS / "ebsd-lattice.toml", quick=True)
    options = {**config.model.options, "rotation": "grid", "grid_resolution": 10.0, "grid_classes": [0, 0, 0]}
    config = dataclasses.replace(config, model=dataclasses.replace(config.model, options=options))
    with pytest.raises(TrainingError, match="grid_classes comes from data.orientation_phases"):
        _build(config, OrientationTask.for_phases(config.data.orientation_phases))


@pytest.fixture(scope="module")
def ebsd_heads() -> GridHeads:
    return GridHeads(["m-3m", "m-3m", "6/mmm"], [LATTICES.index(c) for c in ("cF", "cI", "hP")], len(LATTICES),
                     RESOLUTION)


def _bumps(heads: GridHeads, cubic: torch.Tensor, hexagonal: torch.Tensor) -> torch.Tensor:
    """Bin logits holding ``cubic``'s label bump on the m-3m grid and ``hexagonal``'s on the 6/mmm one."""
    parts = []
    for head, target in zip(heads.heads, (cubic, hexagonal)):
        operators = torch.tensor(laue_operators(head.point_group), dtype=torch.float32).expand(len(target), -1, -1, -1)
        parts.append(torch.log(soft_targets(target, head.grid, operators, RESOLUTION)))
    return torch.cat(parts, dim=1)


def test_the_rotation_comes_from_the_likeliest_oriented_class(ebsd_heads: GridHeads) -> None:
    """hP rated highest gives the 6/mmm grid's answer, cF or cI the m-3m one's; a frame rated
    aP first and cI second (aP has no orientation) still gets the m-3m answer."""
    cubic = torch.tensor(_random_matrices(4, 11), dtype=torch.float32)
    hexagonal = torch.tensor(_random_matrices(4, 12), dtype=torch.float32)
    class_logits = torch.zeros(4, len(LATTICES))
    for row, ranking in enumerate((["hP"], ["cF"], ["cI"], ["aP", "cI"])):
        for rank, name in enumerate(ranking):
            class_logits[row, LATTICES.index(name)] = 10.0 - rank
    rotations = ebsd_heads(_bumps(ebsd_heads, cubic, hexagonal), class_logits).double().numpy()
    expected = np.stack([hexagonal[0], cubic[1], cubic[2], cubic[3]])
    groups = ["6/mmm", "m-3m", "m-3m", "m-3m"]
    errors = [disorientation_deg(rotations[i : i + 1], expected[i : i + 1], laue_operators(g))[0]
              for i, g in enumerate(groups)]
    assert max(errors) < 4.0


def test_each_frame_is_scored_on_its_own_phase_head(ebsd_heads: GridHeads) -> None:
    """A Ti frame's loss is zero at the bump on the 6/mmm grid whatever the m-3m bins hold,
    and a Ni frame's the other way round."""
    cubic = torch.tensor(_random_matrices(2, 13), dtype=torch.float32)
    hexagonal = torch.tensor(_random_matrices(2, 14), dtype=torch.float32)
    logits = _bumps(ebsd_heads, cubic, hexagonal)
    rows = torch.tensor([0, 2])  # Ni, Ti
    targets = torch.stack([cubic[0], hexagonal[1]])
    operators = torch.tensor(OrientationTask.for_phases(("Ni", "Fe", "Ti")).operators, dtype=torch.float32)[rows]
    picked = torch.stack([logits[0], logits[1]])
    assert ebsd_heads.loss(picked, targets, operators, rows).abs().max() < 1e-4
    cubic_bins = ebsd_heads.slices[0][1]
    scrambled = picked.clone()
    scrambled[1, :cubic_bins] = scrambled[1, :cubic_bins].roll(7)
    scrambled[0, cubic_bins:] = scrambled[0, cubic_bins:].roll(7)
    assert ebsd_heads.loss(scrambled, targets, operators, rows).abs().max() < 1e-4
    assert ebsd_heads.loss(picked.flip(0), targets, operators, rows).min() > 1.0


def test_grid_heads_need_a_class_per_laue_group() -> None:
    with pytest.raises(ModelSpecError, match="class 0 holds orientation phases of two Laue groups"):
        build_model("compact", 14, (32, 32), rotation="grid", grid_point_group=["m-3m", "6/mmm"],
                    grid_resolution=10.0)
    with pytest.raises(ModelSpecError, match="grid_classes"):
        build_model("compact", 14, (32, 32), rotation="grid", grid_point_group=["m-3m", "6/mmm"],
                    grid_classes=[0, 14], grid_resolution=10.0)


def test_quick_grid_run_exports_and_matches_onnxruntime(tmp_path: Path) -> None:
    config = load_config(CONFIGS / "sped-orientation.toml", quick=True)
    train(config, tmp_path / "run", progress=False)
    checkpoint = load_checkpoint(tmp_path / "run" / "best.pt")
    assert checkpoint["model"]["options"]["grid_point_group"] == ["-3m"]
    card = export_sped_checkpoint(tmp_path / "run" / "best.pt", tmp_path / "grid.onnx")
    assert "grid" in card.outputs["rotation_matrix"]
    frames = np.random.default_rng(5).integers(0, 3000, (9, 128, 128), dtype=np.uint16)
    ort_outputs = run_onnx(onnx_session(tmp_path / "grid.onnx", threads=1), frames, batch=4)
    with torch.no_grad():
        torch_outputs = ExportWrapper(model_from_checkpoint(checkpoint))(torch.from_numpy(frames))
    for ours, theirs in zip(ort_outputs, torch_outputs):
        assert np.abs(ours - theirs.numpy()).max() <= 1e-4
