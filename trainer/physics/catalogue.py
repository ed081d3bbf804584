"""The phase catalogue: crystal structures of every material the papers use.

The structures live as data in ``data/phases.toml`` (asymmetric units in the setting diffpy
uses for each space-group number) so that a researcher adds a phase by adding a table, not code.
"""
from __future__ import annotations

import difflib
import functools
import tomllib
from dataclasses import dataclass
from fractions import Fraction
from importlib import resources

from diffpy.structure import Atom, Lattice, Structure
from orix.crystal_map import Phase

from .errors import PhysicsInputError
from .structure_factors import full_cell_phase

BRAVAIS_LATTICES = ("aP", "mP", "mC", "oP", "oC", "oI", "oF", "tP", "tI", "hP", "hR", "cP", "cI", "cF")

DEFAULT_B_ISO = 0.5
"""Isotropic Debye-Waller factor (Å²) for sites whose source gives none."""

@dataclass(frozen=True)
class AtomSite:
    element: str
    xyz: tuple[float, float, float]
    occupancy: float = 1.0
    b_iso: float = DEFAULT_B_ISO

    def atom(self) -> Atom:
        """A fresh diffpy ``Atom`` for this site."""
        atom = Atom(self.element, list(self.xyz), occupancy=self.occupancy)
        atom.Bisoequiv = self.b_iso
        return atom


@dataclass(frozen=True)
class PhaseEntry:
    """One catalogue material; the structure and phase methods build fresh objects each call
    because diffpy and orix objects are mutable."""

    name: str
    formula: str
    space_group: int
    lattice: tuple[float, float, float, float, float, float]
    atoms: tuple[AtomSite, ...]
    bravais_lattice: str
    source: str
    notes: str = ""
    aliases: tuple[str, ...] = ()

    def structure(self) -> Structure:
        """The asymmetric unit as a diffpy ``Structure``."""
        return Structure(atoms=[site.atom() for site in self.atoms], lattice=Lattice(*self.lattice), title=self.name)

    def full_structure(self) -> Structure:
        """Every atom of the conventional cell as a diffpy ``Structure`` (see ``full_phase``)."""
        return self.full_phase().structure

    def phase(self) -> Phase:
        """An orix ``Phase`` holding the asymmetric unit, for symmetry and orientation work;
        use ``full_phase()`` where the atoms of the whole cell matter."""
        return self._phase(self.structure())

    def full_phase(self) -> Phase:
        """An orix ``Phase`` holding the whole cell, ready for structure factors (diffsims,
        kikuchipy) without any further expansion.

        Use this, never orix's ``Phase.expand_asymmetric_unit()``: orix maps positions back
        through the lattice it had before re-basing, which scrambles non-orthogonal cells
        (12 sites instead of 2 for hcp Ti). The expansion is the one the structure factors
        use, in fractional coordinates."""
        return self._full_phase.deepcopy()

    @functools.cached_property
    def _full_phase(self) -> Phase:
        return full_cell_phase(self.phase())

    @property
    def point_group(self) -> str:
        return self.phase().point_group.name

    def _phase(self, structure: Structure) -> Phase:
        """orix re-bases the lattice to its own Cartesian frame (x ∥ a, z ∥ c*) and diffpy keeps
        Cartesian positions fixed when the base changes, which moves the *fractional*
        coordinates of non-orthogonal cells. The fractional coordinates are the physics, so
        they are put back after the re-basing."""
        fractional = [list(atom.xyz) for atom in structure]
        phase = Phase(name=self.name, space_group=self.space_group, structure=structure)
        for atom, xyz in zip(phase.structure, fractional):
            atom.xyz = xyz
        return phase


def _coordinate(value: float | int | str) -> float:
    """Coordinates may be written as exact fractions ("1/3") so that sites on threefold axes
    land exactly on their special positions."""
    return float(Fraction(value)) if isinstance(value, str) else float(value)


def _site_from_row(row: list) -> AtomSite:
    return AtomSite(
        element=row[0],
        xyz=(_coordinate(row[1]), _coordinate(row[2]), _coordinate(row[3])),
        occupancy=float(row[4]) if len(row) > 4 else 1.0,
        b_iso=float(row[5]) if len(row) > 5 else DEFAULT_B_ISO,
    )


def _entry_from_table(table: dict) -> PhaseEntry:
    return PhaseEntry(
        name=table["name"],
        formula=table.get("formula", table["name"]),
        space_group=int(table["space_group"]),
        lattice=tuple(float(v) for v in table["lattice"]),
        atoms=tuple(_site_from_row(row) for row in table["atoms"]),
        bravais_lattice=table["bravais_lattice"],
        source=table["source"],
        notes=table.get("notes", ""),
        aliases=tuple(table.get("aliases", ())),
    )


@functools.lru_cache(maxsize=1)
def catalogue() -> dict[str, PhaseEntry]:
    """All phases by name, in file order."""
    text = resources.files(__package__).joinpath("data/phases.toml").read_text(encoding="utf-8")
    entries = [_entry_from_table(t) for t in tomllib.loads(text)["phase"]]
    return {e.name: e for e in entries}


def get_phase_entry(name: str) -> PhaseEntry:
    """Look a phase up by name or alias, ignoring case; unknown names suggest close ones.
    ``random-<lattice>-<k>`` names a random structure of that lattice (:mod:`.random_structures`)."""
    from .random_structures import is_random_name, random_entry  # it builds on this module's classes

    if is_random_name(name):
        return random_entry(name)
    by_key: dict[str, PhaseEntry] = {}
    for entry in catalogue().values():
        for key in (entry.name, *entry.aliases):
            by_key[key.lower()] = entry
    try:
        return by_key[name.lower()]
    except KeyError:
        close = difflib.get_close_matches(name.lower(), by_key, n=3)
        hint = f"; did you mean {', '.join(by_key[c].name for c in close)}?" if close else ""
        raise PhysicsInputError(
            f"phase: unknown phase {name!r}{hint} (`diffstream phases` lists the catalogue)"
        ) from None
