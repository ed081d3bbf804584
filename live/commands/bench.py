"""``diffstream bench``: measured rates, printed. Speed is measured here, never in tests.

Each benchmark is its own module with a ``register(what)`` that adds its sub-command; this
one holds the group and the machine description every record starts with.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform

from diffstream.engines.availability import cpu_model


def register(subparsers: argparse._SubParsersAction) -> None:
    from . import bench_engine, bench_gui, bench_live, bench_simulate, bench_soak

    parser = subparsers.add_parser("bench", help="measure rates on this machine",
                                   description="Measure and print rates on this machine.")
    what = parser.add_subparsers(dest="what", required=True, metavar="WHAT")
    for module in (bench_simulate, bench_live, bench_engine, bench_gui, bench_soak):
        module.register(what)


def machine_record() -> dict:
    return {
        "cpu_cores": os.cpu_count(),
        "processor": cpu_model(),
        "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
    }
