"""ONNX Runtime backend: the CPU path every machine has, and CUDA where onnxruntime-gpu is installed."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .base import Engine, EngineError
from .batch_fallback import OutOfDeviceMemory
from .model_card import OUTPUTS, ModelCard


class OnnxRuntimeEngine(Engine):
    name = "onnxruntime"

    def __init__(self, model_path: str | Path, card: ModelCard, *, providers: list[str] | None = None,
                 threads: int | None = None) -> None:
        import onnxruntime as ort

        super().__init__(card)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # One inference at a time, fanned over the cores: the pipeline never runs two batches at once.
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        available = ort.get_available_providers()
        chosen = providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        try:
            self._session = ort.InferenceSession(str(model_path), sess_options=options, providers=chosen)
        except Exception as error:  # ORT raises its own Fail/InvalidGraph types
            raise EngineError(f"ONNX Runtime cannot load {model_path}: {error}") from None
        self._input = self._session.get_inputs()[0].name
        self._outputs = [o.name for o in self._session.get_outputs() if o.name in OUTPUTS]
        if "class_probabilities" not in self._outputs:
            raise EngineError(f"{model_path} has no 'class_probabilities' output")

    @property
    def device(self) -> str:
        provider = self._session.get_providers()[0]
        return "cuda" if provider == "CUDAExecutionProvider" else "cpu"

    def infer(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        try:
            results = self._session.run(self._outputs, {self._input: frames})
        except Exception as error:  # ORT's pybind RuntimeException; only its message tells OOM apart
            message = str(error)
            if any(sign in message.lower() for sign in ("out of memory", "failed to allocate")):
                raise OutOfDeviceMemory(message.splitlines()[0]) from None
            raise
        return dict(zip(self._outputs, results))
