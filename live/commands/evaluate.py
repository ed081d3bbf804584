"""``diffstream evaluate``: score a model on fresh simulated frames, as the papers score theirs.

The work is in ``diffstream.trainer.evaluation`` (imported inside the handler: it pulls in
the trainer, which the live commands must not load at start-up).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from .detector_sim import PATTERN_SIMULATIONS

if TYPE_CHECKING:
    from diffstream.trainer.evaluation import EvaluatedModel
    from diffstream.trainer.gradcam import GradCam


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="score a model on fresh simulated frames (accuracy, confusion, disorientation, Euler scores)",
        description=(
            "Simulate fresh test frames from the training config stored in the model's card (another seed) and "
            "score the ONNX file on them with ONNX Runtime: for EBSD lattice models accuracy, per-class precision "
            "and recall, confusion matrices and the disorientation of the oriented phases; for 4D-STEM orientation "
            "models the disorientation and paper 2's MAE, MSE and R² on Euler angles. --dose-sweep or --doses: the "
            "same test frames at a series of camera doses instead; --voltage-sweep or --voltages: the test (or "
            "--blind) frames at a series of beam voltages, which scale the band widths (EBSD lattice models); "
            "--axial-sweep or --c-scales: the hexagonal and tetragonal training materials with c stretched or shrunk, "
            "which turns their band angles (EBSD lattice models). "
            "--refine: also the oriented phases' disorientation after pattern matching finishes what the network "
            "starts: EBSD frames refined against their master patterns (kikuchipy) from the network's answer, "
            "4D-STEM frames indexed by template matching with the network's answer among the candidates. --master: "
            "the same frames from EMsoft (dynamical) master pattern files, beside each kind the model was trained on."
        ),
    )
    parser.add_argument("--model", required=True,
                        help="a shipped model's name (see `diffstream models`) or an .onnx file")
    parser.add_argument("--blind", action="store_true",
                        help="score on the blind materials, never trained on (EBSD lattice models only)")
    parser.add_argument("--patterns", choices=PATTERN_SIMULATIONS,
                        help="project the test (or blind) frames from this kind of master pattern, as the demo "
                             "streams them (kinematical at half size 400, dynamical Bloch waves at 100), instead "
                             "of the model's own (EBSD models trained on simulated frames)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")
    parser.add_argument("--report", type=Path, metavar="DIR",
                        help="write metrics.json and PNG figures (confusion matrices, training curves, IPF maps) here")
    parser.add_argument("--n", type=int, metavar="N",
                        help="fresh frames per material (default 200 for EBSD, 1000 for 4D-STEM)")
    parser.add_argument("--dose-sweep", action="store_true",
                        help="the dose study: accuracy and median disorientation of the test set made again at "
                             "10, 30, 100, 300 and 1000 electrons per pixel (EBSD lattice models)")
    parser.add_argument("--doses", metavar="LIST",
                        help="the dose study at these doses, comma-separated electrons per pixel (e.g. 10,100,1000)")
    parser.add_argument("--voltage-sweep", action="store_true",
                        help="the voltage study: accuracy and median disorientation of the test (or --blind) set "
                             "made again at 10, 15, 20, 25 and 30 kV (EBSD lattice models)")
    parser.add_argument("--voltages", metavar="LIST",
                        help="the voltage study at these beam voltages, comma-separated kV (e.g. 10,20,30)")
    parser.add_argument("--axial-sweep", action="store_true",
                        help="the axial-ratio study: accuracy on the hexagonal and tetragonal training materials with "
                             "c scaled by 0.8, 0.9, 1.0, 1.1 and 1.2, a and b kept (EBSD lattice models)")
    parser.add_argument("--c-scales", metavar="LIST",
                        help="the axial-ratio study at these factors on c, comma-separated (e.g. 0.9,1,1.1)")
    parser.add_argument("--refine", action="store_true",
                        help="also score the orientations pattern matching gives: EBSD frames refined against "
                             "their master patterns from the network's answer (about 15 frames/s on 2 CPU cores), "
                             "4D-STEM frames indexed by template matching (about 10 frames/s)")
    parser.add_argument("--master", metavar="PHASE=FILE,...",
                        help="score the test (or blind) frames of these phases projected from EMsoft (dynamical) "
                             "master pattern files, beside the same frames from the master patterns the model was "
                             "trained on, kinematical, Bloch-wave or both (EBSD lattice models; the files must hold "
                             "the model's voltage)")
    parser.add_argument("--gradcam", action="store_true",
                        help="with --report, also write gradcam.png: Grad-CAM maps over a few test frames per class "
                             "(EBSD lattice models; from the .pt2 beside the model, or --checkpoint)")
    parser.add_argument("--checkpoint", type=Path, metavar="FILE",
                        help="with --gradcam, the training checkpoint of the model to take the network from")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from diffstream.engines.model_card import ModelCardError
    from diffstream.live.cli import UserError
    from diffstream.trainer.config import ConfigError
    from diffstream.trainer.evaluation import (
        DEFAULT_DOSES,
        DEFAULT_VOLTAGES,
        EvaluationError,
        evaluate_model,
        load_for_evaluation,
    )
    from diffstream.trainer.evaluation_axial import DEFAULT_C_SCALES

    if args.n is not None and args.n < 1:
        raise UserError(f"n: must be a positive number of frames, got {args.n}")
    doses = _values(args.doses, DEFAULT_DOSES if args.dose_sweep else (), "doses",
                    "electrons per pixel such as 10,100,1000")
    voltages = _values(args.voltages, DEFAULT_VOLTAGES if args.voltage_sweep else (), "voltages",
                       "kV such as 10,20,30")
    scales = _values(args.c_scales, DEFAULT_C_SCALES if args.axial_sweep else (), "c scales",
                     "factors such as 0.9,1,1.1")
    if sum(map(bool, (doses, voltages, scales))) > 1:
        raise UserError("--doses, --voltages and --c-scales: one study at a time")
    study = doses or voltages or scales
    if (args.gradcam and (args.report is None or study)) or (args.checkpoint and not args.gradcam):
        raise UserError("--gradcam needs --report DIR (and no dose, voltage or axial-ratio study), "
                        "and --checkpoint needs --gradcam")
    if args.refine and study:
        raise UserError("--refine: scores a plain evaluation; leave out the dose, voltage or axial-ratio study")
    if (doses or scales) and args.blind:
        raise UserError("--blind: the dose and axial-ratio studies use the test materials; leave out --blind")
    if args.patterns and (study or args.master):
        raise UserError("--patterns: scores a plain or --blind evaluation; leave out studies and --master")
    if args.master and (study or args.refine or args.blind or args.report is not None or args.gradcam):
        raise UserError("--master: a comparison of its own; leave out studies, --refine, --blind and --report "
                        "(the phases named choose the test or blind materials)")
    try:
        if args.master:
            from diffstream.live.commands.refine import master_files
            from diffstream.trainer.evaluation_dynamical import evaluate_dynamical

            result = evaluate_dynamical(args.model, master_files(args.master), frames=args.n)
        elif study:
            from diffstream.trainer.evaluation import evaluate_dose, evaluate_voltage
            from diffstream.trainer.evaluation_axial import evaluate_axial
            from diffstream.trainer.evaluation_report import write_sweep_report

            if doses:
                result = evaluate_dose(args.model, doses, frames=args.n)
            elif voltages:
                result = evaluate_voltage(args.model, voltages, frames=args.n, blind=args.blind)
            else:
                result = evaluate_axial(args.model, scales, frames=args.n)
            if args.report is not None:
                result["report"] = write_sweep_report(result, args.report)
        else:
            gradcam = _gradcam(args, load_for_evaluation(args.model)) if args.gradcam else None
            result = evaluate_model(args.model, blind=args.blind, frames=args.n, refine=args.refine,
                                    patterns=args.patterns)
            if args.report is not None:
                from diffstream.trainer.evaluation_report import write_report

                result["report"] = write_report(result, load_for_evaluation(args.model), args.report, gradcam)
    except (EvaluationError, ConfigError, ModelCardError) as error:
        raise UserError(str(error)) from None
    if args.json:
        print(json.dumps(result))
    elif args.master:
        print(_master_table(result))
    else:
        print(_sweep_table(result) if study else _summary(result))
    return 0


def _master_table(result: dict) -> str:
    """One row per kind of master pattern: accuracy, each oriented phase's median
    disorientation, and where each phase's frames went."""
    own = " and ".join(row["master"] for row in result["rows"][:-1])
    lines = [f"{result['model']} on {result['frames_per_material']} fresh {result['split']} frames per material "
             f"(data seed {result['data_seed']}), from its own ({own}) and from EMsoft master patterns"]
    for row in result["rows"]:
        angles = "".join(f", {name} median {angle}°" for name, angle in row["median_disorientation_deg"].items())
        lines.append(f"  {row['master']:>11}: accuracy {row['accuracy']:.4f}{angles}")
        for material, classes in row["classed_as"].items():
            counts = ", ".join(f"{name} {count}" for name, count in sorted(classes.items(), key=lambda kv: -kv[1]))
            lines.append(f"  {'':>11}  {material} classed as: {counts}")
    return "\n".join(lines)


def _gradcam(args: argparse.Namespace, model: EvaluatedModel) -> GradCam:
    """The network --gradcam asks for: --checkpoint's, else the .pt2 program beside the model."""
    from diffstream.live.cli import UserError
    from diffstream.trainer.gradcam import GradCamError, gradcam_from_checkpoint, gradcam_from_program
    from diffstream.trainer.training import TrainingError

    if model.card.kind != "ebsd":
        raise UserError(f"--gradcam: {model.card.name} is not an EBSD lattice model (paper 1 Fig. 5)")
    try:
        gradcam = gradcam_from_checkpoint(args.checkpoint) if args.checkpoint else gradcam_from_program(model.path)
    except (GradCamError, TrainingError) as error:
        raise UserError(str(error)) from None
    if gradcam.num_classes != len(model.card.classes):
        raise UserError(f"--checkpoint: {args.checkpoint} has {gradcam.num_classes} classes, "
                        f"{model.card.name} has {len(model.card.classes)}")
    return gradcam


def _values(listed: str | None, defaults: tuple[float, ...], name: str, example: str) -> tuple[float, ...]:
    """The values of a study: ``listed`` (comma-separated) if given, else ``defaults`` (the
    study's own with --dose-sweep, --voltage-sweep or --axial-sweep, () for a plain evaluation)."""
    from diffstream.live.cli import UserError

    if listed is None:
        return defaults
    try:
        values = tuple(float(item) for item in listed.split(","))
    except ValueError:
        raise UserError(f"{name}: expected comma-separated {example}, got {listed!r}") from None
    if min(values) <= 0:
        raise UserError(f"{name}: must be positive, got {listed!r}")
    return values


def _euler_lines(scores: dict, indent: str = "  ") -> list[str]:
    """Paper 2's Euler-angle scores, against the nearest equivalent and as predicted."""
    labels = (("euler", "nearest equivalent"), ("euler_raw", "as predicted"))
    return [f"{indent}Euler angles ({label}): MAE {scores[key]['mae_deg']}°, MSE {scores[key]['mse_deg2']}°², "
            f"R² {scores[key]['r2']}" for key, label in labels]


def _sweep_table(result: dict) -> str:
    """One row per dose, voltage or c scale: accuracy and each oriented phase's median
    disorientation."""
    from diffstream.trainer.evaluation import SWEEPS

    variable, rows = result["sweep"], result["rows"]
    sweep = SWEEPS[variable]
    phases = list(rows[0]["median_disorientation_deg"])
    apart = "accuracy_without_ordered_superstructures" in rows[0]
    lines = [f"{result['model']} on {result['frames_per_material']} fresh {result['split']} frames per material "
             f"and {sweep.condition} (data seed {result['data_seed']})",
             f"  {sweep.label:>26}  accuracy" + ("  without ordered superstructures" if apart else "")
             + "".join(f"  {name + ' median':>12}" for name in phases)]
    for row in rows:
        without = f"  {row['accuracy_without_ordered_superstructures']:>32.4f}" if apart else ""
        angles = "".join(f"  {row['median_disorientation_deg'][name]:>11.1f}°" for name in phases)
        lines.append(f"  {row[variable]:>26g}  {row['accuracy']:>8.4f}{without}{angles}")
    if "report" in result:
        lines.append(f"  report: {', '.join(result['report']['files'])}")
    return "\n".join(lines)


def _summary(result: dict) -> str:
    """The headline figures; tables (confusion, per class) are in --json and --report."""
    patterns = f", {result['patterns']} master patterns" if "patterns" in result else ""
    origin = (f"imported {result['split']} frames of {result['data_folder']}" if "data_folder" in result
              else f"fresh {result['split']} frames (data seed {result['data_seed']}{patterns})")
    lines = [f"{result['model']} ({result['kind']}) on {result['frames']:,} {origin}"]
    if "accuracy" in result:
        lines.append(f"  accuracy: {result['accuracy']:.4f}")
        if "accuracy_without_ordered_superstructures" in result:
            lines.append(f"  accuracy without ordered superstructures: "
                         f"{result['accuracy_without_ordered_superstructures']:.4f}")
        for name, stats in result["disorientation_deg"].items():
            lines.append(f"  {name} disorientation: median {stats['median']}°, mean {stats['mean']}°, "
                         f"95th percentile {stats['p95']}°")
        for name, stats in result.get("refined_disorientation_deg", {}).items():
            lines.append(f"  {name} refined: median {stats['median']}°, mean {stats['mean']}°, "
                         f"95th percentile {stats['p95']}°; {stats['matched']:.1%} matched, "
                         f"{stats['from_dictionary']:.1%} from the dictionary, {stats['frames_per_second']} frames/s")
    if "median_disorientation_deg" in result:
        lines.append(f"  disorientation: median {result['median_disorientation_deg']}°, "
                     f"mean {result['mean_disorientation_deg']}°, 95th percentile {result['p95_disorientation_deg']}°, "
                     f"{result['within_10deg']:.1%} within 10°")
        twin = result["half_turn"]
        lines.append(f"  counting the half turn about the beam as right: median {twin['median']}°, "
                     f"{twin['within_10deg']:.1%} within 10°; "
                     f"beam direction median {twin['beam_direction_median_deg']}°")
        lines += _euler_lines(result)
        for name, stats in result.get("refined_disorientation_deg", {}).items():
            lines.append(f"  {name} template matching: median {stats['median']}°, mean {stats['mean']}°, "
                         f"95th percentile {stats['p95']}°, {stats['frames_per_second']} frames/s")
            lines += _euler_lines(stats, "    ")
            kept = stats["reliable"]
            lines.append(f"    reliable (reliability ≥ {kept['min_reliability']:g}): {kept['share']:.1%} of frames"
                         + (f", median {kept['median']}°, mean {kept['mean']}°, 95th percentile {kept['p95']}°"
                            if kept["frames"] else ""))
            if kept["frames"]:
                lines += _euler_lines(kept, "      ")
    if "report" in result:
        lines.append(f"  report: {', '.join(result['report']['files'])}")
    return "\n".join(lines)
