"""The phase catalogue: crystal structures of every material the papers use.

The structures live as data in ``data/phases.toml`` (asymmetric units in the standard
setting of each space group) so that a researcher adds a phase by adding a table, not code.
"""
from __future__ import annotations

import difflib
import functools
import tomllib
from dataclasses import dataclass
from importlib import resources

from diffpy.structure import Atom, Lattice, Structure
from orix.crystal_map import Phase

from .errors import PhysicsInputError

BRAVAIS_LATTICES = ("aP", "mP", "mC", "oP", "oC", "oI", "oF", "tP", "tI", "hP", "hR", "cP", "cI", "cF")

DEFAULT_B_ISO = 0.5
"""Isotropic Debye-Waller factor (Å²) for sites whose source gives none."""


@dataclass(frozen=True)
class AtomSite:
    element: str
    xyz: tuple[float, float, float]
    occupancy: float = 1.0
    b_iso: float = DEFAULT_B_ISO


@dataclass(frozen=True)
class PhaseEntry:
    """One catalogue material; ``structure()`` and ``phase()`` build fresh objects each call
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
        atoms = []
        for site in self.atoms:
            atom = Atom(site.element, list(site.xyz), occupancy=site.occupancy)
            atom.Bisoequiv = site.b_iso
            atoms.append(atom)
        return Structure(atoms=atoms, lattice=Lattice(*self.lattice), title=self.name)

    def phase(self) -> Phase:
        """An orix ``Phase`` holding the asymmetric unit; call ``expand_asymmetric_unit()``
        on it where the full cell is needed (structure factors, spglib).

        orix re-bases the lattice to its own Cartesian frame (x ∥ a, z ∥ c*) and diffpy keeps
        Cartesian positions fixed when the base changes, which moves the *fractional*
        coordinates of non-orthogonal cells. The fractional coordinates are the physics, so
        they are put back after the re-basing.
        """
        phase = Phase(name=self.name, space_group=self.space_group, structure=self.structure())
        for atom, site in zip(phase.structure, self.atoms):
            atom.xyz = list(site.xyz)
        return phase

    @property
    def point_group(self) -> str:
        return self.phase().point_group.name


def _entry_from_table(table: dict) -> PhaseEntry:
    atoms = tuple(
        AtomSite(
            element=row[0],
            xyz=(float(row[1]), float(row[2]), float(row[3])),
            occupancy=float(row[4]) if len(row) > 4 else 1.0,
            b_iso=float(row[5]) if len(row) > 5 else DEFAULT_B_ISO,
        )
        for row in table["atoms"]
    )
    return PhaseEntry(
        name=table["name"],
        formula=table.get("formula", table["name"]),
        space_group=int(table["space_group"]),
        lattice=tuple(float(v) for v in table["lattice"]),
        atoms=atoms,
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
    """Look a phase up by name or alias, ignoring case; unknown names suggest close ones."""
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
