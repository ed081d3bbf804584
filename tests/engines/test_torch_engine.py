"""The torch backend against ONNX Runtime CPU (on the CPU here, on CUDA wherever torch sees a GPU),
the .pt2 export beside the ONNX, and the archive check that keeps pickle out of loading."""
from __future__ import annotations

import json
import shutil
import zipfile

import numpy as np
import pytest
import torch

from diffstream.engines import EngineError, create_engine, load_card, resolve_model
from diffstream.engines.torch_engine import check_program_archive
from diffstream.trainer.export import export_network, export_program
from diffstream.trainer.models import build_model


def _frames(n: int, shape: tuple[int, int] = (60, 60), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


@pytest.fixture(scope="module")
def reference():
    """A fixed batch and ONNX Runtime CPU's answers for the shipped model."""
    frames = _frames(200)
    return frames, create_engine("ebsd-lattice", "onnxruntime").infer(frames)


def test_shipped_program_matches_onnxruntime_cpu(reference, same_answers):
    frames, expected = reference
    engine = create_engine("ebsd-lattice", "torch", precision="fp32" if not torch.cuda.is_available() else None)
    assert engine.name == "torch" and engine.card == load_card("ebsd-lattice")
    got = engine.infer(frames)
    same_answers(got, expected)
    if engine.device == "cpu":  # fp32 on both sides: far tighter than the fp16 tolerance
        np.testing.assert_allclose(got["class_probabilities"], expected["class_probabilities"], atol=1e-5)
    assert engine.infer(frames[:1])["rotation_matrix"].shape == (1, 3, 3)


def test_bf16_autocast_runs_and_agrees_where_the_answer_is_clear(reference):
    frames, expected = reference
    engine = create_engine("ebsd-lattice", "torch", precision="bf16")
    assert engine.precision == "bf16"
    got = engine.infer(frames)
    top2 = np.sort(expected["class_probabilities"], axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > 0.1  # bf16 keeps 8 bits of mantissa: near-ties may flip
    assert clear.sum() >= 10
    np.testing.assert_array_equal(got["class_probabilities"][clear].argmax(1),
                                  expected["class_probabilities"][clear].argmax(1))
    np.testing.assert_allclose(got["class_probabilities"], expected["class_probabilities"], atol=0.05)
    assert not np.allclose(got["class_probabilities"], expected["class_probabilities"], atol=1e-5)  # bf16 did run


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU visible to torch (none here)")
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_cuda_program_matches_onnxruntime_cpu(reference, same_answers, precision):
    frames, expected = reference
    engine = create_engine("ebsd-lattice", "torch", precision=precision)
    assert engine.device == "cuda"
    same_answers(engine.infer(frames), expected, probability_atol=1e-2 if precision == "bf16" else 2e-3)
    same_answers(engine.infer(frames[:37]), {k: v[:37] for k, v in expected.items()})  # another graph bucket


def test_export_writes_a_program_that_matches_its_onnx(tmp_path, same_answers):
    torch.manual_seed(0)
    network = build_model("compact").eval()
    onnx_path = export_network(network, (60, 60), load_card("ebsd-lattice"), tmp_path / "fresh.onnx")
    program = export_program(network, (60, 60), tmp_path / "fresh.pt2")
    assert program == tmp_path / "fresh.pt2" and sorted(p.name for p in tmp_path.iterdir()) == ["fresh.onnx",
                                                                                                 "fresh.pt2"]
    frames = _frames(65, seed=3)
    same_answers(create_engine(onnx_path, "torch").infer(frames), create_engine(onnx_path, "onnxruntime").infer(frames))


def test_missing_program_is_one_clear_error_and_auto_still_runs(tmp_path):
    onnx_path = tmp_path / "alone.onnx"
    shutil.copy(resolve_model("ebsd-lattice"), onnx_path)
    with pytest.raises(EngineError, match="needs alone.pt2 beside the ONNX file"):
        create_engine(onnx_path, "torch")
    assert create_engine(onnx_path).infer(_frames(3))["class_probabilities"].shape == (3, 14)


def _rewrite(source, target, change) -> None:
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for item in old.infolist():
            data = change(item.filename, old.read(item.filename))
            if data is not None:
                new.writestr(item, data)


def test_archive_check_refuses_what_torch_export_load_would_unpickle_or_execute(tmp_path):
    shipped = resolve_model("ebsd-lattice").with_suffix(".pt2")
    check_program_archive(shipped)

    def pickled_weight(name: str, data: bytes) -> bytes:
        if name.endswith("weights_config.json"):
            config = json.loads(data)
            next(iter(config["config"].values()))["use_pickle"] = True
            return json.dumps(config).encode()
        return data

    _rewrite(shipped, tmp_path / "pickled.pt2", pickled_weight)
    with pytest.raises(EngineError, match="pickled tensors"):
        check_program_archive(tmp_path / "pickled.pt2")

    top = zipfile.ZipFile(shipped).namelist()[0].split("/")[0]
    shutil.copy(shipped, tmp_path / "native.pt2")
    with zipfile.ZipFile(tmp_path / "native.pt2", "a") as archive:
        archive.writestr(f"{top}/data/aotinductor/model/model.so", b"\x7fELF")
    with pytest.raises(EngineError, match="aotinductor"):
        check_program_archive(tmp_path / "native.pt2")
    with pytest.raises(EngineError, match="aotinductor"):
        create_engine_beside(tmp_path / "native.pt2")

    _rewrite(shipped, tmp_path / "evil-inputs.pt2",
             lambda name, data: b"cos\nsystem\n(S'true'\ntR." if "sample_inputs" in name else data)
    with pytest.raises(EngineError, match="sample inputs are not plain tensors"):
        check_program_archive(tmp_path / "evil-inputs.pt2")

    (tmp_path / "junk.pt2").write_bytes(b"not a zip")
    with pytest.raises(EngineError, match="not a torch.export archive"):
        check_program_archive(tmp_path / "junk.pt2")


def create_engine_beside(program):
    """The torch engine on ``program``, with the shipped ONNX copied beside it for the card."""
    shutil.copy(resolve_model("ebsd-lattice"), program.with_suffix(".onnx"))
    return create_engine(program.with_suffix(".onnx"), "torch")
