"""Running on when a batch does not fit the device: halve it and go on in chunks.

Every backend turns its own out-of-memory failure (CUDA's, ONNX Runtime's, TensorRT's) into
:class:`OutOfDeviceMemory`; :class:`BatchFallback`, which :func:`~.registry.create_engine`
wraps around every engine, catches it, halves the largest batch it sends, and runs the
frames in chunks of that size from then on. A live scan thus slows down instead of dying
when a detector's batch meets a smaller GPU, and the warning is logged once.
"""
from __future__ import annotations

import logging

import numpy as np

from .base import Engine, EngineError

log = logging.getLogger(__name__)


class OutOfDeviceMemory(EngineError):
    """The device ran out of memory for a batch of this size."""


class BatchFallback(Engine):
    """``engine`` with batches halved on :class:`OutOfDeviceMemory` until they fit."""

    def __init__(self, engine: Engine) -> None:
        super().__init__(engine.card)
        self.engine = engine
        self.name = engine.name
        #: Largest batch sent to ``engine``; None until the device first ran out of memory.
        self.max_batch: int | None = None
        self._warned = False

    @property
    def device(self) -> str:
        return self.engine.device

    @property
    def precision(self) -> str:
        return self.engine.precision

    @property
    def concurrency(self) -> int:
        return self.engine.concurrency

    def infer(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        if not len(frames):
            return self.engine.infer(frames)
        start, parts = 0, []
        while start < len(frames):
            size = len(frames) - start if self.max_batch is None else min(self.max_batch, len(frames) - start)
            try:
                parts.append(self.engine.infer(frames[start:start + size]))
            except OutOfDeviceMemory as error:
                self._shrink(size, error)
                continue
            start += size
        if len(parts) == 1:
            return parts[0]
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

    def _shrink(self, size: int, error: OutOfDeviceMemory) -> None:
        if size <= 1:
            raise EngineError(f"{self.name} ({self.device}): out of device memory even for one frame ({error})"
                              ) from None
        self.max_batch = size // 2
        if not self._warned:
            log.warning("%s (%s) ran out of device memory at batch %d; running batches of at most %d from now on",
                        self.name, self.device, size, self.max_batch)
            self._warned = True
        else:
            log.info("%s: batch limit lowered to %d", self.name, self.max_batch)

    def close(self) -> None:
        self.engine.close()
