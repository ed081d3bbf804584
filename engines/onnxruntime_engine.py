"""ONNX Runtime backend: the CPU path every machine has, and CUDA where onnxruntime-gpu is installed.

On the CPU there is one single-threaded session per core rather than one session whose
thread pool fans every operator over the cores. A thread pool waits at every operator for
its slowest thread, so whenever the receiver or the detector takes a core for a moment,
every core waits; independent sessions only lose the moment on the core that was taken.
A call alone splits its batch across all the sessions (the bare engine, one batch at a
time); calls from several threads at once share the sessions out, one each when there are
as many callers as sessions, which is how the live pipeline runs it (``concurrency``): no
batch then waits for the slowest slice of itself. Measured on 2 cores (docs/benchmarks.md).
"""
from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
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
        self._idle: queue.SimpleQueue = queue.SimpleQueue()
        for each in self._sessions:
            self._idle.put(each)
        self._callers = 0
        self._callers_lock = threading.Lock()

    @property
    def device(self) -> str:
        provider = self._sessions[0].get_providers()[0]
        return "cuda" if provider == "CUDAExecutionProvider" else "cpu"

    @property
    def concurrency(self) -> int:
        return len(self._sessions)

    def infer(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        with self._claim(len(frames)) as sessions:
            parts = len(sessions)
            if parts == 1:
                return self._run(sessions[0], frames)
            chunks = np.array_split(frames, parts)
            # The calling thread runs the first chunk itself: one handoff fewer per batch.
            others = [self._pool.submit(self._run, session, chunk) for session, chunk in zip(sessions[1:], chunks[1:])]
            results = [self._run(sessions[0], chunks[0])] + [future.result() for future in others]
        return {name: np.concatenate([result[name] for result in results]) for name in self._outputs}

    @contextmanager
    def _claim(self, frames: int) -> Iterator[list]:
        """The sessions a call of ``frames`` frames may use: its share of all of them among the
        calls in progress, no more than it has frames, at least one (waiting for it if every
        session is busy)."""
        with self._callers_lock:
            self._callers += 1
            share = max(1, min(frames, len(self._sessions) // self._callers))
        claimed = []
        try:
            claimed.append(self._idle.get())
            while len(claimed) < share:
                try:
                    claimed.append(self._idle.get_nowait())
                except queue.Empty:
                    break
            yield claimed
        finally:
            for each in claimed:
                self._idle.put(each)
            with self._callers_lock:
                self._callers -= 1

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
