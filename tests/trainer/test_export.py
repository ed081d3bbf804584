"""The exported ONNX file: the contract's input and outputs, the card, and agreement with
torch on the same raw frames."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from diffstream.engines.model_card import OUTPUTS, ModelCard, ModelClass, read_card
from diffstream.trainer.datasets import HOLOHEDRY, LATTICES
from diffstream.trainer.export import ExportWrapper, export_network, measure_ort_rate, onnx_session, run_onnx
from diffstream.trainer.models import build_model


def _card() -> ModelCard:
    return ModelCard(name="test-export", kind="ebsd", task=("lattice", "orientation", "confidence"),
                     input_shape=(60, 60), input_dtype="uint8",
                     classes=tuple(ModelClass(c, HOLOHEDRY[c], orientation=c in ("cF", "cI", "hP")) for c in LATTICES),
                     outputs={name: name for name in OUTPUTS}, preprocessing="inside the graph")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    model = build_model("compact")
    with torch.no_grad():  # non-trivial batch-norm statistics, as a trained network has
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    model.eval()
    path = export_network(model, (60, 60), _card(), tmp_path_factory.mktemp("export") / "model.onnx")
    return path, model


def test_graph_contract(exported: tuple[Path, torch.nn.Module]) -> None:
    model = onnx.load(str(exported[0]))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    (frames,) = model.graph.input
    assert frames.name == "frames"
    assert frames.type.tensor_type.elem_type == onnx.TensorProto.UINT8
    dims = frames.type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [60, 60]
    assert [o.name for o in model.graph.output] == list(OUTPUTS)


def test_card_reads_back(exported: tuple[Path, torch.nn.Module]) -> None:
    card = read_card(exported[0])
    assert card == _card()
    assert card.class_names == list(LATTICES)


def test_onnxruntime_matches_torch_on_raw_frames(exported: tuple[Path, torch.nn.Module]) -> None:
    path, model = exported
    frames = np.random.default_rng(1).integers(0, 256, (37, 60, 60), dtype=np.uint8)
    frames[0] = 0  # a blank frame: normalisation must not divide by zero
    probabilities, rotations, confidence = _ort_matching_torch(path, model, frames)
    assert probabilities.shape == (37, 14) and np.allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert rotations.shape == (37, 3, 3) and confidence.shape == (37,)


def test_friedel_channel_exports(tmp_path: Path) -> None:
    """The half turn of the SPED preprocessing's second channel (a flip of both axes) is in
    the graph and agrees with torch on raw frames binned 2 × 2 (the uint16 retyping of SPED
    exports is tested with the shipped config, test_orientation_grid)."""
    torch.manual_seed(0)
    model = build_model("compact", num_classes=1, input_size=(64, 64), preprocess="log-unit-friedel").eval()
    card = dataclasses.replace(_card(), kind="4dstem", input_shape=(128, 128),
                               classes=(ModelClass("LiNiO2", "-3m", orientation=True),))
    path = export_network(model, (128, 128), card, tmp_path / "friedel.onnx")
    frames = np.random.default_rng(2).integers(0, 256, (9, 128, 128), dtype=np.uint8)
    _ort_matching_torch(path, model, frames)


def test_grid_heads_per_laue_group_export(tmp_path: Path) -> None:
    """A grid network orienting m-3m and 6/mmm phases picks each frame's head in the graph as
    torch does (random weights: frames go to both heads, checked)."""
    torch.manual_seed(3)
    model = build_model("compact", rotation="grid", grid_point_group=["m-3m", "m-3m", "6/mmm"],
                        grid_classes=[LATTICES.index(c) for c in ("cF", "cI", "hP")], grid_resolution=10.0).eval()
    frames = np.random.default_rng(4).integers(0, 256, (64, 60, 60), dtype=np.uint8)
    cubic, hexagonal = LATTICES.index("cF"), LATTICES.index("hP")
    with torch.no_grad():  # cF and hP ahead of the rest, each first on half the frames
        logits = model(torch.from_numpy(frames)).logits
        gap = logits[:, hexagonal] - logits[:, cubic]
        middle = gap.sort().values[31:33].mean()
        model.backbone.head[-1].bias[[cubic, hexagonal]] += torch.stack([100 + middle, torch.tensor(100.0)])
    path = export_network(model, (60, 60), _card(), tmp_path / "heads.onnx")
    _ort_matching_torch(path, model, frames)
    with torch.no_grad():
        logits = model(torch.from_numpy(frames)).logits
    oriented = logits.masked_fill(model.grid.class_head < 0, float("-inf")).argmax(dim=1)
    assert set(model.grid.class_head[oriented].tolist()) == {0, 1}


def _ort_matching_torch(path: Path, model: torch.nn.Module, frames: np.ndarray) -> tuple[np.ndarray, ...]:
    """ONNX Runtime's float32 outputs for ``frames``, after checking each is within 1e-4 of torch's."""
    ort_outputs = run_onnx(onnx_session(path, threads=1), frames, batch=16)
    with torch.no_grad():
        torch_outputs = ExportWrapper(model)(torch.from_numpy(frames))
    for name, ours, theirs in zip(OUTPUTS, ort_outputs, torch_outputs):
        assert ours.dtype == np.float32, name
        assert np.abs(ours - theirs.numpy()).max() <= 1e-4, name
    return ort_outputs


def test_rate_benchmark_runs(exported: tuple[Path, torch.nn.Module]) -> None:
    assert measure_ort_rate(exported[0], batch=8, threads=1, seconds=0.05) > 0
