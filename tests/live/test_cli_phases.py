"""``diffstream phases`` through the installed console script, as a user runs it."""
from __future__ import annotations

import json

from conftest import run_diffstream
from diffstream.trainer.physics.catalogue import BRAVAIS_LATTICES


def test_phases_json_covers_all_lattices() -> None:
    result = run_diffstream("phases", "--json")
    assert result.returncode == 0, result.stderr
    records = json.loads(result.stdout)
    assert len(records) >= 41
    for record in records:
        assert {"name", "space_group", "point_group", "bravais_lattice"} <= record.keys()
    counts = {lattice: 0 for lattice in BRAVAIS_LATTICES}
    for record in records:
        counts[record["bravais_lattice"]] += 1
    assert min(counts.values()) >= 2, counts


def test_phases_table_lists_nickel() -> None:
    result = run_diffstream("phases")
    assert result.returncode == 0, result.stderr
    ni = next(line for line in result.stdout.splitlines() if line.startswith("Ni "))
    assert "Fm-3m (225)" in ni and "cF" in ni
