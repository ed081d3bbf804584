"""The phase catalogue checked against crystallography rather than against itself: spglib must
find the claimed space group in every expanded cell, the Bravais lattice must follow from that
group, and each cell must hold whole formula units with no atom counted twice."""
from __future__ import annotations

import itertools
import re
from collections import Counter

import numpy as np
import pytest
import spglib
from diffpy.structure.spacegroups import GetSpaceGroup
from diffsims.crystallography import ReciprocalLatticeVector
from diffsims.structure_factor import get_element_id_from_string

from diffstream.trainer.physics.catalogue import (
    BRAVAIS_LATTICES,
    PhaseEntry,
    catalogue,
    get_phase_entry,
)
from diffstream.trainer.physics.errors import PhysicsInputError

# spglib 2.5+ warns about its own legacy error handling on every call; nothing to act on here
pytestmark = pytest.mark.filterwarnings("ignore:Set OLD_ERROR_HANDLING:DeprecationWarning")

SYMPREC_ANGSTROM = 1e-3

PAPER_1_MATERIALS = (
    "Cr3Si", "Mo3Si", "V8C7", "Si", "Ni", "Al", "NbC", "TaC", "W", "Ta", "beta-Ti", "Fe",
    "WC", "Ti", "Al2O3", "Sn", "Mo5Si3", "Mo2C", "TiSi2", "Al3Zr2", "Ni2V", "MoPt2", "AuSn4",
    "ZrSi2", "Nb2O5", "Fe4Al13", "FeNi3", "TiC", "NiAl", "Ni3Al", "quartz", "ilmenite",
    "rutile", "anatase", "forsterite", "enstatite", "malachite", "jadeite", "diopside",
    "anorthite",
)
OTHER_PAPER_MATERIALS = ("FeAl", "LiNiO2")

FORMULA_TOKEN = r"\(([^)]*)\)(\d*)|([A-Z][a-z]?)(\d*)"

FAMILY_ENDS = (("a", 2), ("m", 15), ("o", 74), ("t", 142), ("h", 194), ("c", 230))
"""Crystal family letter and the last space-group number of that family."""

ENTRIES = list(catalogue().values())


def _by_name(entries: list[PhaseEntry]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("entry", entries, ids=[e.name for e in entries])


def _spglib_cell(entry: PhaseEntry) -> tuple[np.ndarray, np.ndarray, list[int]]:
    structure = entry.full_structure()
    numbers = [get_element_id_from_string(atom.element) for atom in structure]
    return structure.lattice.base, structure.xyz % 1.0, numbers


def _bravais_lattice(space_group: int) -> str:
    """Crystal family from the number, centring from the first letter of diffpy's symbol
    ('H' is diffpy's name for rhombohedral groups on hexagonal axes)."""
    family = next(f for f, last in FAMILY_ENDS if space_group <= last)
    letter = GetSpaceGroup(space_group).short_name[0]
    if family == "h":
        return "hR" if letter in "HR" else "hP"
    if family in "mo" and letter in "ABC":
        return family + "C"
    if family == "m" and letter == "I":
        return "mC"
    return family + letter


def _formula_counts(formula: str) -> Counter:
    """Element counts of one formula unit; one level of brackets, as in Cu2CO3(OH)2."""
    counts: Counter = Counter()
    for group, group_count, element, count in re.findall(FORMULA_TOKEN, formula):
        if group:
            for inner, n in _formula_counts(group).items():
                counts[inner] += n * int(group_count or 1)
        else:
            counts[element] += int(count or 1)
    return counts


def _shortest_distance(entry: PhaseEntry) -> float:
    """Shortest distance between two atoms of the cell or its neighbours (Å)."""
    base, fractional, _ = _spglib_cell(entry)
    shifts = np.array(list(itertools.product((-1, 0, 1), repeat=3)))
    difference = fractional[None, :, None, :] - fractional[:, None, None, :] + shifts[None, None]
    distances = np.linalg.norm(difference @ base, axis=-1)
    distances[np.arange(len(fractional)), np.arange(len(fractional)), 13] = np.inf
    return float(distances.min())


def test_catalogue_has_two_materials_for_every_bravais_lattice() -> None:
    counts = Counter(entry.bravais_lattice for entry in ENTRIES)
    assert len(ENTRIES) >= 42
    assert set(counts) == set(BRAVAIS_LATTICES), counts
    assert min(counts.values()) >= 2, counts


@pytest.mark.parametrize("name", PAPER_1_MATERIALS + OTHER_PAPER_MATERIALS)
def test_every_paper_material_is_in_the_catalogue(name: str) -> None:
    assert get_phase_entry(name).name == name


def test_names_and_aliases_are_unique_ignoring_case() -> None:
    keys = [key.lower() for entry in ENTRIES for key in (entry.name, *entry.aliases)]
    assert [key for key, n in Counter(keys).items() if n > 1] == []


def test_lookup_by_alias_ignores_case() -> None:
    assert get_phase_entry("CORUNDUM").name == "Al2O3"


def test_unknown_phase_is_a_physics_input_error_naming_it() -> None:
    with pytest.raises(PhysicsInputError, match="unobtainium"):
        get_phase_entry("unobtainium")


@_by_name(ENTRIES)
def test_spglib_finds_the_catalogued_space_group(entry: PhaseEntry) -> None:
    dataset = spglib.get_symmetry_dataset(_spglib_cell(entry), symprec=SYMPREC_ANGSTROM)
    assert dataset.number == entry.space_group, dataset.international


@_by_name(ENTRIES)
def test_bravais_lattice_follows_from_the_space_group(entry: PhaseEntry) -> None:
    assert entry.bravais_lattice == _bravais_lattice(entry.space_group)


@_by_name(ENTRIES)
def test_cell_holds_whole_formula_units(entry: PhaseEntry) -> None:
    in_cell = Counter(atom.element for atom in entry.full_structure())
    per_unit = _formula_counts(entry.formula)
    assert set(in_cell) == set(per_unit)
    units = {in_cell[element] / n for element, n in per_unit.items()}
    assert len(units) == 1, (in_cell, per_unit)
    z = units.pop()
    assert z >= 1 and z == int(z)


@_by_name(ENTRIES)
def test_no_atom_is_expanded_twice(entry: PhaseEntry) -> None:
    # the shortest real bond here is O-H in malachite, 0.98 Å
    assert _shortest_distance(entry) > 0.9


@_by_name(ENTRIES)
def test_full_phase_keeps_the_fractional_coordinates(entry: PhaseEntry) -> None:
    """orix re-bases the lattice of a Phase; the atoms must stay where the cell puts them."""
    assert np.allclose(entry.full_phase().structure.xyz, entry.full_structure().xyz)


@_by_name(ENTRIES)
def test_diffsims_sanitising_leaves_the_full_cell_alone(entry: PhaseEntry) -> None:
    """kikuchipy's simulator re-expands whatever phase it gets; a full cell must survive that."""
    in_cell = len(entry.full_structure())
    vectors = ReciprocalLatticeVector(entry.full_phase(), hkl=[[1, 0, 0]])
    vectors.sanitise_phase()
    assert len(vectors.phase.structure) == in_cell


def test_hcp_ti_cell_has_its_two_atoms() -> None:
    xyz = sorted(map(tuple, np.round(get_phase_entry("Ti").full_structure().xyz, 6)))
    assert np.allclose(xyz, [(1 / 3, 2 / 3, 1 / 4), (2 / 3, 1 / 3, 3 / 4)], atol=1e-6)


def test_hcp_ti_001_is_forbidden_and_002_is_not() -> None:
    ti = get_phase_entry("Ti").full_phase()
    vectors = ReciprocalLatticeVector(ti, hkl=[[0, 0, 1], [0, 0, 2]])
    vectors.calculate_structure_factor()
    f001, f002 = np.abs(vectors.structure_factor)
    assert f001 < 1e-6 * f002
    assert f002 > 1.0
