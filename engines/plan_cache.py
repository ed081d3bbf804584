"""Where TensorRT plans are kept, and the key that decides whether a cached plan may be used.

A plan is only valid for the exact network, GPU model and TensorRT version it was built
with (TensorRT refuses, or worse, misbehaves on others), and it bakes in the precision and
the optimisation profile's largest batch. All of these go into the key, so a plan built
for another GPU or TensorRT version is never found, and is rebuilt instead of loaded. The
key is also written beside the plan and checked on load, which catches a renamed or copied
file.

Location: ``$DIFFSTREAM_CACHE/plans`` if set, else ``$XDG_CACHE_HOME/diffstream/plans``,
else ``~/.cache/diffstream/plans``; the timing cache (TensorRT's kernel timings, reusable
across precisions and batches on one GPU) lives beside the plans.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

PRECISIONS = ("fp16", "fp32", "int8")


@dataclass(frozen=True)
class PlanKey:
    """Everything a TensorRT plan depends on."""

    onnx_sha256: str
    gpu: str
    tensorrt: str
    precision: str
    max_batch: int

    def digest(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:24]


def plan_key(onnx_bytes: bytes, *, gpu: str, tensorrt: str, precision: str, max_batch: int) -> PlanKey:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if max_batch < 1:
        raise ValueError(f"max batch must be at least 1, got {max_batch}")
    return PlanKey(hashlib.sha256(onnx_bytes).hexdigest(), gpu, tensorrt, precision, max_batch)


def cache_dir() -> Path:
    if root := os.environ.get("DIFFSTREAM_CACHE"):
        return Path(root) / "plans"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "diffstream" / "plans"


def plan_path(key: PlanKey, folder: Path | None = None) -> Path:
    return (folder or cache_dir()) / f"{key.digest()}.plan"


def timing_cache_path(gpu: str, tensorrt: str, folder: Path | None = None) -> Path:
    tag = hashlib.sha256(f"{gpu}|{tensorrt}".encode()).hexdigest()[:16]
    return (folder or cache_dir()) / f"timing-{tag}.cache"


def load_plan(key: PlanKey, folder: Path | None = None) -> bytes | None:
    """The cached plan for ``key``, or None when there is none or its recorded key differs."""
    path = plan_path(key, folder)
    meta = path.with_suffix(".json")
    try:
        if json.loads(meta.read_text(encoding="utf-8")) != asdict(key):
            return None
        return path.read_bytes()
    except (OSError, ValueError):
        return None


def store_plan(key: PlanKey, plan: bytes, folder: Path | None = None) -> Path:
    """Write ``plan`` and its key atomically; returns the plan's path."""
    path = plan_path(key, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    for target, data in ((path, plan), (path.with_suffix(".json"), json.dumps(asdict(key), indent=1).encode())):
        temporary = target.with_name(f".{target.name}.part")
        temporary.write_bytes(data)
        os.replace(temporary, target)
    return path


def cached_plan(key: PlanKey, build: Callable[[], bytes], folder: Path | None = None,
                rebuild: bool = False) -> tuple[bytes, bool]:
    """(plan, whether it was built now): the cached plan for ``key``, else ``build()``'s, stored."""
    plan = None if rebuild else load_plan(key, folder)
    if plan is not None:
        return plan, False
    plan = build()
    store_plan(key, plan, folder)
    return plan, True
