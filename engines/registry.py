"""Finding models by name or path, and building the best engine this machine can run.

Models that ship with diffstream live in ``engines/models/NAME.onnx`` (package data);
anything else is a path. ``auto`` picks the fastest backend that is installed and has a
device to run on, so the same command line works on a beamline GPU box and a laptop.
"""
from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path

from .base import Engine, EngineError
from .batch_fallback import BatchFallback
from .model_card import ModelCard, read_card

#: Backends in ``auto``'s order of preference: TensorRT, then torch on CUDA, then ONNX Runtime
#: (CUDA provider where installed, else CPU). torch on the CPU is never chosen by ``auto``.
BACKENDS = ("tensorrt", "torch", "onnxruntime")

log = logging.getLogger(__name__)


class ModelNotFoundError(FileNotFoundError):
    """Neither a shipped model name nor an existing file."""


def shipped_models() -> dict[str, Path]:
    """Name → path of every model file inside the installed package."""
    folder = resources.files("diffstream.engines") / "models"
    if not folder.is_dir():
        return {}
    return {Path(str(entry)).stem: Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith(".onnx")}


def resolve_model(spec: str | Path) -> Path:
    """A shipped model's name, or a path to an ONNX file."""
    path = Path(spec)
    if path.suffix == ".onnx" or path.exists():
        if not path.is_file():
            raise ModelNotFoundError(f"no model file at {path}")
        return path
    models = shipped_models()
    if str(spec) in models:
        return models[str(spec)]
    names = ", ".join(sorted(models)) or "none installed"
    raise ModelNotFoundError(f"unknown model {spec!r}: not a file, and not a shipped model ({names})")


def load_card(spec: str | Path) -> ModelCard:
    return read_card(resolve_model(spec))


def create_engine(spec: str | Path, backend: str = "auto", *, precision: str | None = None,
                  max_batch: int | None = None) -> Engine:
    """Build ``backend`` (or, for ``auto``, the first in :data:`BACKENDS` that runs here) for the
    model ``spec``, wrapped in :class:`~.batch_fallback.BatchFallback` so that a batch too large
    for the device is halved instead of failing. ``precision`` (fp16, fp32, bf16, int8) and
    ``max_batch`` apply where the backend has them; ONNX Runtime runs the model as exported."""
    path = resolve_model(spec)
    card = read_card(path)
    if backend == "auto":
        return BatchFallback(_auto_engine(path, card, precision, max_batch))
    if backend not in BACKENDS:
        raise EngineError(f"unknown engine {backend!r}; this build has: auto, {', '.join(BACKENDS)}")
    return BatchFallback(_build(backend, path, card, precision, max_batch))


def _auto_engine(path: Path, card: ModelCard, precision: str | None, max_batch: int | None) -> Engine:
    """The first backend that is installed, has its device and builds; each refusal is logged."""
    from .availability import backend_statuses

    for status in backend_statuses():
        if not status.available or (status.name == "torch" and status.device != "cuda"):
            continue
        if status.name == "torch" and not path.with_suffix(".pt2").is_file():
            log.info("auto: skipping torch, no %s beside the model", path.with_suffix(".pt2").name)
            continue
        try:
            return _build(status.name, path, card, precision, max_batch)
        except EngineError as error:
            log.warning("auto: %s unavailable: %s", status.name, error)
    return _build("onnxruntime", path, card, None, None)


def _build(backend: str, path: Path, card: ModelCard, precision: str | None, max_batch: int | None) -> Engine:
    if backend == "tensorrt":
        from .tensorrt_engine import DEFAULT_MAX_BATCH, TensorRTEngine

        return TensorRTEngine(path, card, precision=precision or "fp16", max_batch=max_batch or DEFAULT_MAX_BATCH)
    if backend == "torch":
        from .torch_engine import TorchEngine

        return TorchEngine(path.with_suffix(".pt2"), card, precision=precision)
    from .onnxruntime_engine import OnnxRuntimeEngine

    if precision not in (None, "fp32"):
        raise EngineError(f"onnxruntime runs the model as exported (fp32); --precision {precision} is for "
                          "tensorrt and torch")
    return OnnxRuntimeEngine(path, card)
