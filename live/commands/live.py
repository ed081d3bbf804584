"""``diffstream live``: subscribe to a detector server and map every frame while the beam scans."""
from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from . import keys

DEFAULT_MODEL = "ebsd-lattice"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "live",
        help="map a live detector stream",
        description=(
            "Subscribe to a detector server (ZeroMQ, protocol v1: docs/protocol.md), run the model on "
            "every frame, and write the phase, orientation and confidence maps when the scan ends."
        ),
    )
    parser.add_argument("--connect", required=True, metavar="URL", help="detector server endpoint, e.g. tcp://host:5555")
    add_pipeline_arguments(parser)
    parser.add_argument("--follow", action="store_true",
                        help="keep mapping scan after scan (each into its own folder) until Ctrl-C")
    parser.add_argument("--truth", type=Path, metavar="FILE",
                        help="ground-truth map (HDF5 from detector-sim --truth) to score the map against")
    parser.add_argument("--pull", action="store_true", help="PULL instead of SUB: lossless hand-off from a PUSH server")
    keys.add_client_arguments(parser)
    parser.set_defaults(handler=run)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model`` and ``--engine``, as every command that maps a stream spells them."""
    from diffstream.engines import BACKENDS

    parser.add_argument("--model", default=DEFAULT_MODEL, metavar="NAME|PATH",
                        help=f"shipped model name or ONNX file (default {DEFAULT_MODEL}; see 'diffstream models')")
    parser.add_argument("--engine", default="auto", choices=("auto", *BACKENDS),
                        help="inference backend (default auto: the fastest one installed)")


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by ``live`` and ``demo``."""
    add_model_arguments(parser)
    parser.add_argument("--headless", action="store_true", help="no window: write the map files only")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="folder for map.h5, map.ang, PNGs and summary.json (default diffstream-maps/TIME)")
    parser.add_argument("--record", type=Path, metavar="FILE", help="also record the raw stream to this HDF5 file")
    parser.add_argument("--batch-size", type=int, default=256, metavar="N", help="largest batch (default 256)")
    parser.add_argument("--max-wait-ms", type=float, default=20.0, metavar="MS",
                        help="longest a partial batch waits before it is run (default 20 ms)")


def default_out_dir() -> Path:
    return Path("diffstream-maps") / datetime.now().strftime("%Y%m%d-%H%M%S")


def run(args: argparse.Namespace) -> int:
    if args.truth is not None and not args.truth.is_file():
        raise FileNotFoundError(f"no ground-truth file at {args.truth}")
    reports = run_pipeline(args, args.connect, truth=args.truth, follow=args.follow,
                           security=keys.client_security(args))
    return 0 if reports or args.follow else 1


def run_pipeline(args: argparse.Namespace, url: str, *, truth: Path | None, follow: bool,
                 watch: object | None = None, security: object | None = None) -> list:
    """Build receiver, engine and pipeline from the shared options, run them, and report each scan.

    ``watch`` is an optional callable polled by the progress thread; returning a message
    stops the pipeline (the demo uses it to notice a simulator that died). ``security`` is
    the CURVE client setting of ``live`` (the demo's own simulator is on loopback, unencrypted).
    """
    from diffstream.live.cli import UserError
    from diffstream.live.pipeline import LivePipeline
    from diffstream.live.progress import ProgressPrinter
    from diffstream.live.receiver import Receiver

    engine = _engine(args.model, args.engine)
    out_dir = args.out or default_out_dir()
    recorder = _recorder(args.record)
    try:
        receiver = Receiver(url, socket_type="pull" if args.pull else "sub", batch_size=args.batch_size,
                            max_wait_s=args.max_wait_ms / 1e3, tap=None if recorder is None else recorder.on_message,
                            security=security)
    except ValueError as error:
        raise UserError(str(error)) from None

    def on_report(report: object) -> None:
        _print_report(report)
        if report.summary.get("save_error"):
            _save_elsewhere(pipeline, report.scan_id)

    pipeline = LivePipeline(receiver, engine, model_name=str(args.model), out_dir=out_dir, truth_path=truth,
                            follow=follow, on_report=on_report)
    progress = ProgressPrinter(pipeline, watch=watch)
    print(f"diffstream: listening on {url} with {args.model} on {engine.name} ({engine.device}); "
          f"maps go to {out_dir}", file=sys.stderr)
    try:
        with _stop_on_sigterm(pipeline), progress:
            reports = _run(pipeline, progress, headless=args.headless, title=f"diffstream: {url} ({args.model})",
                           screenshot=getattr(args, "screenshot", None))
    finally:
        if recorder is not None:
            recorder.close()
    if progress.stop_reason:
        raise UserError(progress.stop_reason)
    return reports


def _run(pipeline: object, progress: object, *, headless: bool, title: str, screenshot: Path | None = None) -> list:
    """Behind the live window when there is a display and Qt, headless otherwise; the
    terminal progress bar is drawn only while no window is open."""
    from diffstream.gui.window import GuiUnavailable, run_window
    from diffstream.live.cli import UserError

    if headless:
        return pipeline.run()
    progress.drawing = False
    try:
        return run_window(pipeline, title=title, screenshot=screenshot)
    except GuiUnavailable as error:
        if screenshot is not None:
            raise UserError(f"no screenshot: {error}") from None
        progress.drawing = True
        print(f"diffstream: {error}; running headless", file=sys.stderr)
        return pipeline.run()


def _engine(model: str, backend: str) -> object:
    from diffstream.engines import EngineError, ModelCardError, create_engine
    from diffstream.live.cli import UserError

    try:
        return create_engine(model, backend)
    except (EngineError, ModelCardError) as error:
        raise UserError(str(error)) from None


def _recorder(path: Path | None) -> object | None:
    if path is None:
        return None
    from diffstream.live.recorder import Recorder

    return Recorder(path)


@contextmanager
def _stop_on_sigterm(pipeline: object) -> Iterator[None]:
    """SIGTERM ends the run like Ctrl-C does: the partial map is saved, nothing received is lost."""
    previous = signal.signal(signal.SIGTERM, lambda *_: pipeline.stop())
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _save_elsewhere(pipeline: object, scan_id: str) -> None:
    """A scan that could not be saved where asked (unwritable folder, full disk) goes to a fresh
    folder under the system's temporary directory, so an unattended run still leaves its map on disk."""
    import tempfile

    try:
        folder = Path(tempfile.mkdtemp(prefix="diffstream-unsaved-"))
        pipeline.save(folder)
    except OSError as error:
        print(f"diffstream: scan {scan_id} could not be saved in the temporary directory either ({error}); "
              "save it from the window if one is open; it is lost when this process ends", file=sys.stderr)
        return
    print(f"diffstream: scan {scan_id} saved instead to {folder}", file=sys.stderr)


def _print_report(report: object) -> None:
    s = report.summary
    rates = s["rates"]
    print(f"scan {report.scan_id}: {s['frames_received']}/{s['frames_expected']} frames mapped, "
          f"{s['frames_rejected']} rejected, {s['frames_dropped']} dropped ({s['ended_by']})", file=sys.stderr)
    print(f"  end to end {rates['end_to_end_fps']:,.0f} frames/s, engine {rates['engine_fps']:,.0f} frames/s, "
          f"latency p50 {s['latency_ms']['p50']} ms, p99 {s['latency_ms']['p99']} ms", file=sys.stderr)
    if s.get("accuracy_vs_truth") is not None:
        print(f"  accuracy against the truth: {s['accuracy_vs_truth']:.3f}", file=sys.stderr)
    if s.get("save_error"):
        print(f"  NOT SAVED: {s['save_error']}", file=sys.stderr)
    if report.files:
        folder = Path(next(iter(report.files.values()))).parent
        print(f"  maps written to {folder}: {', '.join(sorted(Path(p).name for p in report.files.values()))}",
              file=sys.stderr)
