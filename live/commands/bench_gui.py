"""``diffstream bench gui``: the live window's event-loop delay while a fast stream fills a big map."""
from __future__ import annotations

import argparse
import json

from .bench import machine_record
from .simulate import parse_scan_shape


def register(what: argparse._SubParsersAction) -> None:
    gui = what.add_parser(
        "gui",
        help="event-loop delay of the live window under a fast stream",
        description=(
            "Publish random 60×60 frames from a child process at --rate frames/s into a --scan map behind the "
            "live window (offscreen unless QT_QPA_PLATFORM says otherwise), mapped by a stand-in engine that "
            "costs next to nothing, and print how late a 10 ms timer in the window's event loop fires "
            "(target: p99 ≤ 50 ms) and how long each paint takes."
        ),
    )
    gui.add_argument("--scan", default="2048x2048", metavar="ROWSxCOLS", help="scan size (default 2048x2048)")
    gui.add_argument("--rate", type=float, default=20000.0, metavar="FPS", help="frames/s sent (default 20000)")
    gui.add_argument("--seconds", type=float, default=20.0, help="how long to stream (default 20 s)")
    gui.add_argument("--json", action="store_true", help="print one JSON object instead of lines")
    gui.set_defaults(handler=_run_gui)


def _run_gui(args: argparse.Namespace) -> int:
    from diffstream.gui.loop_bench import run_gui_bench
    from diffstream.gui.window import GuiUnavailable, _import_qt
    from diffstream.live.cli import UserError

    if not (args.rate > 0 and args.seconds > 0):
        raise UserError("--rate and --seconds must be positive")
    try:
        _import_qt()
    except GuiUnavailable as error:
        raise UserError(str(error)) from None
    result = {"machine": machine_record(), **run_gui_bench(parse_scan_shape(args.scan), args.rate, args.seconds)}
    if args.json:
        print(json.dumps(result))
        return 0
    delay, paint = result["event_loop_delay_ms"], result["paint_ms"]
    print(f"{result['machine']['processor']} ({result['machine']['cpu_cores']} cores)")
    print(f"scan {args.scan}, {args.rate:,.0f} frames/s for {args.seconds:g} s: "
          f"{result['frames_received']:,} received, {result['frames_mapped']:,} mapped, "
          f"{result['dropped_backpressure']:,} dropped for back-pressure")
    print(f"event-loop delay p50 {delay['p50']} ms, p99 {delay['p99']} ms, max {delay['max']} ms (target p99 ≤ 50 ms)")
    print(f"paint p50 {paint['p50']} ms, p99 {paint['p99']} ms, max {paint['max']} ms over {result['paints']} paints")
    return 0
