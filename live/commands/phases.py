"""``diffstream phases``: the phase catalogue, as a table or as JSON for scripts."""
from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "phases",
        help="list the phase catalogue",
        description="List every phase diffstream can simulate and classify.",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON list of objects")
    parser.set_defaults(handler=run)


def hermann_mauguin(diffpy_symbol: str) -> str:
    """diffpy names rhombohedral groups on hexagonal axes 'H-3m'; crystallographers write 'R-3m'."""
    return "R" + diffpy_symbol[1:] if diffpy_symbol.startswith("H") else diffpy_symbol


def phase_records() -> list[dict]:
    """One plain dict per catalogue phase, the form ``--json`` prints."""
    from diffstream.trainer.physics.catalogue import catalogue

    records = []
    for entry in catalogue().values():
        phase = entry.phase()
        records.append(
            {
                "name": entry.name,
                "formula": entry.formula,
                "space_group": entry.space_group,
                "space_group_symbol": hermann_mauguin(phase.space_group.short_name),
                "point_group": phase.point_group.name,
                "bravais_lattice": entry.bravais_lattice,
                "lattice": list(entry.lattice),
                "aliases": list(entry.aliases),
                "source": entry.source,
                "notes": entry.notes,
            }
        )
    return records


def run(args: argparse.Namespace) -> int:
    records = phase_records()
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    header = (f"{'name':<12} {'formula':<14} {'space group':<16} {'point group':<11} {'lattice':<7} "
              "a, b, c (Å); α, β, γ (°)")
    print(header)
    print("-" * len(header))
    for r in records:
        a, b, c, al, be, ga = r["lattice"]
        sg = f"{r['space_group_symbol']} ({r['space_group']})"
        print(
            f"{r['name']:<12} {r['formula']:<14} {sg:<16} {r['point_group']:<11} {r['bravais_lattice']:<7} "
            f"{a:g}, {b:g}, {c:g}; {al:g}, {be:g}, {ga:g}"
        )
    print(f"\n{len(records)} phases")
    return 0
