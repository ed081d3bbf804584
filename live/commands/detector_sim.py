"""``diffstream detector-sim``: a detector server streaming a synthetic specimen, for demos
and end-to-end tests; also the socket options it shares with ``diffstream replay``."""
from __future__ import annotations

import argparse
import math
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from . import keys
from .simulate import parse_phase_fractions, parse_scan_shape

if TYPE_CHECKING:
    from diffstream.live.detector_sim import FrameSource

PATTERN_SIMULATIONS = ("kinematical", "dynamical")
"""``physics.master_pattern.SIMULATIONS``, spelt out so that ``--help`` does not import
kikuchipy (a test checks that the two agree)."""

MEASURED_RATE = "measured: 60,000 frames/s of 60×60 uint8 on 2 CPU cores"
"""What ``diffstream detector-sim --benchmark`` (``measure_stream_rate``) measured on the
project's 2-core machine: 100,000 frames sent at full speed over loopback TCP to a SUB
receiver on a thread of the same process, none lost. Five runs gave 48,000 to 70,000
frames/s (median 65,000) while other work kept the load near 3.7; quoted as a round figure
below the median. Rendering happens before streaming, so this is the simulator's ceiling."""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "detector-sim",
        help="stream a simulated scan over ZeroMQ, as a detector server does",
        description=(
            "Grow a synthetic specimen, render its frames (EBSD through kinematical or Bloch-wave master "
            "patterns and the 'fast' camera model, 60×60 uint8; 4D-STEM as SPED spot patterns, 128×128 uint16 counts) "
            "and publish them with wire protocol v1 in raster order at a set rate. Frames are rendered "
            f"before streaming, so the highest rate is the socket's; {MEASURED_RATE} "
            "(--benchmark measures this machine)."
        ),
    )
    parser.add_argument("--kind", choices=("ebsd", "4dstem"), default="ebsd", help="pattern kind (default ebsd)")
    parser.add_argument("--scan", default="100x100", help="scan grid ROWSxCOLS (default 100x100)")
    parser.add_argument("--phases", default="Ni:0.4,Fe:0.3,Ti:0.3",
                        help="NAME:FRACTION,... area fractions summing to 1 (default Ni:0.4,Fe:0.3,Ti:0.3)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the specimen and the noise (default 0)")
    parser.add_argument("--frame-size", type=int,
                        help="frame side in pixels (default 60 for EBSD, 128 for 4D-STEM)")
    parser.add_argument("--grain-size", type=float, default=10.0,
                        help="mean grain diameter in scan steps (default 10)")
    parser.add_argument("--empty-fraction", type=float, default=0.0,
                        help="share of scan points with no pattern, sent as background-only frames (default 0)")
    add_pattern_argument(parser)
    parser.add_argument("--truth", type=Path,
                        help="write the specimen (ground truth) as orix HDF5; empty points have phase id -1")
    add_server_arguments(parser)
    parser.add_argument("--benchmark", action="store_true",
                        help="measure the highest rate this machine sends to a local subscriber, print it, exit")
    parser.set_defaults(handler=run)


def add_pattern_argument(parser: argparse.ArgumentParser) -> None:
    """How EBSD frames are simulated: shared by ``detector-sim`` and ``demo``."""
    parser.add_argument("--patterns", choices=PATTERN_SIMULATIONS, default="kinematical",
                        help="EBSD master patterns: kinematical (default; what the shipped ebsd-lattice model is "
                             "trained on) or dynamical (many-beam Bloch waves: the sharp band edges and dark zone "
                             "axes a real camera records; about 30 s per phase on first use, then cached)")


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    """Where and how a server streams: shared by ``detector-sim`` and ``replay``."""
    parser.add_argument("--bind", default="tcp://127.0.0.1:5555",
                        help="ZeroMQ address to bind (default tcp://127.0.0.1:5555; tcp://127.0.0.1:* picks a port)")
    parser.add_argument("--rate", type=float, default=1000.0,
                        help="frames per second, 0 for as fast as possible (default 1000)")
    parser.add_argument("--loop", action="store_true", help="repeat until stopped, with a new scan_id each time")
    parser.add_argument("--push", action="store_true",
                        help="PUSH instead of XPUB/PUB: lossless, each frame goes to one puller")
    parser.add_argument("--wait-subscribers", type=int, default=1, metavar="N",
                        help="wait for N subscribers before the first scan (default 1; 0 starts at once; "
                             "PUSH always waits for a puller)")
    parser.add_argument("--wait-timeout", type=float, default=300.0, metavar="SECONDS",
                        help="give up waiting for subscribers after this long (default 300)")
    keys.add_server_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from diffstream.live.cli import UserError
    from diffstream.live.detector_sim import measure_stream_rate, stop_on_signals
    from diffstream.live.scan_render import SimulatedSource, make_renderer
    from diffstream.trainer.physics.specimen import SpecimenSpec, make_specimen

    if args.benchmark:
        result = measure_stream_rate()
        print(f"sent {result['frames']:,} frames of 60×60 uint8: {result['sent_per_s']:,.0f} frames/s sent, "
              f"{result['received_per_s']:,.0f} frames/s received, {result['lost']:,} lost")
        return 0
    check_server_arguments(args)
    if args.kind != "ebsd" and args.patterns != "kinematical":
        raise UserError(f"--patterns {args.patterns}: master patterns make EBSD frames; leave it out with --kind "
                        f"{args.kind}")
    spec = SpecimenSpec(
        scan_shape=parse_scan_shape(args.scan), phases=parse_phase_fractions(args.phases),
        grain_size=args.grain_size, empty_fraction=args.empty_fraction, seed=args.seed,
    )
    if args.frame_size is not None and args.frame_size < 1:
        raise UserError(f"frame-size: must be a positive number of pixels, got {args.frame_size}")
    with stop_on_signals() as stop:
        specimen = make_specimen(spec)
        if args.truth is not None:
            args.truth.parent.mkdir(parents=True, exist_ok=True)
            specimen.save(args.truth, overwrite=True)
            log(f"wrote the ground truth to {args.truth}")
        renderer = make_renderer(args.kind, spec.phase_names, frame_size=args.frame_size, seed=args.seed,
                                 simulation=args.patterns)
        source = SimulatedSource(specimen, renderer, stop)
        return run_server(source, args, stop, scan_prefix="sim")


def check_server_arguments(args: argparse.Namespace) -> None:
    """Refuse nonsense before any work is done."""
    from diffstream.live.cli import UserError

    if not (math.isfinite(args.rate) and args.rate >= 0):
        raise UserError(f"rate: must be a finite number ≥ 0 frames/s, got {args.rate:g}")
    if args.wait_subscribers < 0:
        raise UserError(f"wait-subscribers: must be ≥ 0, got {args.wait_subscribers}")
    if not args.wait_timeout > 0:
        raise UserError(f"wait-timeout: must be > 0 seconds, got {args.wait_timeout:g}")


def run_server(source: FrameSource, args: argparse.Namespace, stop: threading.Event, scan_prefix: str) -> int:
    """Bind, wait for subscribers, stream ``source`` and close: the body of every server command."""
    import zmq

    from diffstream.live.cli import UserError
    from diffstream.live.detector_sim import Publisher, serve

    if stop.is_set():
        return 0
    security = keys.server_security(args)
    try:
        publisher = Publisher(args.bind, push=args.push, security=security)
    except zmq.ZMQError as error:
        raise UserError(f"bind: cannot bind {args.bind}: {error}") from None
    with publisher:
        waits = not args.push and args.wait_subscribers > 0
        log(f"bound {publisher.endpoint} ({publisher.socket_type})"
            + (f", waiting for {args.wait_subscribers} subscriber(s)" if waits else ""))
        try:
            ends = serve(publisher, source, rate=args.rate, stop=stop, loop=args.loop,
                         wait_subscribers=args.wait_subscribers, wait_timeout=args.wait_timeout,
                         scan_prefix=scan_prefix, log=log)
        except TimeoutError as error:
            raise UserError(f"{error}; start the receiver first, or pass --wait-subscribers 0") from None
    frames = sum(end.frames_sent for end in ends)
    log(f"{'stopped' if stop.is_set() else 'done'}: {len(ends)} scan(s), {frames:,} frames sent")
    if security is not None and security.refused:
        log(f"refused {security.refused} CURVE handshake(s) from clients whose keys are not in {args.curve_clients}")
    return 0


def log(message: str) -> None:
    """Server progress goes to stderr, one line at a time, as it happens."""
    print(f"diffstream: {message}", file=sys.stderr, flush=True)
