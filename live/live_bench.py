"""``diffstream bench live``: the pipeline's rates next to its two ceilings, from one run.

The ceilings are measured under the same conditions as the pipeline: the same sender (a
child process streaming random frames of the model's input shape over loopback TCP with
PUSH/PULL, so nothing is lost and every rate counts every frame), a socket with the
receiver's queue depth, the same engine, the same machine at the same moment. Frame
content does not change a network's cost, so random frames stand in for patterns.

On a shared machine one run's rate can differ from the next by a quarter. So each
comparison is made in ``rounds`` rounds that measure the ceiling and the stage back to
back, and the figures are medians over the rounds (each ratio the median of the rounds'
ratios), with every round's figures in the result.
"""
from __future__ import annotations

import datetime
import json
import math
import multiprocessing
import os
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zmq

from diffstream.engines import Engine

from .batch_ring import Batch
from .pipeline import LivePipeline
from .protocol import ScanEnd, decode
from .receiver import RECEIVE_HWM, Receiver, ScanFinished

COLS = 100
LATENCY_SECONDS = 3.0
SOCKET_RUN_FACTOR = 5
"""The socket and ingest runs stream this many times ``frames``: at a hundred thousand frames/s,
20,000 frames pass in 0.2 s, less than a shared machine's slower moments last."""
#: Where ``--record`` appends benchmark records (relative to the working directory: the repository's folder).
RESULTS_DIR = Path("bench/results")
#: Keys every engine or live benchmark record carries (None where a benchmark does not measure one).
RECORD_KEYS = ("device", "date", "model", "engine", "precision", "frame_shape", "batch", "engine_fps",
               "end_to_end_fps", "latency_p99_ms")


@dataclass(frozen=True)
class BenchSettings:
    frames: int
    frame_shape: tuple[int, int]
    kind: str = "ebsd"
    dtype: str = "uint8"
    batch_size: int = 256
    max_wait_s: float = 0.02
    latency_rate: float = 2000.0
    rounds: int = 5


def run_live_bench(engine: Engine, model_name: str, settings: BenchSettings) -> dict:
    """Socket ceiling against ingest and engine ceiling against the pipeline at full speed, round by
    round; then latency at a paced rate."""
    socket_fps, ingest_fps, engine_fps, floods = [], [], [], []
    for _ in range(settings.rounds):
        socket_fps.append(socket_ceiling(settings))
        ingest_fps.append(ingest_rate(settings))
        engine_fps.append(engine_ceiling(engine, settings))
        floods.append(_pipeline_run(engine, model_name, settings, rate=0.0, frames=settings.frames))
    end_to_end = [flood["rates"]["end_to_end_fps"] for flood in floods]
    flood = floods[end_to_end.index(statistics.median_low(end_to_end))]  # the median round's pipeline, whole
    paced_frames = max(int(settings.latency_rate * LATENCY_SECONDS), settings.batch_size)
    paced = _pipeline_run(engine, model_name, settings, rate=settings.latency_rate, frames=paced_frames)
    return {
        "rounds": settings.rounds,
        "socket_ceiling_fps": _median(socket_fps),
        "engine_ceiling_fps": _median(engine_fps),
        "pipeline": {**flood["rates"], "frames_received": flood["frames_received"],
                     "frames_dropped": flood["frames_dropped"], "latency_ms": flood["latency_ms"]},
        "ingest_fps": _median(ingest_fps),
        "ingest_vs_socket_ceiling": _median_ratio(ingest_fps, socket_fps),
        "end_to_end_vs_engine_ceiling": _median_ratio(end_to_end, engine_fps),
        "per_round": {"socket_ceiling_fps": _rounded(socket_fps), "ingest_fps": _rounded(ingest_fps),
                      "engine_ceiling_fps": _rounded(engine_fps), "end_to_end_fps": _rounded(end_to_end)},
        "paced": {"rate_fps": settings.latency_rate, "frames": paced_frames,
                  "frames_received": paced["frames_received"], "latency_ms": paced["latency_ms"]},
    }


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 1)


def _median_ratio(stage: list[float], ceiling: list[float]) -> float:
    return round(statistics.median(a / b if b else 0.0 for a, b in zip(stage, ceiling)), 3)


def _rounded(values: list[float]) -> list[float]:
    return [round(value, 1) for value in values]


def socket_ceiling(settings: BenchSettings) -> float:
    """Frames/s a bare PULL loop receives from the bench sender: nothing decoded, nothing copied.

    It reads each message with the receiver's own socket calls, ``recv`` and ``RCVMORE`` (about
    a microsecond cheaper a message than ``recv_multipart``), from a socket with the receiver's
    queue depth (``RCVHWM``: a queue ten times deeper than ZeroMQ's default measured 14 % slower
    on 2 cores), so the ceiling is what that socket gives a Python loop that keeps the messages
    apart and does nothing else.
    """
    with _Sender(settings, rate=0.0, frames=settings.frames * SOCKET_RUN_FACTOR) as sender, zmq.Context() as context:
        socket = context.socket(zmq.PULL)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.RCVHWM, RECEIVE_HWM)
        socket.connect(sender.endpoint)
        recv, get, more = socket.recv, socket.get, zmq.RCVMORE
        count, first, last = 0, 0.0, 0.0
        while True:
            parts = [recv()]
            while get(more):
                parts.append(recv())
            if len(parts) == 2:
                last = time.perf_counter()
                first = first or last
                count += 1
            elif isinstance(decode(parts), ScanEnd):
                break
        socket.close()
    return (count - 1) / (last - first) if count > 1 and last > first else 0.0


def ingest_rate(settings: BenchSettings) -> float:
    """Frames/s the receiving stage takes in (decode, validate, copy into batches) with no engine behind it.

    The full pipeline cannot show this: with a lossless PULL socket a slower engine holds
    the sender back, so its receive rate is the engine's.
    """
    with _Sender(settings, rate=0.0, frames=settings.frames * SOCKET_RUN_FACTOR) as sender:
        receiver = Receiver(sender.endpoint, socket_type="pull", batch_size=settings.batch_size,
                            max_wait_s=settings.max_wait_s)
        receiver.start()
        first, last, count = float("inf"), 0.0, 0
        try:
            while not isinstance(item := receiver.get(timeout=30), ScanFinished):
                if item is None:
                    raise TimeoutError("the bench sender went silent")
                if isinstance(item, Batch):
                    first, last = min(first, float(item.received_t[0])), float(item.received_t[item.n - 1])
                    count += item.n
                    receiver.release(item)
        finally:
            receiver.stop()
    return (count - 1) / (last - first) if count > 1 and last > first else 0.0


def engine_ceiling(engine: Engine, settings: BenchSettings) -> float:
    """Frames/s of ``engine.infer`` alone on full batches, after a warm-up."""
    frames = random_frames(settings.batch_size, settings.frame_shape, engine.card.input_dtype)
    return measure_rate(engine, frames, min_runs=max(1, settings.frames // settings.batch_size))


def measure_rate(engine: Engine, frames: np.ndarray, *, min_runs: int = 3, min_seconds: float = 0.0) -> float:
    """Frames/s of ``engine.infer(frames)`` repeated at least ``min_runs`` times and ``min_seconds``, after one
    warm-up call (lazy allocation, kernel choice and CUDA graph capture land there, not in the figure)."""
    engine.infer(frames)
    runs, began = 0, time.perf_counter()
    while runs < min_runs or time.perf_counter() - began < min_seconds:
        engine.infer(frames)
        runs += 1
    return runs * len(frames) / (time.perf_counter() - began)


def device_tag(device: str) -> str:
    """The machine part of a results file name: ``cpu-2cores`` or ``cuda-nvidia-h100-80gb-hbm3``."""
    if device == "cpu":
        return f"cpu-{os.cpu_count()}cores"
    from diffstream.engines.availability import cuda_device_name

    return "cuda-" + re.sub(r"[^a-z0-9]+", "-", cuda_device_name().lower()).strip("-")


def append_records(records: list[dict], kind: str, folder: Path = RESULTS_DIR) -> list[Path]:
    """Append benchmark records to ``folder/KIND-DEVICE-DATE.json`` (a JSON list, one file per device and day).

    A file of that name in an older layout (not a list) is left as it is, and the records go to
    ``KIND-records-DEVICE-DATE.json`` instead: history is never rewritten.
    """
    written = []
    for device in dict.fromkeys(record["device"] for record in records):
        path = folder / f"{kind}-{device}-{datetime.date.today().isoformat()}.json"
        existing = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
        if not isinstance(existing, list):
            path = path.with_name(path.name.replace(f"{kind}-", f"{kind}-records-", 1))
            existing = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
        existing.extend(record for record in records if record["device"] == device)
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.part")
        temporary.write_text(json.dumps(existing, indent=1) + "\n", encoding="utf-8")
        os.replace(temporary, path)
        written.append(path)
    return written


def _pipeline_run(engine: Engine, model_name: str, settings: BenchSettings, *, rate: float, frames: int) -> dict:
    with _Sender(settings, rate=rate, frames=frames) as sender:
        receiver = Receiver(sender.endpoint, socket_type="pull", batch_size=settings.batch_size,
                            max_wait_s=settings.max_wait_s)
        pipeline = LivePipeline(receiver, engine, model_name=model_name)
        (report,) = pipeline.run()
    return report.summary


class _Sender:
    """The bench's detector: a child process that binds PUSH, streams one scan, and exits."""

    def __init__(self, settings: BenchSettings, *, rate: float, frames: int) -> None:
        context = multiprocessing.get_context("spawn")
        self._queue = context.Queue()
        self._process = context.Process(
            target=_send_scan, args=(self._queue, frames, settings, rate), daemon=True)

    def __enter__(self) -> _Sender:
        self._process.start()
        self.endpoint = self._queue.get(timeout=60)
        return self

    def __exit__(self, *exc: object) -> None:
        self._process.join(timeout=30)
        if self._process.is_alive():
            self._process.terminate()


def _send_scan(queue: multiprocessing.Queue, frames: int, settings: BenchSettings, rate: float) -> None:
    import threading

    from .detector_sim import Publisher, array_scan, scan_template, stream

    rows = math.ceil(frames / COLS)
    data = random_frames(rows * COLS, settings.frame_shape, settings.dtype)
    start = scan_template(settings.kind, (rows, COLS), settings.frame_shape, settings.dtype, {})
    with Publisher("tcp://127.0.0.1:*", push=True) as publisher:
        queue.put(publisher.endpoint)
        stream(publisher, array_scan(start, data), scan_id="bench", rate=rate, stop=threading.Event())


def random_frames(n: int, frame_shape: tuple[int, int], dtype: str) -> np.ndarray:
    info = np.iinfo(dtype) if np.issubdtype(np.dtype(dtype), np.integer) else None
    high = 256 if info is None else min(int(info.max) + 1, 4096)
    return np.random.default_rng(0).integers(0, high, (n, *frame_shape)).astype(dtype)
