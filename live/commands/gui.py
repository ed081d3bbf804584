"""``diffstream gui``: the live window on its own; the user connects, replays or changes model from it."""
from __future__ import annotations

import argparse
from pathlib import Path

from . import keys
from .live import add_model_arguments


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "gui",
        help="open the live map window",
        description=(
            "Open the live map window. With --connect it starts mapping that detector server at once; without, "
            "enter a URL or open a recording or pattern file to replay from the window's tool bar. The window "
            "maps scan after scan until it is closed (docs/gui.md)."
        ),
    )
    parser.add_argument("--connect", metavar="URL", help="detector server endpoint to map at once, e.g. tcp://host:5555")
    add_model_arguments(parser)
    parser.add_argument("--pull", action="store_true", help="PULL instead of SUB: lossless hand-off from a PUSH server")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="also write each scan's maps here when it ends (default: only when you press Save)")
    keys.add_client_arguments(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from diffstream.gui.session import Session, SessionSettings
    from diffstream.gui.window import GuiUnavailable, run_session
    from diffstream.live.cli import UserError

    settings = SessionSettings(url=args.connect or "", model=args.model, engine=args.engine, pull=args.pull,
                               security=keys.client_security(args))
    try:
        run_session(Session(out_dir=args.out), title="diffstream", settings=settings)
    except GuiUnavailable as error:
        raise UserError(str(error)) from None
    return 0
