"""``diffstream bench live``: the live pipeline against the socket and engine ceilings."""
from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from .bench import machine_record

if TYPE_CHECKING:
    from diffstream.engines import Engine


def register(what: argparse._SubParsersAction) -> None:
    live = what.add_parser(
        "live",
        help="live pipeline rates against the socket and engine ceilings",
        description=(
            "Stream random frames of the model's input shape from a child process over loopback TCP "
            "(PUSH/PULL) and measure, in one run: a bare pyzmq receive loop (the socket ceiling) against the "
            "receiving stage, and the bare engine (the compute ceiling) against the pipeline's per-stage and "
            "end-to-end rates, each pair back to back in every round, reported as medians over the rounds; "
            "then latency from frame timestamp to map at a paced rate."
        ),
    )
    live.add_argument("--model", default="ebsd-lattice", metavar="NAME|PATH", help="model (default ebsd-lattice)")
    live.add_argument("--engine", default="auto", help="inference backend (default auto)")
    live.add_argument("--frame-shape", default=None, metavar="HxW", help="frame shape (default: the model's input)")
    live.add_argument("--frames", type=int, default=20000, metavar="N",
                      help="frames per full-speed pipeline run; the socket and ingest runs stream five times as "
                           "many (default 20000)")
    live.add_argument("--rounds", type=int, default=5, metavar="K",
                      help="rounds of ceiling-then-stage measurements; figures are medians (default 5)")
    live.add_argument("--batch-size", type=int, default=256, metavar="N", help="largest batch (default 256)")
    live.add_argument("--latency-rate", type=float, default=2000.0, metavar="FPS",
                      help="paced rate for the latency run (default 2000 frames/s)")
    live.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    live.add_argument("--record", action="store_true",
                      help="append a record (device, date, model, engine, precision, frame_shape, batch, engine_fps = "
                           "the engine ceiling, end_to_end_fps, latency_p99_ms at the paced rate) to "
                           "bench/results/live-DEVICE-DATE.json, or live-records-DEVICE-DATE.json where the "
                           "former holds an older layout")
    live.set_defaults(handler=_run_live)


def _frame_shape(text: str) -> tuple[int, int]:
    from diffstream.live.cli import UserError

    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--frame-shape must look like 60x60, got {text!r}") from None
    if h <= 0 or w <= 0:
        raise UserError(f"--frame-shape must be positive, got {text!r}")
    return h, w


def _run_live(args: argparse.Namespace) -> int:
    from diffstream.engines import EngineError, ModelCardError, create_engine
    from diffstream.live.cli import UserError
    from diffstream.live.live_bench import BenchSettings, append_records, run_live_bench

    if args.frames < args.batch_size or args.batch_size < 1:
        raise UserError("--frames must be at least --batch-size, and --batch-size at least 1")
    if args.rounds < 1:
        raise UserError(f"--rounds must be at least 1, got {args.rounds}")
    try:
        engine = create_engine(args.model, args.engine)
    except (EngineError, ModelCardError) as error:
        raise UserError(str(error)) from None
    card = engine.card
    shape = _frame_shape(args.frame_shape) if args.frame_shape else tuple(card.input_shape)
    settings = BenchSettings(frames=args.frames, frame_shape=shape, kind=card.kind, dtype=card.input_dtype,
                             batch_size=args.batch_size, latency_rate=args.latency_rate, rounds=args.rounds)
    result = {
        "command": "diffstream bench live", "machine": machine_record(), "model": str(args.model),
        "engine": {"name": engine.name, "device": engine.device}, "frame_shape": list(shape),
        "frames": args.frames, "batch_size": args.batch_size, **run_live_bench(engine, str(args.model), settings),
    }
    if args.record:
        for path in append_records([live_record(result, engine)], "live"):
            print(f"recorded in {path}", file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    p = result["pipeline"]
    paced = result["paced"]
    print(f"diffstream bench live: {result['machine']['cpu_cores']} CPU cores ({result['machine']['processor']}), "
          f"{args.model} on {engine.name} ({engine.device}), {shape[0]}×{shape[1]} {card.input_dtype}, "
          f"{args.frames} frames, batch {args.batch_size}; medians of {args.rounds} rounds")
    print(f"  socket ceiling (bare PULL loop)   {result['socket_ceiling_fps']:>12,.0f} frames/s")
    print(f"  engine ceiling (bare infer)       {result['engine_ceiling_fps']:>12,.0f} frames/s")
    print(f"  ingest stage (receiver, no engine){result['ingest_fps']:>12,.0f} frames/s  "
          f"({result['ingest_vs_socket_ceiling']:.0%} of the socket ceiling)")
    print(f"  pipeline receive                  {p['receive_fps']:>12,.0f} frames/s  (held to the engine by PULL)")
    print(f"  pipeline engine stage             {p['engine_fps']:>12,.0f} frames/s")
    print(f"  pipeline assembly stage           {p['assemble_fps']:>12,.0f} frames/s")
    print(f"  pipeline end to end               {p['end_to_end_fps']:>12,.0f} frames/s  "
          f"({result['end_to_end_vs_engine_ceiling']:.0%} of the engine ceiling)")
    print(f"  latency at {paced['rate_fps']:,.0f} frames/s: p50 {paced['latency_ms']['p50']} ms, "
          f"p99 {paced['latency_ms']['p99']} ms ({paced['frames_received']}/{paced['frames']} frames)")
    return 0


def live_record(result: dict, engine: Engine) -> dict:
    """The run as a benchmark record with the keys every engine and live record shares, plus the full result."""
    from diffstream.live.live_bench import device_tag

    return {
        "device": device_tag(engine.device), "date": result["machine"]["date"], "model": result["model"],
        "engine": engine.name, "precision": engine.precision, "frame_shape": result["frame_shape"],
        "batch": result["batch_size"], "engine_fps": result["engine_ceiling_fps"],
        "end_to_end_fps": result["pipeline"]["end_to_end_fps"],
        "latency_p99_ms": result["paced"]["latency_ms"]["p99"], "result": result,
    }
