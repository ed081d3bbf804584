"""The TensorRT backend: what can be checked without TensorRT (the ONNX its builder consumes, the
one-line errors for a missing library or driver) everywhere, and its outputs against ONNX Runtime
wherever TensorRT, pycuda and a CUDA GPU exist."""
from __future__ import annotations

import sys
import types

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from diffstream.engines import EngineError, create_engine, load_card, read_card, resolve_model
from diffstream.engines.availability import cuda_devices, installed
from diffstream.engines.tensorrt_engine import builder_onnx, import_tensorrt
from diffstream.live.cli import main
from fixture_model import build_fixture_model, frame_of_class

HAS_TENSORRT = installed("tensorrt") and installed("pycuda") and cuda_devices()[0] > 0


@pytest.fixture(scope="module")
def fixture_path(tmp_path_factory):
    return build_fixture_model(tmp_path_factory.mktemp("model") / "fixture.onnx")


@pytest.fixture
def no_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # None in sys.modules makes the import fail


@pytest.fixture
def tensorrt_without_driver(monkeypatch):
    """tensorrt and pycuda importable, but the CUDA driver finds no GPU (as on this project's machines)."""
    driver = types.ModuleType("pycuda.driver")

    class Error(Exception):
        pass

    def init() -> None:
        raise Error("cuInit failed: no CUDA-capable device is detected")

    driver.Error, driver.init = Error, init
    package = types.ModuleType("pycuda")
    package.driver = driver
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    monkeypatch.setitem(sys.modules, "pycuda", package)
    monkeypatch.setitem(sys.modules, "pycuda.driver", driver)


def test_missing_tensorrt_is_one_clear_error(no_tensorrt, fixture_path):
    with pytest.raises(EngineError, match=r"tensorrt package is not installed \(pip install 'diffstream\[gpu\]'\)"):
        import_tensorrt()
    with pytest.raises(EngineError, match="tensorrt package is not installed"):
        create_engine(fixture_path, "tensorrt")


def test_missing_pycuda_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))
    monkeypatch.setitem(sys.modules, "pycuda", None)
    with pytest.raises(EngineError, match="pycuda is not installed"):
        import_tensorrt()


def test_missing_cuda_driver_is_one_clear_error(tensorrt_without_driver, fixture_path):
    with pytest.raises(EngineError, match="no usable CUDA driver .cuInit failed: no CUDA-capable device"):
        create_engine(fixture_path, "tensorrt")


def test_engine_build_without_tensorrt_exits_2_with_one_line(no_tensorrt, fixture_path, capsys):
    assert main(["engine", "build", str(fixture_path), "--precision", "fp32"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("diffstream: error: tensorrt backend:")
    assert main(["engine", "build", str(fixture_path), "--max-batch", "0"]) == 2
    assert "--max-batch must be at least 1" in capsys.readouterr().err


def test_cpu_path_still_works_after_tensorrt_failed(tensorrt_without_driver, fixture_path):
    with pytest.raises(EngineError):
        create_engine(fixture_path, "tensorrt")
    engine = create_engine(fixture_path, "onnxruntime")
    assert engine.infer(frame_of_class(2)[None])["class_probabilities"].argmax() == 2


@pytest.mark.parametrize("model", ["fixture", "ebsd-lattice"])
def test_builder_onnx_is_valid_and_runs_with_a_dynamic_batch(model, fixture_path):
    path = fixture_path if model == "fixture" else resolve_model(model)
    card = read_card(path)
    data = builder_onnx(path, card)
    graph = onnx.load_from_string(data)
    onnx.checker.check_model(graph, full_check=True)
    assert not graph.metadata_props  # the card stays in the model file, not in what TensorRT parses
    (frames,) = graph.graph.input
    dims = frames.type.tensor_type.shape.dim
    assert dims[0].dim_param == "N" and [d.dim_value for d in dims[1:]] == list(card.input_shape)
    original = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rebuilt = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    for n in (1, 7, 33):
        batch = np.random.default_rng(n).integers(0, 256, (n, *card.input_shape), dtype=np.uint8)
        for a, b in zip(original.run(None, {"frames": batch}), rebuilt.run(None, {"frames": batch})):
            assert a.shape[0] == n
            np.testing.assert_array_equal(a, b)


def test_builder_onnx_rejects_a_model_without_frames_input(fixture_path, tmp_path):
    model = onnx.load(str(fixture_path))
    model.graph.input[0].name = "pixels"
    for node in model.graph.node:
        node.input[:] = ["pixels" if name == "frames" else name for name in node.input]
    bad = tmp_path / "bad.onnx"
    onnx.save(model, str(bad))
    with pytest.raises(EngineError, match="no 'frames' input"):
        builder_onnx(bad, read_card(bad))


@pytest.mark.skipif(not HAS_TENSORRT, reason="needs tensorrt, pycuda and a CUDA GPU (none here)")
@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_tensorrt_matches_onnxruntime_cpu(precision, tmp_path, monkeypatch, same_answers):
    monkeypatch.setenv("DIFFSTREAM_CACHE", str(tmp_path))
    card = load_card("ebsd-lattice")
    frames = np.random.default_rng(0).integers(0, 256, (300, *card.input_shape), dtype=np.uint8)
    expected = create_engine("ebsd-lattice", "onnxruntime").infer(frames)
    engine = create_engine("ebsd-lattice", "tensorrt", precision=precision, max_batch=128)  # 300 = 3 chunks
    assert engine.name == "tensorrt" and engine.device == "cuda"
    same_answers(engine.infer(frames), expected)
    assert list(tmp_path.glob("plans/*.plan"))


def test_unknown_precision_is_refused_before_any_gpu_work(fixture_path):
    with pytest.raises(EngineError, match="precision must be one of fp16, fp32, int8"):
        create_engine(fixture_path, "tensorrt", precision="bf16")
