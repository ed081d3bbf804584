"""ONNX Runtime backend: the CPU path every machine has, and CUDA where onnxruntime-gpu is installed.

On the CPU a batch is split across one single-threaded session per core rather than fanned
over the cores by one session's thread pool. A thread pool waits at every operator for its
slowest thread, so whenever the receiver or the detector takes a core for a moment, every
core waits; independent sessions only lose the moment on the core that was taken. Measured
on 2 cores (docs/benchmarks.md): the same bare rate, about 10 % more frames/s inside the live
pipeline.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
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
        available = ort.get_available_providers()
        chosen = providers or [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        cores = threads or os.cpu_count() or 1
        on_cpu = chosen[0] == "CPUExecutionProvider"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = 1 if on_cpu else cores
        options.inter_op_num_threads = 1
        try:
            self._sessions = [ort.InferenceSession(str(model_path), sess_options=options, providers=chosen)
                              for _ in range(cores if on_cpu else 1)]
        except Exception as error:  # ORT raises its own Fail/InvalidGraph types
            raise EngineError(f"ONNX Runtime cannot load {model_path}: {error}") from None
        session = self._sessions[0]
        self._input = session.get_inputs()[0].name
        self._outputs = [o.name for o in session.get_outputs() if o.name in OUTPUTS]
        if "class_probabilities" not in self._outputs:
            raise EngineError(f"{model_path} has no 'class_probabilities' output")
        self._pool = ThreadPoolExecutor(len(self._sessions) - 1, "diffstream-ort") if len(self._sessions) > 1 else None

    @property
    def device(self) -> str:
        provider = self._sessions[0].get_providers()[0]
        return "cuda" if provider == "CUDAExecutionProvider" else "cpu"

    def infer(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        parts = min(len(self._sessions), len(frames))
        if parts <= 1:
            return self._run(self._sessions[0], frames)
        chunks = np.array_split(frames, parts)
        # The calling thread runs the first chunk itself: one handoff fewer per batch.
        others = [self._pool.submit(self._run, session, chunk)
                  for session, chunk in zip(self._sessions[1:], chunks[1:])]
        results = [self._run(self._sessions[0], chunks[0])] + [future.result() for future in others]
        return {name: np.concatenate([result[name] for result in results]) for name in self._outputs}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()

    def _run(self, session: object, frames: np.ndarray) -> dict[str, np.ndarray]:
        try:
            results = session.run(self._outputs, {self._input: frames})
        except Exception as error:  # ORT's pybind RuntimeException; only its message tells OOM apart
            message = str(error)
            if any(sign in message.lower() for sign in ("out of memory", "failed to allocate")):
                raise OutOfDeviceMemory(message.splitlines()[0]) from None
            raise
        return dict(zip(self._outputs, results))
