"""torch backend: the model's ``torch.export`` program (``NAME.pt2`` beside ``NAME.onnx``).

For machines with PyTorch and a GPU but no TensorRT: on CUDA it runs in fp16 (or bf16)
under autocast with channels-last weights, replaying one CUDA graph per batch bucket (the
next power of two, so a scan's odd last batch does not capture a new graph). Without CUDA
it runs on the CPU in fp32, which ``auto`` never picks (ONNX Runtime is faster there) but
which lets any machine check the program against ONNX Runtime. The card is read from the
ONNX file; the program carries weights only.

Only the CPU path has been executed on this project's machines (no GPU, docs/engines.md).
"""
from __future__ import annotations

import contextlib
import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .base import Engine, EngineError
from .batch_fallback import OutOfDeviceMemory
from .model_card import OUTPUTS, ModelCard

PRECISIONS = {"fp32": None, "fp16": "float16", "bf16": "bfloat16"}
MAX_GRAPH_BATCH = 1024

#: What a weights-only archive written by ``torch.export.save`` holds (paths below its top folder).
_ALLOWED = re.compile(
    r"archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id|models/\w+\.json"
    r"|data/weights/weight_\d+|data/weights/\w+_weights_config\.json"
    r"|data/constants/tensor_\d+|data/constants/\w+_constants_config\.json|data/sample_inputs/\w+\.pt")


def check_program_archive(path: str | Path) -> None:
    """Refuse any ``.pt2`` on which ``torch.export.load`` would run pickle or native code.

    ``torch.export.load`` reads the graph from JSON and raw tensor payloads as bytes, which
    is safe; but it also unpickles (``weights_only=False``) legacy or ``use_pickle`` weights,
    custom and opaque objects, and sample inputs that fail a weights-only load, and it loads
    AOTInductor shared libraries. This check admits only the files of a plain archive,
    requires every payload to be raw, and loads the sample inputs weights-only itself, so
    none of those paths can be reached; loading a .pt2 that passes it is then no riskier
    than reading an ONNX file.
    """
    import torch

    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as error:
        raise EngineError(f"{path} is not a torch.export archive ({error})") from None
    with archive:
        names = archive.namelist()
        top = {name.split("/", 1)[0] for name in names}
        if len(top) != 1 or any("/" not in name for name in names):
            raise EngineError(f"{path} is not a torch.export archive (expected one top folder)")
        for name in names:
            inner = name.split("/", 1)[1]
            if inner and not inner.endswith("/") and not _ALLOWED.fullmatch(inner):
                raise EngineError(f"{path} holds {inner!r}, which a weights-only program never has; refusing to load")
            if inner.endswith("_config.json"):
                entries = json.loads(archive.read(name)).get("config", {})
                if any(entry.get("use_pickle", True) for entry in entries.values()):
                    raise EngineError(f"{path} stores pickled tensors ({inner}); refusing to load")
            if inner.startswith("data/sample_inputs/"):
                try:
                    torch.load(io.BytesIO(archive.read(name)), weights_only=True)
                except Exception as error:  # the unpickler's own error types vary
                    raise EngineError(f"{path}: sample inputs are not plain tensors ({error}); refusing") from None
        if not any(name.split("/", 1)[1].startswith("models/") for name in names):
            raise EngineError(f"{path} holds no exported program")


class TorchEngine(Engine):
    name = "torch"

    def __init__(self, program_path: str | Path, card: ModelCard, *, device: str | None = None,
                 precision: str | None = None) -> None:
        try:
            import torch
        except ImportError:
            raise EngineError("torch backend: torch is not installed (pip install 'diffstream[trainer]')") from None
        super().__init__(card)
        program_path = Path(program_path)
        if not program_path.is_file():
            raise EngineError(f"torch backend needs {program_path.name} beside the ONNX file "
                              "(`diffstream export` writes both)")
        self._torch = torch
        self._device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if self._device == "cuda" and not torch.cuda.is_available():
            raise EngineError("torch backend: no CUDA device visible to torch")
        self.precision = precision or ("fp16" if self._device == "cuda" else "fp32")
        if self.precision not in PRECISIONS:
            raise EngineError(f"torch backend: precision must be one of {', '.join(PRECISIONS)}, got {self.precision}")
        check_program_archive(program_path)
        try:
            module = torch.export.load(str(program_path)).module()
        except Exception as error:  # deserialisation raises assorted types across torch versions
            raise EngineError(f"torch cannot load {program_path}: {error}") from None
        module = module.to(self._device)
        if self._device == "cuda":
            module = module.to(memory_format=torch.channels_last)
        self._module = module
        self._graphs: dict[int, tuple[Any, Any, tuple[Any, ...]]] = {}

    @property
    def device(self) -> str:
        return self._device

    def _forward(self, x: Any) -> tuple[Any, ...]:
        torch = self._torch
        dtype = PRECISIONS[self.precision]
        autocast = torch.autocast(self._device, dtype=getattr(torch, dtype)) if dtype else contextlib.nullcontext()
        with torch.no_grad(), autocast:
            return tuple(self._module(x))

    def infer(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        try:
            if self._device == "cpu":
                outputs = [self._forward(self._torch.from_numpy(np.ascontiguousarray(frames)))]
            else:
                outputs = [self._replay(frames[i:i + MAX_GRAPH_BATCH]) for i in range(0, len(frames), MAX_GRAPH_BATCH)]
        except self._torch.cuda.OutOfMemoryError as error:
            raise OutOfDeviceMemory(str(error).splitlines()[0]) from None
        return {name: np.concatenate([part[k].float().cpu().numpy() for part in outputs])
                for k, name in enumerate(OUTPUTS)}

    def _replay(self, chunk: np.ndarray) -> tuple[Any, ...]:
        """The chunk through the CUDA graph of its bucket (captured on first use), trimmed to its rows."""
        n = len(chunk)
        graph, static_in, static_out = self._graph(1 << max(0, n - 1).bit_length())
        static_in[:n].copy_(self._torch.from_numpy(np.ascontiguousarray(chunk)))
        graph.replay()
        return tuple(out[:n] for out in static_out)

    def _graph(self, size: int) -> tuple[Any, Any, tuple[Any, ...]]:
        if size not in self._graphs:
            torch = self._torch
            static_in = torch.zeros((size, *self.card.input_shape), dtype=torch.uint8, device=self._device)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):  # warm-up outside the capture, as CUDA graphs require
                    self._forward(static_in)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self._forward(static_in)
            self._graphs[size] = (graph, static_in, static_out)
        return self._graphs[size]

    def close(self) -> None:
        self._graphs.clear()
