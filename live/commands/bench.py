"""``diffstream bench``: measured rates, printed. Speed is measured here, never in tests."""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("bench", help="measure rates on this machine",
                                   description="Measure and print rates on this machine.")
    what = parser.add_subparsers(dest="what", required=True, metavar="WHAT")
    sim = what.add_parser(
        "simulate",
        help="pattern simulation rates (patterns/s)",
        description=(
            "Patterns per second of the EBSD projector (numpy, and torch on CPU and CUDA where "
            "present), the detector model and SPED rendering, best of 3 after a warm-up."
        ),
    )
    sim.add_argument("--n", type=int, default=4000, help="patterns per timed run (default 4000)")
    sim.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    sim.set_defaults(handler=_run_simulate)
    live = what.add_parser(
        "live",
        help="live pipeline rates against the socket and engine ceilings",
        description=(
            "Stream random frames of the model's input shape from a child process over loopback TCP "
            "(PUSH/PULL) and measure, in one run: a bare pyzmq receive loop (the socket ceiling), the bare "
            "engine (the compute ceiling), the pipeline's per-stage and end-to-end rates, and latency from "
            "frame timestamp to map at a paced rate."
        ),
    )
    live.add_argument("--model", default="ebsd-lattice", metavar="NAME|PATH", help="model (default ebsd-lattice)")
    live.add_argument("--engine", default="auto", help="inference backend (default auto)")
    live.add_argument("--frame-shape", default=None, metavar="HxW", help="frame shape (default: the model's input)")
    live.add_argument("--frames", type=int, default=20000, metavar="N",
                      help="frames per full-speed run (default 20000)")
    live.add_argument("--batch-size", type=int, default=256, metavar="N", help="largest batch (default 256)")
    live.add_argument("--latency-rate", type=float, default=2000.0, metavar="FPS",
                      help="paced rate for the latency run (default 2000 frames/s)")
    live.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    live.set_defaults(handler=_run_live)


def _cpu_model() -> str:
    """The CPU's marketing name where Linux tells it; the architecture otherwise."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _machine() -> dict:
    return {
        "cpu_cores": os.cpu_count(),
        "processor": _cpu_model(),
        "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
    }


def _simulate_rows(n: int) -> list[dict]:
    import numpy as np

    from diffstream.trainer.physics.catalogue import get_phase_entry
    from diffstream.trainer.physics.detector_model import Detector, preset
    from diffstream.trainer.physics.ebsd_projection import measure_projection_rate
    from diffstream.trainer.physics.sampling import random_rotations
    from diffstream.trainer.physics.sped import RenderSettings, render_patterns, simulate_spots
    from diffstream.trainer.physics.sped_geometry import ReflectionTable, SpedGeometry
    from diffstream.trainer.physics.timing import best_rate

    rows = []
    for size in (60, 128):
        rows.append({"stage": "EBSD projection", "backend": "numpy", "shape": [size, size],
                     "patterns_per_s": measure_projection_rate((size, size), n)})
    rows += _torch_rows(n)
    clean = np.random.default_rng(0).random((n, 60, 60), dtype=np.float32)
    detector = Detector(preset("fast"))
    rows.append({"stage": "detector model 'fast'", "backend": "numpy", "shape": [60, 60],
                 "patterns_per_s": best_rate(lambda: detector.acquire(clean), n)})
    geometry = SpedGeometry()
    table = ReflectionTable.from_phase(get_phase_entry("LiNiO2").full_phase(), geometry.reciprocal_reach)
    rotations = random_rotations(min(n, 1000), seed=0)
    settings = RenderSettings(poisson=True)
    rows.append({
        "stage": "SPED spots + render (LiNiO2)", "backend": "numpy", "shape": list(geometry.shape),
        "patterns_per_s": best_rate(
            lambda: render_patterns(simulate_spots(table, rotations, geometry), geometry, settings, rng=0),
            rotations.size),
    })
    return rows


def _torch_rows(n: int) -> list[dict]:
    try:
        import torch
    except ImportError:
        return []
    from diffstream.trainer.physics.ebsd_projection_torch import measure_torch_projection_rate

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        for size in (60, 128):
            count = n * 50 if device == "cuda" else n
            rows.append({"stage": "EBSD projection", "backend": f"torch {device}", "shape": [size, size],
                         "patterns_per_s": measure_torch_projection_rate((size, size), count, device=device)})
    return rows


def _run_simulate(args: argparse.Namespace) -> int:
    rows = _simulate_rows(args.n)
    if args.json:
        print(json.dumps({"command": "diffstream bench simulate", "machine": _machine(), "results": rows}, indent=2))
        return 0
    machine = _machine()
    print(f"diffstream bench simulate: {machine['cpu_cores']} CPU cores ({machine['processor']}), "
          f"Python {machine['python']}, {args.n} patterns per run, best of 3")
    print(f"{'stage':<32} {'backend':<11} {'shape':>9} {'patterns/s':>12}")
    for row in rows:
        shape = "×".join(str(v) for v in row["shape"])
        print(f"{row['stage']:<32} {row['backend']:<11} {shape:>9} {row['patterns_per_s']:>12,.0f}")
    return 0


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
    from diffstream.live.live_bench import BenchSettings, run_live_bench

    if args.frames < args.batch_size or args.batch_size < 1:
        raise UserError("--frames must be at least --batch-size, and --batch-size at least 1")
    try:
        engine = create_engine(args.model, args.engine)
    except (EngineError, ModelCardError) as error:
        raise UserError(str(error)) from None
    card = engine.card
    shape = _frame_shape(args.frame_shape) if args.frame_shape else tuple(card.input_shape)
    settings = BenchSettings(frames=args.frames, frame_shape=shape, kind=card.kind, dtype=card.input_dtype,
                             batch_size=args.batch_size, latency_rate=args.latency_rate)
    result = {
        "command": "diffstream bench live", "machine": _machine(), "model": str(args.model),
        "engine": {"name": engine.name, "device": engine.device}, "frame_shape": list(shape),
        "frames": args.frames, "batch_size": args.batch_size, **run_live_bench(engine, str(args.model), settings),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    p = result["pipeline"]
    paced = result["paced"]
    print(f"diffstream bench live: {result['machine']['cpu_cores']} CPU cores ({result['machine']['processor']}), "
          f"{args.model} on {engine.name} ({engine.device}), {shape[0]}×{shape[1]} {card.input_dtype}, "
          f"{args.frames} frames, batch {args.batch_size}")
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
