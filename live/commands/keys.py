"""``diffstream keys generate``, and the CURVE options every server and client command shares.

Servers (detector-sim, replay) take ``--curve-secret FILE --curve-clients DIR``; clients
(live, gui, record) take ``--curve-server-key FILE --curve-secret FILE``. Without them a
stream is plain TCP, which is right on one machine or a private detector network and wrong
anywhere else (docs/operations.md walks through the setup).
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from diffstream.live.curve import CurveClient, CurveServer

T = TypeVar("T")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "keys",
        help="make CURVE key pairs for encrypted, authenticated streams",
        description="Key pairs for ZeroMQ CURVE, in ZeroMQ's certificate format.",
    )
    what = parser.add_subparsers(dest="what", required=True, metavar="WHAT")
    generate = what.add_parser(
        "generate",
        help="write a new key pair NAME.key (public) and NAME.key_secret (secret) into DIR",
        description=(
            "Write a new CURVE key pair: DIR/NAME.key, the public key, to give to the other side, and "
            "DIR/NAME.key_secret, which never leaves this machine. Make one pair for the server and one per "
            "client; the server's clients folder holds the clients' .key files, each client holds the "
            "server's .key file. Existing files are never overwritten."
        ),
    )
    generate.add_argument("dir", type=Path, help="folder for the key files (created if missing)")
    generate.add_argument("--name", default="diffstream", help="file name stem (default diffstream)")
    generate.set_defaults(handler=run_generate)


def run_generate(args: argparse.Namespace) -> int:
    from diffstream.live.cli import UserError
    from diffstream.live.curve import generate

    if not args.name or "/" in args.name or args.name.startswith("."):
        raise UserError(f"name: a plain file name stem, got {args.name!r}")
    try:
        public, secret = generate(args.dir, args.name)
    except FileExistsError as error:
        raise UserError(str(error)) from None
    print(f"public key {public} (give to the other side); secret key {secret} (keep here)")
    return 0


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--curve-secret", type=Path, metavar="FILE",
                        help="encrypt with CURVE: this server's secret key file (from 'diffstream keys generate'); "
                             "needs --curve-clients")
    parser.add_argument("--curve-clients", type=Path, metavar="DIR",
                        help="with --curve-secret: folder of the public key files (*.key) of the clients let in")


def add_client_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--curve-server-key", type=Path, metavar="FILE",
                        help="connect with CURVE: the server's public key file; needs --curve-secret")
    parser.add_argument("--curve-secret", type=Path, metavar="FILE",
                        help="with --curve-server-key: this client's secret key file")


def server_security(args: argparse.Namespace) -> CurveServer | None:
    """The server's CURVE settings from its options; None when CURVE is not asked for."""
    from diffstream.live.curve import CurveServer

    if _pair(args, "curve_secret", "curve_clients") is None:
        return None
    return _loaded(lambda: CurveServer.load(args.curve_secret, args.curve_clients))


def client_security(args: argparse.Namespace) -> CurveClient | None:
    """A client's CURVE settings from its options; None when CURVE is not asked for."""
    from diffstream.live.curve import CurveClient

    if _pair(args, "curve_server_key", "curve_secret") is None:
        return None
    return _loaded(lambda: CurveClient.load(args.curve_server_key, args.curve_secret))


def _pair(args: argparse.Namespace, first: str, second: str) -> tuple[Path, Path] | None:
    """Both options, or neither; one alone is a mistake that would silently leave the stream plain."""
    from diffstream.live.cli import UserError

    a, b = getattr(args, first), getattr(args, second)
    if (a is None) != (b is None):
        given, missing = (first, second) if a is not None else (second, first)
        raise UserError(f"{_option(given)} needs {_option(missing)} too")
    return None if a is None else (a, b)


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _loaded(load: Callable[[], T]) -> T:
    from diffstream.live.cli import UserError

    try:
        return load()
    except ValueError as error:
        raise UserError(str(error)) from None
