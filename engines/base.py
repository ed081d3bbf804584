"""The one interface every inference backend implements.

The live pipeline only ever calls :meth:`Engine.infer` with a batch of raw detector
frames; preprocessing lives inside the model graph (DESIGN.md), so swapping ONNX Runtime
for TensorRT or torch cannot change what the network sees.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from .model_card import ModelCard


class EngineError(RuntimeError):
    """A backend that cannot run the requested model here (missing library, device or file)."""


class Engine(ABC):
    """A compiled model ready to run batches of frames of one shape."""

    #: Short backend name as the command line spells it (``onnxruntime``, ``tensorrt``, ``torch``).
    name: str = ""
    #: Arithmetic the network runs in (``fp32``, ``fp16``, ``bf16``, ``int8``), for benchmarks and summaries.
    precision: str = "fp32"

    def __init__(self, card: ModelCard) -> None:
        self.card = card

    @property
    def device(self) -> str:
        """Where the computation runs, in words, for summaries and benchmarks."""
        return "cpu"

    @property
    def concurrency(self) -> int:
        """How many :meth:`infer` calls may usefully run at once from different threads.

        1 (the default) means one call at a time. A backend with independent workers (ONNX
        Runtime's one session per core) returns their number and makes :meth:`infer` thread-safe,
        so the live pipeline can keep every worker busy with a batch of its own instead of
        splitting each batch and waiting at the end for the slowest part.
        """
        return 1

    @abstractmethod
    def infer(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        """Run one batch (N, H, W) of raw frames; returns the card's outputs by name, N rows each."""

    def warmup(self, batch_size: int) -> None:
        """Run once on zeros so lazy allocation and kernel selection do not land in the first real batch."""
        h, w = self.card.input_shape
        self.infer(np.zeros((batch_size, h, w), dtype=self.card.input_dtype))

    def close(self) -> None:
        """Free device memory; the default backend holds none worth freeing early."""

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
