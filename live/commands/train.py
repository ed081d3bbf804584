"""``diffstream train`` and ``diffstream export``: train a network from a config, and turn a
checkpoint into the ONNX model file the live path runs (and its torch program beside it).

torch is imported inside the handlers only: registering these commands must not slow down
``diffstream --help`` or pull torch into the live commands.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train",
        help="train a network from a config file",
        description=(
            "Generate (or reuse) the cached simulated dataset of a config and train its network, writing "
            "last.pt after every epoch and best.pt at the best validation loss."
        ),
    )
    train.add_argument("--config", required=True,
                       help="TOML config file, or a shipped config's name (e.g. ebsd-lattice)")
    train.add_argument("--quick", action="store_true",
                       help="the config's tiny smoke-test variant: small data, one or two epochs, under a "
                            "minute")
    train.add_argument("--out", type=Path, help="output folder for checkpoints (default runs/NAME)")
    train.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where to train (default cpu)")
    train.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    train.set_defaults(handler=run_train)

    export = subparsers.add_parser(
        "export",
        help="export a checkpoint to an ONNX model file with its card, and its torch program",
        description=(
            "Write a checkpoint's network as ONNX (raw uint8 frames in; class_probabilities, rotation_matrix, "
            "confidence out; preprocessing inside the graph) with its model card in the file's metadata, and "
            "beside it the same network as a torch.export program (OUT with suffix .pt2) for the torch engine."
        ),
    )
    export.add_argument("checkpoint", type=Path, help="checkpoint written by `diffstream train` (best.pt)")
    export.add_argument("--out", type=Path, required=True, help="ONNX file to write (.onnx)")
    export.add_argument("--evaluate", action="store_true",
                        help="score the ONNX file on the config's test, blind and demo sets and time it; "
                             "the numbers go into the card")
    export.add_argument("--views", type=int, choices=(1, 4, 8), default=1,
                        help="4D-STEM models: run the network on this many symmetric views of each frame (quarter "
                             "turns about the beam, and mirrors at 8) and combine them in the graph; slower by the "
                             "same factor, more accurate (docs/models.md). Default 1")
    export.set_defaults(handler=run_export)


def run_train(args: argparse.Namespace) -> int:
    from diffstream.live.cli import UserError
    from diffstream.trainer.config import ConfigError, load_config
    from diffstream.trainer.models import ModelSpecError
    from diffstream.trainer.training import TrainingError, train

    try:
        config = load_config(args.config, quick=args.quick)
    except ConfigError as error:
        raise UserError(str(error)) from None
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise UserError("device: cuda requested but torch sees no CUDA device here")
    out = args.out or Path("runs") / (config.name + ("-quick" if args.quick else ""))
    try:
        best = train(config, out, device=args.device, resume=args.resume)
    except (TrainingError, ModelSpecError) as error:
        raise UserError(str(error)) from None
    summary = {k: v for k, v in best.items() if k != "val"}
    print(json.dumps({"checkpoint": str(out / "best.pt"), **summary}, indent=1))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from diffstream.live.cli import UserError
    from diffstream.trainer.export import ExportError, export_checkpoint
    from diffstream.trainer.training import TrainingError

    if args.out.suffix != ".onnx":
        raise UserError(f"out: {args.out} must end in .onnx")
    try:
        card = export_checkpoint(args.checkpoint, args.out, evaluate=args.evaluate, views=args.views)
    except (TrainingError, ExportError) as error:
        raise UserError(str(error)) from None
    program = args.out.with_suffix(".pt2")
    print(json.dumps({"model": str(args.out), "program": str(program) if program.is_file() else None,
                      "name": card.name, "metrics": _brief(card.metrics)}, indent=1))
    return 0


def _brief(metrics: object) -> object:
    """The card's metrics without the confusion matrices, which are for files, not terminals."""
    if isinstance(metrics, dict):
        return {k: _brief(v) for k, v in metrics.items() if k != "confusion"}
    return metrics
