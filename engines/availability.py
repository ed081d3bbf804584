"""Which backends this machine can run, and why not, without building any engine.

``--engine auto`` and ``diffstream engines`` both ask here. The CUDA question is answered
through the driver library itself (``libcuda``, via ctypes) before any framework is
imported: on a machine without a GPU, ``auto`` then never pays for importing torch or
TensorRT just to learn that there is nothing to run them on.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import importlib.util
import platform
from dataclasses import asdict, dataclass
from functools import lru_cache


@dataclass(frozen=True)
class BackendStatus:
    """One backend on this machine: usable or not, on what, and the one-line reason."""

    name: str
    available: bool
    device: str
    detail: str

    def to_dict(self) -> dict:
        return asdict(self)


@lru_cache(maxsize=1)
def cuda_devices() -> tuple[int, str]:
    """(number of CUDA devices, the reason when there are none) from the driver library alone."""
    names = [ctypes.util.find_library("cuda"), "libcuda.so.1", "nvcuda.dll"]
    driver = None
    for name in filter(None, names):
        try:
            driver = ctypes.CDLL(name)
            break
        except OSError:
            continue
    if driver is None:
        return 0, "no CUDA driver (libcuda) on this machine"
    count = ctypes.c_int(0)
    if driver.cuInit(0) != 0:
        return 0, "the CUDA driver is installed but cuInit failed (no usable GPU)"
    if driver.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value == 0:
        return 0, "the CUDA driver sees no GPU"
    return count.value, ""


def installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def tensorrt_status() -> BackendStatus:
    missing = [m for m in ("tensorrt", "pycuda") if not installed(m)]
    if missing:
        return BackendStatus("tensorrt", False, "cuda",
                             f"{' and '.join(missing)} not installed (pip install 'diffstream[gpu]')")
    count, why = cuda_devices()
    if not count:
        return BackendStatus("tensorrt", False, "cuda", why)
    import tensorrt

    return BackendStatus("tensorrt", True, "cuda", f"TensorRT {tensorrt.__version__}, {count} CUDA device(s)")


def torch_status() -> BackendStatus:
    """torch runs on CUDA where there is one, else on the CPU (never chosen by ``auto`` there)."""
    if not installed("torch"):
        return BackendStatus("torch", False, "cpu", "torch not installed (pip install 'diffstream[trainer]')")
    count, why = cuda_devices()
    if count:
        import torch

        if torch.cuda.is_available():
            return BackendStatus("torch", True, "cuda", f"torch {torch.__version__} on {torch.cuda.get_device_name(0)}")
        why = f"this torch build ({torch.__version__}) has no CUDA support"
    return BackendStatus("torch", True, "cpu", f"CPU only, fp32 ({why}); auto skips it: ONNX Runtime CPU is faster")


def onnxruntime_status() -> BackendStatus:
    if not installed("onnxruntime"):
        return BackendStatus("onnxruntime", False, "cpu", "onnxruntime not installed")
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers() and cuda_devices()[0]:
        return BackendStatus("onnxruntime", True, "cuda", f"ONNX Runtime {onnxruntime.__version__}, CUDA provider")
    return BackendStatus("onnxruntime", True, "cpu",
                         f"ONNX Runtime {onnxruntime.__version__}, CPU provider (no CUDA provider or no GPU)")


def backend_statuses() -> list[BackendStatus]:
    """Every backend, in ``auto``'s order of preference."""
    return [tensorrt_status(), torch_status(), onnxruntime_status()]


@lru_cache(maxsize=1)
@lru_cache(maxsize=1)
def cuda_device_name() -> str:
    """The first CUDA device's name from the driver library (e.g. "NVIDIA H100 80GB HBM3"); "" when none."""
    if not cuda_devices()[0]:
        return ""
    driver = ctypes.CDLL(ctypes.util.find_library("cuda") or "libcuda.so.1")
    device, name = ctypes.c_int(0), ctypes.create_string_buffer(256)
    if driver.cuDeviceGet(ctypes.byref(device), 0) != 0 or driver.cuDeviceGetName(name, 256, device) != 0:
        return "cuda"
    return name.value.decode(errors="replace")


def device_description(device: str) -> str:
    """What an engine runs on, for people: the GPU's own name on CUDA (e.g. "NVIDIA H100 80GB HBM3"),
    else ``device``; the window's status bar shows it."""
    return (cuda_device_name() or device) if device == "cuda" else device


def cpu_model() -> str:
    """The CPU's marketing name where Linux tells it (benchmark records and model cards say
    what a figure was measured on); the architecture otherwise."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
