"""``diffstream demo``: the whole product on one machine, no microscope needed.

It starts the detector simulator as a child process streaming a multi-phase EBSD
specimen, maps it live with the shipped ``ebsd-lattice`` model, and scores the map
against the simulator's ground truth. The simulator hands frames over losslessly (PUSH to
PULL): on a busy machine the scan then takes longer instead of losing points, which a
demo scored against its truth should never do. ``diffstream live`` subscribes (SUB) by
default, as a real detector server's other clients would.
"""
from __future__ import annotations

import argparse
import ctypes
import signal
import socket
import subprocess
import sys
from pathlib import Path

from .detector_sim import add_pattern_argument
from .live import add_pipeline_arguments, default_out_dir, run_pipeline

DEMO_PHASES = "Ni:0.4,Fe:0.3,Ti:0.3"
PR_SET_PDEATHSIG = 1


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="simulate a multi-phase EBSD scan and map it live",
        description=(
            "Start the embedded detector simulator with a Ni/Fe/Ti specimen, map the stream live with the "
            "shipped ebsd-lattice model, and print where the maps are and how they score against the truth. "
            "The first run computes three master patterns (about a minute); later runs reuse them."
        ),
    )
    add_pipeline_arguments(parser)
    parser.add_argument("--scan", default="60x80", metavar="ROWSxCOLS", help="scan size (default 60x80)")
    parser.add_argument("--rate", type=float, default=2000.0, metavar="FPS",
                        help="simulated detector frame rate (default 2000 frames/s)")
    parser.add_argument("--phases", default=DEMO_PHASES, metavar="NAME:FRACTION,...",
                        help=f"specimen phases (default {DEMO_PHASES})")
    parser.add_argument("--seed", type=int, default=7, help="specimen seed (default 7)")
    add_pattern_argument(parser)
    parser.add_argument("--screenshot", type=Path, metavar="FILE",
                        help="run the scan in the window, save a PNG of the whole window when it ends, and exit "
                             "(also offscreen: QT_QPA_PLATFORM=offscreen)")
    parser.set_defaults(handler=run)


def free_tcp_port() -> int:
    """A port the kernel just had free on loopback; the simulator binds it a moment later."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(args: argparse.Namespace) -> int:
    # Import the mapping side before the simulator starts: on a fresh install both processes
    # would otherwise JIT-compile and cache orix's numba kernels at once, and a process that
    # reads a half-written numba cache crashes.
    import diffstream.live.pipeline  # noqa: F401

    if args.screenshot is not None:
        _check_screenshot(args)
    args.out = args.out or default_out_dir()
    args.out.mkdir(parents=True, exist_ok=True)
    truth = args.out / "truth.h5"
    url = f"tcp://127.0.0.1:{free_tcp_port()}"
    command = [
        sys.executable, "-m", "diffstream.live.cli", "detector-sim", "--kind", "ebsd", "--bind", url,
        "--scan", args.scan, "--rate", str(args.rate), "--phases", args.phases, "--seed", str(args.seed),
        "--truth", str(truth), "--push", "--patterns", args.patterns,
    ]
    args.pull = True
    simulator = subprocess.Popen(command, preexec_fn=die_with_parent)
    try:
        reports = run_pipeline(args, url, truth=truth, follow=False, watch=lambda: _died(simulator))
    finally:
        _stop(simulator)
    if not reports:
        return 1
    summary = reports[-1].summary
    print(f"\ndemo: maps in {Path(args.out).resolve()}")
    if summary.get("accuracy_vs_truth") is not None:
        size = summary["scan_size"]
        print(f"demo: lattice accuracy against the simulator's truth {summary['accuracy_vs_truth']:.3f} "
              f"over {size['rows']}×{size['cols']} points")
    if summary.get("median_disorientation_deg") is not None:
        print(f"demo: orientations {summary['median_disorientation_deg']:.1f}° from the truth "
              "(median disorientation over the correctly classed points)")
    return 0


def _check_screenshot(args: argparse.Namespace) -> None:
    """Refuse a screenshot that cannot be written before the scan runs, not after it."""
    from diffstream.live.cli import UserError

    if args.headless:
        raise UserError("--screenshot needs the window; leave out --headless")
    if args.screenshot.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp"):
        raise UserError(f"--screenshot: {args.screenshot} must end in .png, .jpg or .bmp")
    if not args.screenshot.parent.is_dir():
        raise UserError(f"--screenshot: no folder {args.screenshot.parent}")


def die_with_parent() -> None:
    """Linux: the kernel sends the simulator SIGTERM if the demo dies before it can stop it."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass  # not Linux: the demo's own clean-up still stops the simulator


def _died(simulator: subprocess.Popen) -> str | None:
    code = simulator.poll()
    if code is None or code == 0:
        return None
    return f"the detector simulator exited with code {code} (its error is printed above)"


def _stop(simulator: subprocess.Popen) -> None:
    if simulator.poll() is None:
        simulator.terminate()
        try:
            simulator.wait(timeout=10)
        except subprocess.TimeoutExpired:
            simulator.kill()
            simulator.wait()
