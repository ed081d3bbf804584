"""``diffstream record`` and ``diffstream replay``: streams to HDF5 files and files back to streams."""
from __future__ import annotations

import argparse
from pathlib import Path

from . import keys
from .detector_sim import add_server_arguments, check_server_arguments, log, run_server


def register(subparsers: argparse._SubParsersAction) -> None:
    record = subparsers.add_parser(
        "record",
        help="record a detector stream to HDF5, lossless",
        description=(
            "Subscribe to a detector server (wire protocol v1) and store every scan's scan_start, frames, "
            "indices and timestamps in a chunked, compressed HDF5 file that `diffstream replay` serves "
            "again. Stops after --scans scans have ended, or at Ctrl-C (an unfinished scan is kept and "
            "marked incomplete). Messages that fail validation are skipped and counted."
        ),
    )
    record.add_argument("--connect", required=True, help="the server's ZeroMQ address, e.g. tcp://127.0.0.1:5555")
    record.add_argument("--out", type=Path, required=True, help="recording to write (.h5)")
    record.add_argument("--scans", type=int, default=1, help="stop after this many scans ended; 0 for Ctrl-C only "
                                                              "(default 1)")
    record.add_argument("--pull", action="store_true", help="PULL from a PUSH server instead of subscribing")
    record.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    keys.add_client_arguments(record)
    record.set_defaults(handler=run_record)

    replay = subparsers.add_parser(
        "replay",
        help="serve a recording or a pattern file as a live detector stream",
        description=(
            "Stream a file over ZeroMQ as a detector server does: a recording made by `diffstream record` "
            "(scan_start headers, frames and indices exactly as recorded; new scan_ids and send times), any "
            "EBSD pattern file kikuchipy reads (h5ebsd of kikuchipy, EDAX, Oxford or Bruker; Oxford .ebsp; "
            "NORDIF .dat) with the detector geometry it holds, or a 4D-STEM file rosettasciio reads (.hspy, "
            ".mib, .blo). Big files are read a few MiB at a time."
        ),
    )
    replay.add_argument("file", type=Path, help="recording or pattern file")
    add_server_arguments(replay)
    replay.set_defaults(handler=run_replay)


def run_record(args: argparse.Namespace) -> int:
    import zmq

    from diffstream.live.cli import UserError
    from diffstream.live.detector_sim import stop_on_signals
    from diffstream.live.recorder import Recorder, record

    if args.scans < 0:
        raise UserError(f"scans: must be ≥ 0, got {args.scans}")
    if args.out.exists() and not args.overwrite:
        raise UserError(f"out: {args.out} exists; pass --overwrite to replace it")
    security = keys.client_security(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with stop_on_signals() as stop, Recorder(args.out, overwrite=args.overwrite) as recorder:
            log(f"recording from {args.connect} to {args.out} ({'PULL' if args.pull else 'SUB'}; Ctrl-C stops)")
            faults = record(args.connect, recorder, scans=args.scans, pull=args.pull, stop=stop,
                            security=security)
    except zmq.ZMQError as error:
        args.out.unlink(missing_ok=True)  # nothing was recorded
        raise UserError(f"connect: cannot connect to {args.connect}: {error}") from None
    incomplete = f" ({recorder.incomplete} incomplete)" if recorder.incomplete else ""
    counts = ", ".join(f"{reason} {count}" for reason, count in faults.most_common())
    print(f"recorded {recorder.scans} scan(s){incomplete}, {recorder.frames:,} frames to {args.out}; "
          f"{sum(faults.values())} faults{f' ({counts})' if counts else ''}")
    return 0


def run_replay(args: argparse.Namespace) -> int:
    from diffstream.live.cli import UserError
    from diffstream.live.detector_sim import stop_on_signals
    from diffstream.live.replay import UnreadableFileError, open_source

    check_server_arguments(args)
    try:
        source = open_source(args.file)
    except UnreadableFileError as error:
        raise UserError(str(error)) from None
    with stop_on_signals() as stop:
        return run_server(source, args, stop, scan_prefix="replay")
