"""``diffstream dataset import``: a training set from the user's own indexed experiment.

The work is in ``diffstream.trainer.datasets.labelled`` (imported inside the handler: the
trainer must not load when the live commands start).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("dataset", help="make training sets from your own data",
                                   description="Make training sets from your own data.")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    imported = actions.add_parser(
        "import",
        help="label a pattern file with its orientation map and write train/val/test shards",
        description=(
            "Label the patterns of one scan (any file kikuchipy or rosettasciio reads, or a recording) with the "
            "orientations and phases of the same scan (.ang or orix HDF5), keep the indexed points that pass the "
            "thresholds, split them 60/20/20 at random into train, val and test, and write the shards the trainer "
            "reads: train on them with data.source = \"folder\" and data.folder = OUT in a config."
        ),
    )
    imported.add_argument("patterns", type=Path, help="pattern file (h5ebsd, .ebsp, NORDIF .dat, .hspy, .mib, ...)")
    imported.add_argument("orientations", type=Path, help="orientation map of the same scan (.ang, orix .h5)")
    imported.add_argument("--out", type=Path, required=True, help="folder to write (train/, val/, test/, import.json)")
    imported.add_argument("--min", action="append", default=[], metavar="PROP=VALUE",
                          help="keep points whose map property PROP is at least VALUE (e.g. ci=0.1, iq=2000); "
                               "repeatable")
    imported.add_argument("--max", action="append", default=[], metavar="PROP=VALUE",
                          help="keep points whose map property PROP is at most VALUE (e.g. MAD=0.8); repeatable")
    imported.add_argument("--phase", action="append", default=[], metavar="NAME=CLASS",
                          help="the Bravais lattice (aP ... cF) of a phase the catalogue does not know; repeatable")
    imported.add_argument("--seed", type=int, default=0, help="seed of the train/val/test split (default 0)")
    imported.set_defaults(handler=run_import)


def run_import(args: argparse.Namespace) -> int:
    from diffstream.live.cli import UserError
    from diffstream.live.replay import UnreadableFileError
    from diffstream.trainer.datasets.labelled import LabelledDataError, import_labelled, parse_assignments

    try:
        summary = import_labelled(
            args.patterns, args.orientations, args.out,
            minimum=parse_assignments(args.min, "--min", number=True),
            maximum=parse_assignments(args.max, "--max", number=True),
            phases=parse_assignments(args.phase, "--phase", number=False), seed=args.seed,
        )
    except (LabelledDataError, UnreadableFileError) as error:
        raise UserError(str(error)) from None
    print(json.dumps(summary, indent=1))
    return 0
