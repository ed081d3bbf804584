"""Random structures of each Bravais lattice: the lattice they claim is the lattice their
expanded cell has, they rebuild the same from their name, and bad names say so."""
from __future__ import annotations

import numpy as np
import pytest

from diffstream.trainer.config import ConfigError, DataConfig, parse_config
from diffstream.trainer.datasets import class_counts, load_split
from diffstream.trainer.datasets.store import resolve_materials
from diffstream.trainer.physics.catalogue import BRAVAIS_LATTICES, get_phase_entry
from diffstream.trainer.physics.errors import PhysicsInputError
from diffstream.trainer.physics.random_structures import SPECIAL_RATIOS, random_entry, random_names

CENTRINGS = {
    "P": [],
    "C": [(0.5, 0.5, 0.0)],
    "I": [(0.5, 0.5, 0.5)],
    "F": [(0.0, 0.5, 0.5), (0.5, 0.0, 0.5), (0.5, 0.5, 0.0)],
    "R": [(2 / 3, 1 / 3, 1 / 3), (1 / 3, 2 / 3, 2 / 3)],  # hexagonal axes, obverse
}
NAMES = random_names(4)


def centring(lattice: str) -> str:
    return "R" if lattice == "hR" else lattice[1]


def has_translation(xyz: np.ndarray, elements: list[str], shift: tuple[float, float, float]) -> bool:
    """Whether moving every atom by ``shift`` lands each on an atom of the same element."""
    moved = (xyz + shift) % 1.0
    for position, element in zip(moved, elements):
        gaps = np.abs((xyz - position + 0.5) % 1.0 - 0.5).max(axis=1)
        if not any(gap < 1e-6 and other == element for gap, other in zip(gaps, elements)):
            return False
    return True


@pytest.mark.parametrize("name", NAMES)
def test_the_expanded_cell_has_exactly_its_lattice_centring(name: str) -> None:
    entry = get_phase_entry(name)
    lattice = name.split("-")[1]
    assert entry.bravais_lattice == lattice
    structure = entry.full_structure()
    xyz = np.array([atom.xyz for atom in structure]) % 1.0
    elements = [atom.element for atom in structure]
    for shift in CENTRINGS[centring(lattice)]:
        assert has_translation(xyz, elements, shift), (name, shift)
    for letter, shifts in CENTRINGS.items():  # and no centring of another lattice
        extra = [s for s in shifts if s not in CENTRINGS[centring(lattice)]]
        assert not any(has_translation(xyz, elements, s) for s in extra), (name, letter)


@pytest.mark.parametrize("name", NAMES)
def test_the_cell_obeys_its_metric_and_no_more(name: str) -> None:
    a, b, c, alpha, beta, gamma = get_phase_entry(name).lattice
    system = name.split("-")[1][0]
    right = {"c": (90, 90, 90), "t": (90, 90, 90), "o": (90, 90, 90), "h": (90, 90, 120)}
    if system in right:
        assert (alpha, beta, gamma) == right[system]
    if system == "m":
        assert alpha == gamma == 90 and 95 <= beta <= 120
    if system == "c":
        assert a == b == c
    elif system in "th":
        assert a == b and all(abs(c / a / r - 1) > 0.05 for r in SPECIAL_RATIOS)
    else:
        edges = (a, b, c)
        ratios = [x / y for x in edges for y in edges if x is not y]
        assert all(abs(q / r - 1) > 0.05 for q in ratios for r in SPECIAL_RATIOS)
    if system == "a":
        assert all(75 <= angle <= 105 and angle != 90 for angle in (alpha, beta, gamma))


def test_a_name_always_builds_the_same_structure_and_names_differ() -> None:
    assert random_entry("random-cF-3") == get_phase_entry("Random-cf-3")
    entries = [get_phase_entry(name) for name in NAMES]
    assert len({(e.lattice, e.atoms) for e in entries}) == len(entries)
    assert {e.bravais_lattice for e in entries} == set(BRAVAIS_LATTICES)


@pytest.mark.parametrize("name", ["random-xY-1", "random-cF", "random-cF--1"])
def test_a_malformed_random_name_is_one_clear_error(name: str) -> None:
    with pytest.raises(PhysicsInputError, match="phase"):
        get_phase_entry(name)


def test_a_config_widens_lattice_training_with_random_structures_that_render() -> None:
    data = DataConfig(materials=("Ni",), blind=("Al",), random_structures_per_lattice=1, patterns_per_lattice=12,
                      val_patterns_per_lattice=4, test_patterns_per_phase=4, master_half_size=24, shard_size=256,
                      seed=5)
    assert resolve_materials(data) == (("Ni", *random_names(1)), ("Al",))
    shard = load_split(data, "train", progress=False)
    counts = class_counts(shard)
    assert (counts == data.patterns_per_lattice).all()  # every lattice, from its random structure (and Ni)
    for name in random_names(1):
        rows = shard.phase == name
        assert rows.any() and (shard.lattice[rows] == BRAVAIS_LATTICES.index(name.split("-")[1])).all()


@pytest.mark.parametrize("changes", [{"random_structures_per_lattice": -1},
                                     {"random_structures_per_lattice": 1, "kind": "4dstem", "patterns": 10},
                                     {"random_structures_per_lattice": 1, "labels": "ordering"}])
def test_random_structures_outside_lattice_training_are_refused(changes: dict) -> None:
    with pytest.raises(ConfigError, match="random_structures_per_lattice"):
        parse_config({"name": "x", "data": changes})
