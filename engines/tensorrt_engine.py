"""TensorRT backend: a plan built from the model's ONNX, run with pycuda buffers on one stream pair.

Written against the documented TensorRT 10 Python API (name-based tensors,
``set_input_shape`` / ``set_tensor_address`` / ``execute_async_v3``) and pycuda; it has not
been executed on this project's machines, which have no GPU (docs/engines.md). Everything
that needs neither library (the ONNX the builder consumes, the plan cache and its key, the
error when a library or the driver is missing) is tested everywhere.

Plans are built once per ONNX file, GPU, TensorRT version, precision and largest batch and
cached (:mod:`.plan_cache`). One optimisation profile covers batches 1..``max_batch``;
larger batches run in chunks. The input copy of chunk k+1 (copy stream) overlaps the
compute of chunk k (compute stream): two buffer sets alternate, and events order them.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from .base import Engine, EngineError
from .model_card import OUTPUTS, ModelCard
from .plan_cache import PRECISIONS, cached_plan, plan_key, plan_path, timing_cache_path

log = logging.getLogger(__name__)

WORKSPACE_BYTES = 2 << 30
DEFAULT_MAX_BATCH = 1024
CALIBRATION_BATCH = 64


def import_tensorrt() -> tuple[Any, Any]:
    """(tensorrt, pycuda.driver) with the driver initialised, or one clear EngineError."""
    try:
        import tensorrt as trt
    except ImportError:
        raise EngineError("tensorrt backend: the tensorrt package is not installed "
                          "(pip install 'diffstream[gpu]')") from None
    try:
        import pycuda.driver as cuda
    except ImportError:
        raise EngineError("tensorrt backend: pycuda is not installed (pip install 'diffstream[gpu]')") from None
    try:
        cuda.init()
        if cuda.Device.count() < 1:
            raise EngineError("tensorrt backend: the CUDA driver sees no GPU")
    except cuda.Error as error:
        raise EngineError(f"tensorrt backend: no usable CUDA driver ({error})") from None
    return trt, cuda


def builder_onnx(onnx_path: str | Path, card: ModelCard) -> bytes:
    """The ONNX handed to TensorRT's parser: the model without its card, with the frame size
    fixed to the card's input and only the batch axis dynamic, so that one optimisation
    profile (batch min/opt/max) describes every shape the plan will see."""
    import onnx

    model = onnx.load(str(onnx_path))
    del model.metadata_props[:]
    frames = next((i for i in model.graph.input if i.name == "frames"), None)
    if frames is None:
        raise EngineError(f"{onnx_path} has no 'frames' input")
    dims = frames.type.tensor_type.shape.dim
    if len(dims) != 3:
        raise EngineError(f"{onnx_path}: 'frames' must be (N, H, W), it has {len(dims)} axes")
    dims[0].dim_param = "N"
    for dim, size in zip(dims[1:], card.input_shape):
        dim.dim_value = size
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as error:
        raise EngineError(f"{onnx_path} fails the ONNX checker: {str(error).splitlines()[0]}") from None
    return model.SerializeToString()


def build_plan(onnx_path: str | Path, card: ModelCard, *, precision: str = "fp16",
               max_batch: int = DEFAULT_MAX_BATCH, calibration: np.ndarray | None = None,
               timing_cache: Path | None = None) -> bytes:
    """Parse and compile the model into a serialized TensorRT plan (minutes on a large network)."""
    trt, cuda = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: networks are always explicit-batch
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(builder_onnx(onnx_path, card)):
        first = parser.get_error(0).desc() if parser.num_errors else "unknown parser error"
        raise EngineError(f"TensorRT cannot parse {onnx_path}: {first}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    h, w = card.input_shape
    profile = builder.create_optimization_profile()
    profile.set_shape("frames", (1, h, w), (max(1, max_batch // 4), h, w), (max_batch, h, w))
    config.add_optimization_profile(profile)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        if calibration is None or len(calibration) < CALIBRATION_BATCH:
            raise EngineError(f"int8 needs at least {CALIBRATION_BATCH} calibration frames")
        config.set_flag(trt.BuilderFlag.INT8)
        calibration_profile = builder.create_optimization_profile()
        shape = (CALIBRATION_BATCH, h, w)
        calibration_profile.set_shape("frames", shape, shape, shape)
        config.set_calibration_profile(calibration_profile)
        config.int8_calibrator = _calibrator(trt, cuda, calibration)
    timings = config.create_timing_cache(timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b"")
    config.set_timing_cache(timings, False)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise EngineError(f"TensorRT could not build a {precision} plan for {onnx_path} (its log above says why)")
    if timing_cache is not None:
        timing_cache.parent.mkdir(parents=True, exist_ok=True)
        timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    return bytes(plan)


def _calibrator(trt: Any, cuda: Any, frames: np.ndarray) -> Any:
    """An entropy calibrator that feeds ``frames`` (raw, as the live path sends them) in fixed batches."""

    class Calibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            usable = len(frames) - len(frames) % CALIBRATION_BATCH
            self.batches = [np.ascontiguousarray(frames[i:i + CALIBRATION_BATCH])
                            for i in range(0, usable, CALIBRATION_BATCH)]
            self.buffer = cuda.mem_alloc(self.batches[0].nbytes)

        def get_batch_size(self) -> int:
            return CALIBRATION_BATCH

        def get_batch(self, names: list[str]) -> list[int] | None:
            if not self.batches:
                return None
            cuda.memcpy_htod(self.buffer, self.batches.pop(0))
            return [int(self.buffer)]

        def read_calibration_cache(self) -> None:
            return None  # plans are cached whole; a separate calibration cache would add nothing

        def write_calibration_cache(self, cache: bytes) -> None:
            return None

    return Calibrator()


def engine_plan(onnx_path: str | Path, card: ModelCard, *, precision: str = "fp16",
                max_batch: int = DEFAULT_MAX_BATCH, calibration: np.ndarray | None = None,
                rebuild: bool = False) -> tuple[bytes, Path, bool]:
    """(plan, its cache path, whether it was built now) for this GPU and TensorRT version."""
    trt, cuda = import_tensorrt()
    gpu = cuda.Device(0).name()
    key = plan_key(Path(onnx_path).read_bytes(), gpu=gpu, tensorrt=trt.__version__, precision=precision,
                   max_batch=max_batch)
    timing = timing_cache_path(gpu, trt.__version__)
    plan, built = cached_plan(key, lambda: build_plan(onnx_path, card, precision=precision, max_batch=max_batch,
                                                      calibration=calibration, timing_cache=timing), rebuild=rebuild)
    return plan, plan_path(key), built


class _Slot:
    """One set of page-locked host and device buffers for a chunk of up to ``max_batch`` frames."""

    def __init__(self, cuda: Any, shapes: dict[str, tuple[tuple[int, ...], np.dtype]]) -> None:
        self.host = {name: cuda.pagelocked_empty(shape, dtype) for name, (shape, dtype) in shapes.items()}
        self.device = {name: cuda.mem_alloc(array.nbytes) for name, array in self.host.items()}
        self.copied = cuda.Event()
        self.done = cuda.Event()
        self.rows = 0  # frames of the chunk in flight in this slot; 0 when free


class TensorRTEngine(Engine):
    name = "tensorrt"

    def __init__(self, model_path: str | Path, card: ModelCard, *, precision: str = "fp16",
                 max_batch: int = DEFAULT_MAX_BATCH) -> None:
        super().__init__(card)
        if precision not in PRECISIONS or max_batch < 1:
            raise EngineError(f"tensorrt backend: precision must be one of {', '.join(PRECISIONS)} and the max batch "
                              f"at least 1, got {precision} and {max_batch}")
        self.precision = precision
        self.max_batch = max_batch
        trt, cuda = import_tensorrt()
        self._cuda = cuda
        self._context = cuda.Device(0).retain_primary_context()
        self._context.push()
        try:
            self._engine = self._deserialize(trt, model_path, card)
            self._exec = self._engine.create_execution_context()
            if self._exec is None:
                raise EngineError(f"tensorrt backend: no GPU memory left for an execution context of {model_path}")
            names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
            self._input = next(n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
            self._outputs = [n for n in OUTPUTS if n in names]
            self._exec.set_input_shape(self._input, (max_batch, *card.input_shape))  # resolves the output shapes
            shapes = {name: (tuple(self._exec.get_tensor_shape(name)),
                             np.dtype(trt.nptype(self._engine.get_tensor_dtype(name))))
                      for name in (self._input, *self._outputs)}
            self._slots = [_Slot(cuda, shapes) for _ in range(2)]
            self._copy_stream, self._compute_stream = cuda.Stream(), cuda.Stream()
        except cuda.MemoryError as error:
            raise EngineError(f"tensorrt backend: not enough GPU memory for batch {max_batch} ({error})") from None
        finally:
            self._context.pop()

    def _deserialize(self, trt: Any, model_path: str | Path, card: ModelCard) -> Any:
        """The engine from the cached plan; a plan TensorRT will not load is rebuilt once, not trusted."""
        runtime = self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))  # must outlive the engine
        for rebuild in (False, True):
            plan, _, built = engine_plan(model_path, card, precision=self.precision, max_batch=self.max_batch,
                                         rebuild=rebuild)
            if built:
                log.info("built a %s TensorRT plan for %s", self.precision, model_path)
            engine = runtime.deserialize_cuda_engine(plan)
            if engine is not None:
                return engine
            if built:
                break
        raise EngineError(f"TensorRT cannot load the plan it built for {model_path}")

    @property
    def device(self) -> str:
        return "cuda"

    def infer(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        results: dict[str, list[np.ndarray]] = {name: [] for name in self._outputs}
        chunks = range(0, len(frames), self.max_batch)
        self._context.push()
        try:
            for k, start in enumerate(chunks):
                slot = self._slots[k % 2]
                self._collect(slot, results)  # chunk k - 2 used these buffers
                self._enqueue(slot, frames[start:start + self.max_batch])
            for k in (len(chunks), len(chunks) + 1):  # the last two chunks, in order
                self._collect(self._slots[k % 2], results)
        finally:
            self._context.pop()
        empty = self._slots[0].host
        return {name: np.concatenate(parts) if parts else empty[name][:0].copy() for name, parts in results.items()}

    def _enqueue(self, slot: _Slot, chunk: np.ndarray) -> None:
        cuda, n = self._cuda, len(chunk)
        slot.host[self._input][:n] = chunk
        cuda.memcpy_htod_async(slot.device[self._input], slot.host[self._input][:n], self._copy_stream)
        slot.copied.record(self._copy_stream)
        self._compute_stream.wait_for_event(slot.copied)
        self._exec.set_input_shape(self._input, chunk.shape)
        for name, buffer in slot.device.items():
            self._exec.set_tensor_address(name, int(buffer))
        if not self._exec.execute_async_v3(self._compute_stream.handle):
            raise EngineError(f"TensorRT failed to run a batch of {n} frames")
        for name in self._outputs:
            cuda.memcpy_dtoh_async(slot.host[name][:n], slot.device[name], self._compute_stream)
        slot.done.record(self._compute_stream)
        slot.rows = n

    def _collect(self, slot: _Slot, results: dict[str, list[np.ndarray]]) -> None:
        if not slot.rows:
            return
        slot.done.synchronize()
        for name in self._outputs:
            results[name].append(slot.host[name][:slot.rows].copy())
        slot.rows = 0

    def close(self) -> None:
        for slot in getattr(self, "_slots", []):
            for buffer in slot.device.values():
                buffer.free()
        self._slots = []
