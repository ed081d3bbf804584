"""Inference backends behind one ``Engine`` interface, and the models they run.

No backend module is imported here: each pulls in its own heavy library (ONNX Runtime,
TensorRT, torch) only when it is chosen.
"""
from .base import Engine, EngineError
from .batch_fallback import BatchFallback, OutOfDeviceMemory
from .model_card import ModelCard, ModelCardError, ModelClass, read_card
from .registry import BACKENDS, ModelNotFoundError, create_engine, load_card, resolve_model, shipped_models

__all__ = [
    "BACKENDS",
    "BatchFallback",
    "Engine",
    "EngineError",
    "ModelCard",
    "ModelCardError",
    "ModelClass",
    "ModelNotFoundError",
    "OutOfDeviceMemory",
    "create_engine",
    "load_card",
    "read_card",
    "resolve_model",
    "shipped_models",
]
