"""The TensorRT plan cache: its key, where it lives, and rebuilding (never loading) a plan for another GPU,
TensorRT version or ONNX file. None of this needs TensorRT."""
from __future__ import annotations

import dataclasses

import pytest

from diffstream.engines.plan_cache import cache_dir, cached_plan, load_plan, plan_key, plan_path, store_plan

BASE = dict(gpu="NVIDIA H100 80GB HBM3", tensorrt="10.3.0", precision="fp16", max_batch=1024)


def test_key_changes_with_everything_a_plan_depends_on():
    key = plan_key(b"onnx bytes", **BASE)
    assert key == plan_key(b"onnx bytes", **BASE) and key.digest() == plan_key(b"onnx bytes", **BASE).digest()
    variants = [
        plan_key(b"onnx bytes!", **BASE),
        plan_key(b"onnx bytes", **{**BASE, "gpu": "NVIDIA A100-SXM4-40GB"}),
        plan_key(b"onnx bytes", **{**BASE, "tensorrt": "10.4.0"}),
        plan_key(b"onnx bytes", **{**BASE, "precision": "int8"}),
        plan_key(b"onnx bytes", **{**BASE, "max_batch": 256}),
    ]
    digests = {key.digest(), *(variant.digest() for variant in variants)}
    assert len(digests) == 6
    assert len({plan_path(k) for k in (key, *variants)}) == 6


def test_bad_precision_or_batch_is_refused():
    with pytest.raises(ValueError, match="precision"):
        plan_key(b"x", **{**BASE, "precision": "fp8"})
    with pytest.raises(ValueError, match="max batch"):
        plan_key(b"x", **{**BASE, "max_batch": 0})


def test_plan_for_another_gpu_version_or_onnx_is_rebuilt_not_loaded(tmp_path):
    built: list[str] = []

    def builder(tag: str):
        return lambda: built.append(tag) or f"plan-{tag}".encode()

    key = plan_key(b"model v1", **BASE)
    assert cached_plan(key, builder("first"), tmp_path) == (b"plan-first", True)
    assert cached_plan(key, builder("again"), tmp_path) == (b"plan-first", False)
    others = {"gpu": plan_key(b"model v1", **{**BASE, "gpu": "NVIDIA L4"}),
              "trt": plan_key(b"model v1", **{**BASE, "tensorrt": "10.9.0"}),
              "onnx": plan_key(b"model v2", **BASE)}
    for tag, other in others.items():
        assert cached_plan(other, builder(tag), tmp_path) == (f"plan-{tag}".encode(), True)
    assert built == ["first", "gpu", "trt", "onnx"]
    assert cached_plan(key, builder("forced"), tmp_path, rebuild=True) == (b"plan-forced", True)


def test_a_plan_file_whose_recorded_key_differs_is_not_loaded(tmp_path):
    key = plan_key(b"model", **BASE)
    path = store_plan(key, b"plan", tmp_path)
    assert load_plan(key, tmp_path) == b"plan"
    other = dataclasses.replace(key, gpu="NVIDIA L4")
    path.with_suffix(".json").write_text(path.with_suffix(".json").read_text().replace(BASE["gpu"], "NVIDIA L4"))
    assert load_plan(key, tmp_path) is None  # the file under key's name says it was built for another GPU
    assert load_plan(other, tmp_path) is None  # and other's name holds nothing
    path.with_suffix(".json").unlink()
    assert load_plan(key, tmp_path) is None


def test_cache_location_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("DIFFSTREAM_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c" / "plans"
    monkeypatch.delenv("DIFFSTREAM_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "x" / "diffstream" / "plans"
