"""``diffstream evaluate``: score a model on fresh simulated frames, as the papers score theirs.

The work is in ``diffstream.trainer.evaluation`` (imported inside the handler: it pulls in
the trainer, which the live commands must not load at start-up).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score a model on fresh simulated frames (accuracy, confusion, disorientation, Euler scores)",
        description=(
            "Simulate fresh test frames from the training config stored in the model's card (another seed) and "
            "score the ONNX file on them with ONNX Runtime: for EBSD lattice models accuracy, per-class precision "
            "and recall, confusion matrices and the disorientation of the oriented phases; for 4D-STEM orientation "
            "models the disorientation and paper 2's MAE, MSE and R² on Euler angles."
        ),
    )
    parser.add_argument("--model", required=True,
                        help="a shipped model's name (see `diffstream models`) or an .onnx file")
    parser.add_argument("--blind", action="store_true",
                        help="score on the blind materials, never trained on (EBSD lattice models only)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")
    parser.add_argument("--report", type=Path, metavar="DIR",
                        help="write metrics.json and PNG figures (confusion matrices, training curves, IPF maps) here")
    parser.add_argument("--n", type=int, metavar="N",
                        help="fresh frames per material (default 200 for EBSD, 1000 for 4D-STEM)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from diffstream.engines.model_card import ModelCardError
    from diffstream.live.cli import UserError
    from diffstream.trainer.config import ConfigError
    from diffstream.trainer.evaluation import EvaluationError, evaluate_model, load_for_evaluation

    if args.n is not None and args.n < 1:
        raise UserError(f"n: must be a positive number of frames, got {args.n}")
    try:
        result = evaluate_model(args.model, blind=args.blind, frames=args.n)
        if args.report is not None:
            from diffstream.trainer.evaluation_report import write_report

            result["report"] = write_report(result, load_for_evaluation(args.model), args.report)
    except (EvaluationError, ConfigError, ModelCardError) as error:
        raise UserError(str(error)) from None
    if args.json:
        print(json.dumps(result))
    else:
        print(_summary(result))
    return 0


def _summary(result: dict) -> str:
    """The headline figures; tables (confusion, per class) are in --json and --report."""
    lines = [f"{result['model']} ({result['kind']}) on {result['frames']:,} fresh {result['split']} frames "
             f"(data seed {result['data_seed']})"]
    if "accuracy" in result:
        lines.append(f"  accuracy: {result['accuracy']:.4f}")
        if "accuracy_without_ordered_superstructures" in result:
            lines.append(f"  accuracy without ordered superstructures: "
                         f"{result['accuracy_without_ordered_superstructures']:.4f}")
        for name, stats in result["disorientation_deg"].items():
            lines.append(f"  {name} disorientation: median {stats['median']}°, mean {stats['mean']}°, "
                         f"95th percentile {stats['p95']}°")
    if "median_disorientation_deg" in result:
        lines.append(f"  disorientation: median {result['median_disorientation_deg']}°, "
                     f"mean {result['mean_disorientation_deg']}°, 95th percentile {result['p95_disorientation_deg']}°")
        for key, label in (("euler", "nearest equivalent"), ("euler_raw", "as predicted")):
            e = result[key]
            lines.append(f"  Euler angles ({label}): MAE {e['mae_deg']}°, MSE {e['mse_deg2']}°², R² {e['r2']}")
    if "report" in result:
        lines.append(f"  report: {', '.join(result['report']['files'])}")
    return "\n".join(lines)
