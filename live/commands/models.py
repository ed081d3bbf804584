"""``diffstream models``: the models that ship with diffstream, with what they were measured to do."""
from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list the shipped models and their measured metrics",
        description="List the models inside the package (loadable by name with --model) and their cards' metrics.",
    )
    parser.add_argument("--json", action="store_true", help="print the full model cards as a JSON list")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from diffstream.engines import read_card, shipped_models

    cards = [(name, path, read_card(path)) for name, path in sorted(shipped_models().items())]
    if args.json:
        records = [{"name": name, "path": str(path), "card": json.loads(card.to_json())} for name, path, card in cards]
        print(json.dumps(records, indent=2))
        return 0
    if not cards:
        print("no models are installed with this copy of diffstream")
        return 0
    for name, path, card in cards:
        h, w = card.input_shape
        print(f"{name}  ({card.kind}, {h}×{w} {card.input_dtype}, {len(card.classes)} classes: "
              f"{' '.join(card.class_names)})")
        print(f"  task: {', '.join(card.task)}")
        for key, value in sorted(card.metrics.items()):
            print(f"  {key}: {_headline(value)}")
        print(f"  file: {path}")
    return 0


def _headline(value: object) -> str:
    """The scalar figures of a metrics group on one line; tables (confusion, per material) are in --json."""
    if not isinstance(value, dict):
        return str(value)
    parts = []
    for key, item in value.items():
        if isinstance(item, (int, float, str)):
            parts.append(f"{key} {item}")
        elif isinstance(item, dict) and 0 < len(item) <= 4 and all(isinstance(v, (int, float)) for v in item.values()):
            parts.append(f"{key} " + ", ".join(f"{k} {v}" for k, v in item.items()))
    return "; ".join(parts)
