"""``diffstream engines`` and ``diffstream engine build``: which inference backends run here,
and building a model's TensorRT plan ahead of a scan (it takes minutes, once per GPU).

Heavy libraries are imported inside the handlers only (the CLI must stay fast to start).
"""
from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from diffstream.engines import ModelCard

CALIBRATION_PHASES = ("Ni", "Fe", "Ti")


def register(subparsers: argparse._SubParsersAction) -> None:
    listing = subparsers.add_parser(
        "engines",
        help="list the inference backends and whether they run here",
        description=("List every inference backend (tensorrt, torch, onnxruntime) in --engine auto's order of "
                     "preference, with whether it is available here, its device, and why not."),
    )
    listing.add_argument("--json", action="store_true", help="print a JSON list instead of one line per backend")
    listing.set_defaults(handler=run_engines)

    engine = subparsers.add_parser("engine", help="prepare an inference engine ahead of a scan",
                                   description="Prepare an inference engine ahead of a scan.")
    what = engine.add_subparsers(dest="what", required=True, metavar="WHAT")
    build = what.add_parser(
        "build",
        help="build and cache a model's TensorRT plan",
        description=("Build the model's TensorRT plan (dynamic batch 1..--max-batch) into the plan cache, keyed "
                     "by the ONNX file's hash, the GPU, the TensorRT version, the precision and the max batch; "
                     "a cached plan for the same key is reused. int8 is calibrated on simulated frames "
                     f"({', '.join(CALIBRATION_PHASES)} EBSD patterns at random orientations)."),
    )
    build.add_argument("model", metavar="MODEL", help="shipped model name or ONNX path")
    build.add_argument("--precision", choices=("fp16", "fp32", "int8"), default="fp16", help="(default fp16)")
    build.add_argument("--max-batch", type=int, default=1024, metavar="N",
                       help="largest batch the plan accepts (default 1024); larger batches run in chunks")
    build.add_argument("--calibration-frames", type=int, default=512, metavar="N",
                       help="simulated frames for int8 calibration (default 512)")
    build.add_argument("--rebuild", action="store_true", help="build even when the cache holds a plan")
    build.set_defaults(handler=run_build)


def run_engines(args: argparse.Namespace) -> int:
    from diffstream.engines.availability import backend_statuses

    statuses = backend_statuses()
    if args.json:
        print(json.dumps([status.to_dict() for status in statuses], indent=2))
        return 0
    for status in statuses:
        state = "available" if status.available else "not available"
        print(f"{status.name:<12} {state:<14} {status.device:<5} {status.detail}")
    return 0


def run_build(args: argparse.Namespace) -> int:
    from diffstream.engines import EngineError, ModelCardError, load_card, resolve_model
    from diffstream.engines.tensorrt_engine import engine_plan, import_tensorrt
    from diffstream.live.cli import UserError

    if args.max_batch < 1:
        raise UserError(f"--max-batch must be at least 1, got {args.max_batch}")
    try:
        path = resolve_model(args.model)
        card = load_card(path)
        import_tensorrt()  # fail on a missing library or driver before simulating calibration frames
        calibration = calibration_frames(card, args.calibration_frames) if args.precision == "int8" else None
        _, plan, built = engine_plan(path, card, precision=args.precision, max_batch=args.max_batch,
                                     calibration=calibration, rebuild=args.rebuild)
    except (EngineError, ModelCardError) as error:
        raise UserError(str(error)) from None
    print(f"{'built' if built else 'found cached'} {args.precision} TensorRT plan for {args.model} "
          f"(batch 1..{args.max_batch}): {plan}")
    return 0


def calibration_frames(card: ModelCard, n: int) -> np.ndarray:
    """``n`` simulated frames of the card's kind and shape, at random orientations of the calibration phases."""
    import numpy as np

    from diffstream.engines import EngineError
    from diffstream.live.scan_render import make_renderer

    h, w = card.input_shape
    if h != w:
        raise EngineError(f"int8 calibration frames are simulated square; the model takes {h}x{w}")
    renderer = make_renderer(card.kind, CALIBRATION_PHASES, frame_size=h)
    rng = np.random.default_rng(0)
    quaternions = rng.normal(size=(n, 4))
    quaternions /= np.linalg.norm(quaternions, axis=1, keepdims=True)
    return renderer.render(quaternions, rng.integers(0, len(CALIBRATION_PHASES), n), rng)
