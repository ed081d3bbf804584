"""Choosing a backend (auto's order and its fallbacks), listing them, and the benchmark records."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from diffstream.engines import BACKENDS, Engine, EngineError, create_engine, registry
from diffstream.engines import availability as availability_module
from diffstream.engines.availability import BackendStatus
from diffstream.live.cli import main
from diffstream.live.live_bench import RECORD_KEYS, append_records
from fixture_model import build_fixture_model, fixture_card


@pytest.fixture(scope="module")
def fixture_path(tmp_path_factory):
    return build_fixture_model(tmp_path_factory.mktemp("model") / "fixture.onnx")


class Stub(Engine):
    def __init__(self, name: str) -> None:
        super().__init__(fixture_card())
        self.name = name

    def infer(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        return {"class_probabilities": np.zeros((len(frames), 3), np.float32)}


def _pretend(monkeypatch, *, tensorrt: bool, torch_device: str) -> list[str]:
    """Claim a machine with these backends; builds are recorded, tensorrt's fails as on a broken driver."""
    statuses = [BackendStatus("tensorrt", tensorrt, "cuda", ""), BackendStatus("torch", True, torch_device, ""),
                BackendStatus("onnxruntime", True, "cpu", "")]
    monkeypatch.setattr(availability_module, "backend_statuses", lambda: statuses)
    tried: list[str] = []

    def build(backend, path, card, precision, max_batch):
        tried.append(backend)
        if backend == "tensorrt":
            raise EngineError("tensorrt backend: no usable CUDA driver (cuInit failed)")
        return Stub(backend)

    monkeypatch.setattr(registry, "_build", build)
    return tried


def test_auto_order_is_tensorrt_then_torch_cuda_then_onnxruntime(monkeypatch, caplog):
    assert BACKENDS == ("tensorrt", "torch", "onnxruntime")
    tried = _pretend(monkeypatch, tensorrt=True, torch_device="cuda")
    with caplog.at_level(logging.WARNING):
        engine = create_engine("ebsd-lattice")  # ships its .pt2
    assert engine.name == "torch" and tried == ["tensorrt", "torch"]
    assert "auto: tensorrt unavailable: tensorrt backend: no usable CUDA driver" in caplog.text


def test_auto_never_picks_torch_on_the_cpu(monkeypatch):
    tried = _pretend(monkeypatch, tensorrt=False, torch_device="cpu")
    assert create_engine("ebsd-lattice").name == "onnxruntime" and tried == ["onnxruntime"]


def test_auto_skips_torch_without_a_program_beside_the_model(monkeypatch, fixture_path):
    tried = _pretend(monkeypatch, tensorrt=False, torch_device="cuda")
    assert create_engine(fixture_path).name == "onnxruntime" and tried == ["onnxruntime"]


def test_auto_on_a_machine_without_cuda_runs_onnxruntime(monkeypatch, fixture_path):
    monkeypatch.setattr(availability_module, "cuda_devices", lambda: (0, "no CUDA driver (libcuda) on this machine"))
    engine = create_engine("ebsd-lattice")
    assert (engine.name, engine.device) == ("onnxruntime", "cpu")
    statuses = {s.name: s for s in availability_module.backend_statuses()}
    assert not statuses["tensorrt"].available and statuses["tensorrt"].detail


def test_precision_is_refused_for_onnxruntime(fixture_path):
    with pytest.raises(EngineError, match="fp32"):
        create_engine(fixture_path, "onnxruntime", precision="fp16")


def test_engines_command_lists_every_backend(capsys):
    assert main(["engines", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [entry["name"] for entry in listed] == list(BACKENDS)
    for entry in listed:
        assert set(entry) == {"name", "available", "device", "detail"} and entry["detail"]
        assert entry["device"] in ("cpu", "cuda") and isinstance(entry["available"], bool)
    onnxruntime = listed[-1]
    assert onnxruntime["available"]
    assert main(["engines"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and all(line.startswith(name) for line, name in zip(lines, BACKENDS))


def _record(device: str, batch: int) -> dict:
    return dict.fromkeys(RECORD_KEYS) | {"device": device, "batch": batch}


def test_records_append_to_a_list_file_and_never_rewrite_an_older_layout(tmp_path):
    (first,) = append_records([_record("cpu-2cores", 1)], "live", tmp_path)
    (again,) = append_records([_record("cpu-2cores", 2)], "live", tmp_path)
    assert first == again and [r["batch"] for r in json.loads(first.read_text())] == [1, 2]
    old = {"command": "diffstream bench live", "runs": [{"engine_ceiling_fps": 1.0}]}
    first.write_text(json.dumps(old))
    paths = append_records([_record("cpu-2cores", 3), _record("cuda-nvidia-l4", 4)], "live", tmp_path)
    assert json.loads(first.read_text()) == old
    assert [p.name.split("-2")[0] for p in paths] == ["live-records-cpu", "live-cuda-nvidia-l4"]
    assert [r["batch"] for r in json.loads(paths[0].read_text())] == [3]


def test_bench_engine_prints_a_table_and_records_every_configuration(tmp_path, monkeypatch, capsys, fixture_path):
    monkeypatch.chdir(tmp_path)
    argv = ["bench", "engine", "--model", str(fixture_path), "--engine", "onnxruntime", "--batches", "1,8",
            "--seconds", "0", "--record"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "ceiling onnxruntime (cpu, fp32)" in out
    (path,) = (tmp_path / "bench" / "results").glob("engine-*.json")
    records = json.loads(path.read_text())
    assert [r["batch"] for r in records] == [1, 8]
    for record in records:
        assert set(RECORD_KEYS) <= set(record) and record["engine_fps"] > 0
        assert record["end_to_end_fps"] is None and record["latency_p99_ms"] is None
        assert (record["engine"], record["precision"], record["frame_shape"]) == ("onnxruntime", "fp32", [60, 60])
    assert main(["bench", "engine", "--engine", "warp", "--batches", "1"]) == 2
    assert main(["bench", "engine", "--batches", "0"]) == 2


@pytest.mark.slow
def test_bench_live_record_has_the_shared_keys(tmp_path, monkeypatch, capsys, fixture_path):
    monkeypatch.chdir(tmp_path)
    argv = ["bench", "live", "--model", str(fixture_path), "--engine", "onnxruntime", "--frames", "512",
            "--batch-size", "64", "--latency-rate", "500", "--json", "--record"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    (path,) = (tmp_path / "bench" / "results").glob("live-*.json")
    (record,) = json.loads(path.read_text())
    assert set(RECORD_KEYS) <= set(record)
    assert record["engine_fps"] == result["engine_ceiling_fps"] > 0
    assert record["end_to_end_fps"] == result["pipeline"]["end_to_end_fps"] > 0
    assert record["latency_p99_ms"] == result["paced"]["latency_ms"]["p99"]
    assert (record["batch"], record["frame_shape"], record["precision"]) == (64, [60, 60], "fp32")


def test_device_description_names_the_gpu_and_leaves_the_cpu_alone(monkeypatch):
    from diffstream.engines import availability

    monkeypatch.setattr(availability, "cuda_device_name", lambda: "NVIDIA H100 80GB HBM3")
    assert availability.device_description("cuda") == "NVIDIA H100 80GB HBM3"
    assert availability.device_description("cpu") == "cpu"
    monkeypatch.setattr(availability, "cuda_device_name", lambda: "")
    assert availability.device_description("cuda") == "cuda"
