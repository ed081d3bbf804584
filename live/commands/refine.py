"""``diffstream refine``: a recorded scan's orientations refined by pattern matching.

The work is in ``diffstream.live.scan_refinement`` (imported inside the handler: kikuchipy
and the engines are slow to import, and ``--help`` should not wait for them).
"""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "refine",
        help="refine a recorded scan's orientations by pattern matching (sub-degree, after the scan)",
        description=(
            "Read a scan back (a recording of `diffstream record` or `live --record`, or a pattern file "
            "`diffstream replay` reads), run the model on every frame as the live map did, and refine the "
            "orientation of each point whose class names a phase (or of every point with a pattern, against the "
            "phases --phases names). EBSD: against that phase's kinematical master pattern at the scan's detector "
            "geometry (kikuchipy: NCC refinement from the network's answer, dictionary indexing where that "
            "fails), about 15-25 frames/s on 2 CPU cores. 4D-STEM: template matching at the scan's calibration, "
            "the network's answer among the candidates, about 10 frames/s. Writes refined.h5 (orix CrystalMap), "
            "refined.ang, refined_ipf_z.png, refined_ncc.png (EBSD) or refined_reliability.png (4D-STEM) and "
            "refined.json. Ctrl-C stops and writes the points refined so far."
        ),
    )
    parser.add_argument("source", type=Path, help="recording (.h5), EBSD or 4D-STEM pattern file")
    parser.add_argument("--model", metavar="NAME|PATH",
                        help="a shipped model's name or an .onnx file (default ebsd-lattice for an EBSD scan, "
                             "sped-orientation for a 4D-STEM one)")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR", help="folder for the refined map")
    parser.add_argument("--phases", metavar="[CLASS=]PHASE,...",
                        help="what to refine against: CLASS=PHASE refines the points of that class against the "
                             "catalogue phase; a bare PHASE refines every point with a pattern against it, and a "
                             "point refined against several phases keeps its best match (for patterns the network "
                             "classes poorly). Default: the phases the model's orientation output was trained on, "
                             "e.g. cF=Ni,cI=Fe,hP=Ti for ebsd-lattice, LiNiO2 for sped-orientation")
    parser.add_argument("--master", metavar="PHASE=FILE,...",
                        help="EBSD: refine these phases against EMsoft (dynamical) master pattern files instead of the "
                             "catalogue's kinematical ones, as real patterns want; the file must hold the scan's "
                             "beam energy")
    parser.add_argument("--pc", type=float, nargs=3, metavar=("X", "Y", "Z"),
                        help="EBSD: pattern centre (Bruker convention) when the source gives none, or to override it")
    parser.add_argument("--voltage", type=float, metavar="KV", help="beam voltage when the source gives none")
    parser.add_argument("--truth", type=Path, metavar="FILE",
                        help="the simulator's ground truth (detector-sim --truth): report the refined and the "
                             "network's median disorientation against it")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from diffstream.engines.base import EngineError
    from diffstream.engines.model_card import ModelCardError
    from diffstream.engines.registry import ModelNotFoundError
    from diffstream.live.cli import UserError
    from diffstream.live.detector_sim import stop_on_signals
    from diffstream.live.replay import UnreadableFileError
    from diffstream.live.scan_refinement import RefineError, refine_scan, write_refinement
    from diffstream.live.truth import TruthError, load_truth

    if not args.source.exists():
        raise UserError(f"source: no file at {args.source}")
    phases = _phases(args.phases) if args.phases else None
    masters = master_files(args.master) if args.master else None
    try:
        truth = load_truth(args.truth) if args.truth else None
        with stop_on_signals() as stop:
            result = refine_scan(args.source, args.model, phases=phases, masters=masters, pc=args.pc,
                                 voltage_kv=args.voltage,
                                 progress=not args.no_progress, stop=stop)
        paths = write_refinement(args.out, result, truth)
    except (RefineError, UnreadableFileError, ModelCardError, ModelNotFoundError, EngineError, TruthError) as error:
        raise UserError(str(error)) from None
    refined, received = int(result.refined.sum()), int(result.received.sum())
    cut = "interrupted: " if result.interrupted else ""
    print(f"{cut}{refined:,} of {received:,} points refined in {result.seconds:.0f} s; "
          f"{', '.join(path.name for path in paths.values())} in {args.out}")
    return 130 if result.interrupted else 0


def _phases(text: str) -> list[tuple[str | None, str]]:
    """``[CLASS=]PHASE,...`` as (class or None, phase) pairs; anything else is a one-line error."""
    from diffstream.live.cli import UserError

    pairs = []
    for item in text.split(","):
        parts = [part.strip() for part in item.split("=")]
        if len(parts) > 2 or not all(parts):
            raise UserError(f"phases: expected PHASE or CLASS=PHASE items separated by commas (e.g. cF=Ni,cI=Fe or "
                            f"Ni,Fe), got {text!r}")
        pairs.append((parts[0], parts[1]) if len(parts) == 2 else (None, parts[0]))
    return pairs


def master_files(text: str) -> dict[str, Path]:
    """``PHASE=FILE,...`` as a dict of existing files; anything else is a one-line error."""
    from diffstream.live.cli import UserError

    masters = {}
    for item in text.split(","):
        parts = [part.strip() for part in item.split("=")]
        if len(parts) != 2 or not all(parts):
            raise UserError(f"master: expected PHASE=FILE items separated by commas, got {text!r}")
        if not Path(parts[1]).is_file():
            raise UserError(f"master: no file at {parts[1]}")
        masters[parts[0]] = Path(parts[1])
    return masters
