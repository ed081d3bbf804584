"""The ``diffstream`` command line: one top-level parser, one module per command group.

Command modules import their heavy dependencies inside their handlers, so ``diffstream
--help`` stays fast and the live commands never pull in torch.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .commands import (
    bench,
    dataset,
    demo,
    detector_sim,
    engines,
    evaluate,
    gui,
    keys,
    live,
    models,
    phases,
    recording,
    refine,
    simulate,
    train,
)

COMMAND_GROUPS = (demo, live, gui, detector_sim, recording, refine, keys, models, engines, train, evaluate, dataset,
                  phases, simulate, bench)


class UserError(Exception):
    """A problem with what the user asked for; reported as one line with exit code 2."""


EXTRAS = {"torch": "trainer", "torchvision": "trainer", "timm": "trainer", "PySide6": "gui", "pyqtgraph": "gui"}
"""Packages of an optional extra (pyproject.toml): a command that needs one that is not
installed says which extra brings it, instead of ending in a traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffstream",
        description="Live phase and orientation maps from streamed electron diffraction patterns.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in COMMAND_GROUPS:
        group.register(subparsers)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    from diffstream.trainer.physics.errors import PhysicsInputError

    return (UserError, PhysicsInputError, FileNotFoundError, PermissionError, IsADirectoryError)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except _user_errors() as error:
        print(f"diffstream: error: {error}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as error:
        extra = EXTRAS.get((error.name or "").split(".")[0])
        if extra is None:
            raise
        print(f"diffstream: error: {args.command} needs {error.name}, which the '{extra}' extra installs: "
              f"pip install -c .ci/constraints.txt -e '.[{extra}]'", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("diffstream: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
