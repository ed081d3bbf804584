"""``diffstream simulate``: simulated patterns and synthetic specimens, written to files that
kikuchipy, HyperSpy and orix open."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "simulate",
        help="simulate diffraction patterns or a synthetic specimen",
        description="Simulate diffraction patterns or a synthetic specimen from the phase catalogue.",
    )
    kinds = parser.add_subparsers(dest="what", required=True, metavar="WHAT")
    _register_patterns(kinds)
    _register_specimen(kinds)


def _register_patterns(kinds: argparse._SubParsersAction) -> None:
    p = kinds.add_parser(
        "patterns",
        help="patterns of one phase at random orientations",
        description=(
            "Patterns of one phase at uniformly random orientations. EBSD goes to kikuchipy "
            "h5ebsd (.h5): kikuchipy.load(FILE) gives the patterns, .detector and .xmap.rotations. "
            "4D-STEM goes to HyperSpy .hspy with the orientations in metadata.Simulation."
        ),
    )
    p.add_argument("--phase", required=True, help="catalogue phase name (see `diffstream phases`)")
    p.add_argument("--n", type=int, default=16, help="number of patterns (default 16)")
    p.add_argument("--size", type=int, default=60, help="pattern side in pixels (default 60)")
    p.add_argument("--kind", choices=("ebsd", "4dstem"), default="ebsd", help="pattern kind (default ebsd)")
    p.add_argument("--clean", action="store_true", help="no noise or background: raw float32 intensities")
    p.add_argument("--out", type=Path, required=True, help="output file (.h5 for EBSD, .hspy for 4D-STEM)")
    p.add_argument("--png", type=Path, help="also save a gallery of the first 16 patterns")
    p.add_argument("--seed", type=int, default=0, help="seed of the orientations and noise (default 0)")
    p.add_argument("--voltage", type=float, help="accelerating voltage in kV (default 20 EBSD, 300 4D-STEM)")
    ebsd = p.add_argument_group("EBSD geometry")
    ebsd.add_argument("--pc", type=float, nargs=3, metavar=("X", "Y", "Z"), default=(0.5, 0.3, 0.6),
                      help="pattern centre, Bruker convention (default 0.5 0.3 0.6)")
    ebsd.add_argument("--detector-tilt", type=float, default=0.0, help="detector tilt in degrees (default 0)")
    ebsd.add_argument("--sample-tilt", type=float, default=70.0, help="sample tilt in degrees (default 70)")
    ebsd.add_argument("--camera", choices=("fast", "high_res"), default="fast",
                      help="detector model preset when not --clean (default fast)")
    sped = p.add_argument_group("4D-STEM geometry")
    sped.add_argument("--calibration", type=float, help="Å⁻¹ per pixel (default: paper 2's reach at this size)")
    sped.add_argument("--precession", type=float, default=0.6, help="precession angle in degrees (default 0.6)")
    p.set_defaults(handler=_run_patterns)


def _register_specimen(kinds: argparse._SubParsersAction) -> None:
    p = kinds.add_parser(
        "specimen",
        help="a synthetic multi-phase specimen (ground-truth map)",
        description="Grow a synthetic specimen of grains and save its ground truth as an orix CrystalMap (HDF5).",
    )
    p.add_argument("--phases", default="Ni:0.5,Fe:0.3,Ti:0.2",
                   help="NAME:FRACTION,... area fractions summing to 1 (default Ni:0.5,Fe:0.3,Ti:0.2)")
    p.add_argument("--scan", default="100x100", help="scan grid ROWSxCOLS (default 100x100)")
    p.add_argument("--step", type=float, default=1.0, help="step size in µm (default 1)")
    p.add_argument("--grain-size", type=float, default=10.0, help="mean grain diameter in steps (default 10)")
    p.add_argument("--spread", type=float, default=0.5, help="mean intra-grain misorientation in degrees (default 0.5)")
    p.add_argument("--empty-fraction", type=float, default=0.0, help="share of points with no pattern (default 0)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--out", type=Path, required=True, help="output orix HDF5 file (.h5)")
    p.add_argument("--png", type=Path, help="also save the phase and IPF-Z maps as PNG")
    p.set_defaults(handler=_run_specimen)


def parse_scan_shape(text: str) -> tuple[int, int]:
    """'ROWSxCOLS' as two ints; anything else is the user's mistake, said in one line."""
    from diffstream.trainer.physics.errors import PhysicsInputError

    try:
        rows, cols = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise PhysicsInputError(f"scan: expected ROWSxCOLS such as 100x100, got {text!r}") from None
    return rows, cols


def parse_phase_fractions(text: str) -> tuple[tuple[str, float], ...]:
    """'Ni:0.5,Fe:0.5' as ((name, fraction), ...)."""
    from diffstream.trainer.physics.errors import PhysicsInputError

    pairs = []
    for item in text.split(","):
        name, _, fraction = item.partition(":")
        try:
            pairs.append((name.strip(), float(fraction)))
        except ValueError:
            raise PhysicsInputError(f"phases: expected NAME:FRACTION,..., got {item!r}") from None
    return tuple(pairs)


def _run_patterns(args: argparse.Namespace) -> int:
    from diffstream.trainer.physics.gallery import save_gallery

    voltage = {} if args.voltage is None else {"voltage_kv": args.voltage}
    if args.kind == "ebsd":
        from diffstream.trainer.physics.ebsd_patterns import simulate_ebsd_patterns, write_h5ebsd

        pattern_set = simulate_ebsd_patterns(
            args.phase, args.n, args.size, clean=args.clean, seed=args.seed, pc=tuple(args.pc),
            tilt=args.detector_tilt, sample_tilt=args.sample_tilt, detector=args.camera, **voltage,
        )
        write_h5ebsd(pattern_set, args.out)
        log_scale = False
    else:
        from diffstream.trainer.physics.sped_patterns import simulate_sped_patterns, write_hspy

        pattern_set = simulate_sped_patterns(
            args.phase, args.n, args.size, clean=args.clean, seed=args.seed,
            calibration=args.calibration, precession_deg=args.precession, **voltage,
        )
        write_hspy(pattern_set, args.out)
        log_scale = True
    print(f"wrote {len(pattern_set.patterns)} {args.kind} patterns of {pattern_set.phase.name} to {args.out}")
    if args.png:
        title = f"{pattern_set.phase.name}, {args.kind}, {'clean' if args.clean else 'with detector noise'}"
        save_gallery(pattern_set.patterns, pattern_set.rotations, args.png, title, log_scale=log_scale)
        print(f"wrote gallery to {args.png}")
    return 0


def _run_specimen(args: argparse.Namespace) -> int:
    from diffstream.live.map_images import save_overview_png
    from diffstream.trainer.physics.specimen import SpecimenSpec, make_specimen

    spec = SpecimenSpec(
        scan_shape=parse_scan_shape(args.scan), step_size=args.step, phases=parse_phase_fractions(args.phases),
        grain_size=args.grain_size, intragrain_spread=args.spread, empty_fraction=args.empty_fraction,
        seed=args.seed,
    )
    specimen = make_specimen(spec)
    specimen.save(args.out, overwrite=True)
    fractions = ", ".join(
        f"{name} {(specimen.phase_id == i).mean():.1%}" for i, name in enumerate(spec.phase_names)
    )
    print(f"wrote {args.scan} specimen with {specimen.n_grains} grains ({fractions}) to {args.out}")
    if args.png:
        save_overview_png(specimen.to_crystal_map(), args.png, title=f"synthetic specimen, seed {args.seed}")
        print(f"wrote maps to {args.png}")
    return 0
