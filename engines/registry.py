"""Finding models by name or path, and building the best engine this machine can run.

Models that ship with diffstream live in ``engines/models/NAME.onnx`` (package data);
anything else is a path. ``auto`` picks the fastest backend that is installed and has a
device to run on, so the same command line works on a beamline GPU box and a laptop.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from .base import Engine, EngineError
from .model_card import ModelCard, read_card

#: Backends in order of preference for ``auto``; each entry is written in its own module.
BACKENDS = ("onnxruntime",)


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


def create_engine(spec: str | Path, backend: str = "auto") -> Engine:
    """Build ``backend`` (or the best available, for ``auto``) for the model ``spec``."""
    path = resolve_model(spec)
    card = read_card(path)
    if backend == "auto":
        backend = BACKENDS[0]
    if backend == "onnxruntime":
        from .onnxruntime_engine import OnnxRuntimeEngine

        return OnnxRuntimeEngine(path, card)
    raise EngineError(f"unknown engine {backend!r}; this build has: auto, {', '.join(BACKENDS)}")
