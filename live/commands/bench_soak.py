"""``diffstream bench soak``: a long PUB/SUB stream through receiver and pipeline, every drop accounted for."""
from __future__ import annotations

import argparse
import json
import math

from .bench import machine_record


def register(what: argparse._SubParsersAction) -> None:
    soak = what.add_parser(
        "soak",
        help="stream many frames through the live path and account for every drop",
        description=(
            "Stream N frames of the model's input shape from a child process over loopback TCP (PUB/SUB, as a "
            "detector does) through the receiver and the pipeline with a real engine, sampling resident memory. "
            "Every frame not mapped must have a counted cause: refused by the sender's full queue, dropped by "
            "the receiver because the engine was behind, or rejected; what is left is frames_dropped_unexplained "
            "and should be 0. rss_growth_mb is the peak resident memory while frames stream, after the warm-up, minus "
            "the level at the warm-up (None if the stream ended before the first sample after it); "
            "rss_after_scan_mb is the level once the scan is finished and summarised."
        ),
    )
    soak.add_argument("--frames", type=int, default=1_000_000, metavar="N", help="frames to stream (default 1,000,000)")
    soak.add_argument("--rate", type=float, default=0.0, metavar="FPS",
                      help="frames per second, 0 for as fast as the sender goes (default 0)")
    soak.add_argument("--model", default="ebsd-lattice", metavar="NAME|PATH", help="model (default ebsd-lattice)")
    soak.add_argument("--engine", default="auto", help="inference backend (default auto)")
    soak.add_argument("--batch-size", type=int, default=256, metavar="N", help="largest batch (default 256)")
    soak.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")
    soak.set_defaults(handler=_run_soak)


def _run_soak(args: argparse.Namespace) -> int:
    from diffstream.engines import EngineError, ModelCardError, create_engine
    from diffstream.live.cli import UserError
    from diffstream.live.protocol import MAX_SCAN_POINTS
    from diffstream.live.soak import SoakSettings, run_soak

    if not 1 <= args.frames <= MAX_SCAN_POINTS:
        raise UserError(f"frames: must be from 1 to {MAX_SCAN_POINTS:,} (one scan), got {args.frames}")
    if not (math.isfinite(args.rate) and args.rate >= 0):
        raise UserError(f"rate: must be a finite number ≥ 0 frames/s, got {args.rate:g}")
    if args.batch_size < 1:
        raise UserError(f"batch-size: must be at least 1, got {args.batch_size}")
    try:
        engine = create_engine(args.model, args.engine)
    except (EngineError, ModelCardError) as error:
        raise UserError(str(error)) from None
    card = engine.card
    settings = SoakSettings(frames=args.frames, frame_shape=tuple(card.input_shape), kind=card.kind,
                            dtype=card.input_dtype, rate=args.rate, batch_size=args.batch_size)
    result = {"command": "diffstream bench soak", "machine": machine_record(), "model": str(args.model),
              "engine": {"name": engine.name, "device": engine.device}, "frame_shape": list(settings.frame_shape),
              **run_soak(engine, str(args.model), settings)}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    causes = ", ".join(f"{cause} {count:,}" for cause, count in result["dropped_by_cause"].items())
    print(f"diffstream bench soak: {result['frames']:,} frames of {settings.frame_shape[0]}×{settings.frame_shape[1]} "
          f"{settings.dtype} through {args.model} on {engine.name} in {result['duration_s']} s")
    print(f"  received {result['frames_received']:,}, mapped {result['frames_mapped']:,} "
          f"({result['mapped_fps']:,.0f} frames/s); dropped {result['frames_dropped']:,} ({causes}), "
          f"{result['frames_dropped_unexplained']:,} unexplained")
    print(f"  resident memory {result['rss_after_warmup_mb']} MB after warm-up, peak {result['rss_peak_mb']} MB "
          f"while streaming (growth {result['rss_growth_mb']} MB), {result['rss_after_scan_mb']} MB after the scan")
    return 0
