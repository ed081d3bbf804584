"""``diffstream bench engine``: the bare engine's frames/s against batch size and precision.

This is the compute ceiling alone (no socket, no receiver, no map), per backend, so that a
GPU's plan can be compared with the CPU path on the same model.
"""
from __future__ import annotations

import argparse
import json

from .bench import machine_record

DEFAULT_BATCHES = "1,16,64,256,1024"


def register(what: argparse._SubParsersAction) -> None:
    bench = what.add_parser(
        "engine",
        help="bare engine frames/s against batch size and precision",
        description=(
            "Time engine.infer alone on random frames of the model's input shape, for every chosen backend, "
            "precision and batch size (one warm-up call each, then at least three calls and --seconds), and "
            "print a table with each configuration's ceiling. With --record, one JSON record per configuration "
            "is appended to bench/results/engine-DEVICE-DATE.json (keys: device, date, model, engine, precision, "
            "frame_shape, batch, engine_fps, end_to_end_fps and latency_p99_ms, the last two null here)."
        ),
    )
    bench.add_argument("--model", default="ebsd-lattice", metavar="NAME|PATH", help="model (default ebsd-lattice)")
    bench.add_argument("--engine", default="available", metavar="LIST",
                       help="comma-separated backends (tensorrt, torch, onnxruntime), or 'available' for every one "
                            "that runs here, torch on the CPU included (default available)")
    bench.add_argument("--precision", default=None, metavar="LIST",
                       help="comma-separated precisions for tensorrt and torch (fp16, fp32, bf16, int8); default "
                            "each backend's own (tensorrt fp16, torch fp16 on CUDA and fp32 on the CPU); "
                            "onnxruntime always runs the model as exported (fp32)")
    bench.add_argument("--batches", default=DEFAULT_BATCHES, metavar="LIST",
                       help=f"comma-separated batch sizes (default {DEFAULT_BATCHES})")
    bench.add_argument("--seconds", type=float, default=1.0, metavar="S",
                       help="least time per configuration (default 1.0)")
    bench.add_argument("--record", action="store_true",
                       help="append the records to bench/results/engine-DEVICE-DATE.json")
    bench.add_argument("--json", action="store_true", help="print the records as JSON instead of a table")
    bench.set_defaults(handler=run_bench_engine)


def _int_list(text: str, option: str) -> list[int]:
    from diffstream.live.cli import UserError

    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise UserError(f"{option} must be comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise UserError(f"{option} must be positive, got {text!r}")
    return values


def _backends(text: str) -> list[str]:
    from diffstream.engines import BACKENDS
    from diffstream.engines.availability import backend_statuses
    from diffstream.live.cli import UserError

    if text == "available":
        return [status.name for status in backend_statuses() if status.available]
    names = text.split(",")
    unknown = [name for name in names if name not in BACKENDS]
    if unknown:
        raise UserError(f"--engine: unknown backend {unknown[0]!r}; known: {', '.join(BACKENDS)}")
    return names


def run_bench_engine(args: argparse.Namespace) -> int:
    from diffstream.engines import EngineError, ModelCardError, create_engine
    from diffstream.live.cli import UserError
    from diffstream.live.live_bench import append_records, device_tag, measure_rate, random_frames

    batches = _int_list(args.batches, "--batches")
    machine = machine_record()
    records = []
    for backend in _backends(args.engine):
        precisions = [None] if backend == "onnxruntime" or not args.precision else args.precision.split(",")
        for precision in precisions:
            try:
                engine = create_engine(args.model, backend, precision=precision, max_batch=max(batches))
            except (EngineError, ModelCardError) as error:
                if args.engine != "available":
                    raise UserError(str(error)) from None
                print(f"skipping {backend}: {error}")
                continue
            card = engine.card
            for batch in batches:
                frames = random_frames(batch, tuple(card.input_shape), card.input_dtype)
                fps = measure_rate(engine, frames, min_seconds=args.seconds)
                records.append({
                    "device": device_tag(engine.device), "date": machine["date"], "model": str(args.model),
                    "engine": engine.name, "precision": engine.precision, "frame_shape": list(card.input_shape),
                    "batch": batch, "engine_fps": round(fps, 1), "end_to_end_fps": None, "latency_p99_ms": None,
                    "engine_device": engine.device, "command": "diffstream bench engine", "machine": machine,
                })
            engine.close()
    if args.json:
        print(json.dumps(records, indent=2))
    else:
        _print_table(records, machine)
    if args.record:
        for path in append_records(records, "engine"):
            print(f"recorded in {path}")
    return 0


def _print_table(records: list[dict], machine: dict) -> None:
    print(f"diffstream bench engine: {machine['cpu_cores']} CPU cores ({machine['processor']})")
    print(f"  {'engine':<12} {'device':<6} {'precision':<9} {'batch':>6} {'frames/s':>12}")
    for record in records:
        print(f"  {record['engine']:<12} {record['engine_device']:<6} {record['precision']:<9} {record['batch']:>6} "
              f"{record['engine_fps']:>12,.0f}")
    best: dict[tuple[str, str, str], dict] = {}
    for record in records:
        config = (record["engine"], record["engine_device"], record["precision"])
        if config not in best or record["engine_fps"] > best[config]["engine_fps"]:
            best[config] = record
    for (engine, device, precision), record in best.items():
        print(f"  ceiling {engine} ({device}, {precision}): {record['engine_fps']:,.0f} frames/s "
              f"at batch {record['batch']}")
