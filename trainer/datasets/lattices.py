"""The 14 Bravais lattices as classes, and which catalogue materials train and which test.

Paper 1 (Kaufmann et al.) trains on two materials per lattice (nickel and aluminium for
face-centred cubic) and tests blind on materials never seen. Its table of which material
is which (Extended Data Fig. 5) is lost in the text copy, so the split below is ours,
guided by what the text does say; every deviation has a reason:

- cF Ni + Al: named by paper 1. cI Fe + Ta: Ta is paper 1's BCC training material in its
  point-group study; Fe is a demo phase. hP Ti + WC: Ti is a demo phase.
- mC jadeite + Fe4Al13: paper 1 reports jadeite among the *training* materials' test
  patterns, and base-centred monoclinic among the blind misclassifications, so its other
  C2/c mineral, diopside, is blind.
- cP Cr3Si + Mo3Si (both A15), not an ordered superstructure: the kinematical patterns of
  L1₂ FeNi3 and Ni3Al correlate at 0.998 and 0.98 with fcc Ni, those of B2 NiAl and FeAl at
  0.97 with bcc Fe (mean Pearson r over 200 random orientations at the demo geometry), and
  V8C7's at 0.88 with Ni (rock salt NbC: 0.86). Labelling such patterns cP in training
  would teach the network that Ni and Fe patterns are half cP, which breaks the demo. Paper
  1 itself separates ordered from disordered lattices in its own binary point-group study.
  These five stay in the blind set and are reported apart.
- tP rutile + σ-FeCr: γ-TiAl (L1₀), the catalogue's other tP material, is an fcc
  superstructure (its primitive cell's c/a is 1.6 % from √2). Trained as tP it taught the
  network that fcc-like patterns of compounds are tP: 43 % of the blind rock-salt carbides'
  frames, 49 % of LiNiO2's and 30 % of Si's went there. σ-FeCr was added in its place and
  γ-TiAl joins the ordered superstructures below.
- aP anorthite + kyanite, oC, oF, oI, mP: the catalogue holds exactly two materials of each
  (kyanite was added for that reason).
- hR Al2O3 + ilmenite (LiNiO2, paper 2's material, blind); tI Sn + Mo5Si3 (anatase
  blind); oP forsterite + Mo2C (enstatite blind): one mineral and one metal where possible.
"""
from __future__ import annotations

from diffstream.trainer.config import ConfigError
from diffstream.trainer.physics.catalogue import BRAVAIS_LATTICES, catalogue, get_phase_entry

LATTICES: tuple[str, ...] = BRAVAIS_LATTICES
"""Class order of every lattice model: aP mP mC oP oC oI oF tP tI hP hR cP cI cF."""

HOLOHEDRY: dict[str, str] = {
    "aP": "-1", "mP": "2/m", "mC": "2/m",
    "oP": "mmm", "oC": "mmm", "oI": "mmm", "oF": "mmm",
    "tP": "4/mmm", "tI": "4/mmm",
    "hP": "6/mmm", "hR": "-3m",
    "cP": "m-3m", "cI": "m-3m", "cF": "m-3m",
}
"""The lattice's holohedral point group (the Laue group of its most symmetric members)."""

TRAINING_MATERIALS: dict[str, tuple[str, str]] = {
    "aP": ("anorthite", "kyanite"),
    "mP": ("malachite", "Nb2O5"),
    "mC": ("jadeite", "Fe4Al13"),
    "oP": ("forsterite", "Mo2C"),
    "oC": ("ZrSi2", "AuSn4"),
    "oI": ("Ni2V", "MoPt2"),
    "oF": ("TiSi2", "Al3Zr2"),
    "tP": ("rutile", "sigma-FeCr"),
    "tI": ("Sn", "Mo5Si3"),
    "hP": ("Ti", "WC"),
    "hR": ("Al2O3", "ilmenite"),
    "cP": ("Cr3Si", "Mo3Si"),
    "cI": ("Fe", "Ta"),
    "cF": ("Ni", "Al"),
}

DEMO_PHASES: tuple[str, ...] = ("Ni", "Fe", "Ti")
"""The phases of the live demo specimen; they also train the orientation head."""

ORDERED_SUPERSTRUCTURES: tuple[str, ...] = ("FeNi3", "Ni3Al", "NiAl", "FeAl", "V8C7", "TiAl")
"""Blind materials whose kinematical patterns are nearly those of a cF or cI parent: the
cP ones and γ-TiAl (tP)."""


ORDERING_CLASSES: tuple[str, ...] = ("disordered", "ordered")
"""Classes of paper 1's point-group study (``data.labels = "ordering"``)."""

POINT_GROUP_PAIRS: dict[str, tuple[tuple[str, str], ...]] = {
    "training": (("FeNi3", "Cr3Si"), ("TiC", "Ni"), ("NiAl", "Ta")),
    "blind": (("Ni3Al", "Mo3Si"), ("TaC", "Al"), ("FeAl", "W")),
}
"""Paper 1's (ordered, disordered) pairs: L1₂ vs primitive cubic, B1 vs fcc, B2 vs bcc; it
trains one binary classifier per pair and tests each blind on the pair below it."""

ORDERED_MATERIALS: frozenset[str] = frozenset(pair[0] for pairs in POINT_GROUP_PAIRS.values() for pair in pairs)


def class_index(phase: str, labels: str = "lattice") -> int:
    """The class index of a catalogue phase: its Bravais lattice (``labels = "lattice"``), or
    ordered / disordered (``"ordering"``, the materials of ``POINT_GROUP_PAIRS``)."""
    if labels != "ordering":
        return lattice_index(phase)
    name = get_phase_entry(phase).name
    known = {m for pairs in POINT_GROUP_PAIRS.values() for pair in pairs for m in pair}
    if name not in known:
        raise ConfigError(f"materials: {name} is not in paper 1's point-group pairs ({', '.join(sorted(known))})")
    return ORDERING_CLASSES.index("ordered" if name in ORDERED_MATERIALS else "disordered")


def lattice_index(phase: str) -> int:
    """The class index of a catalogue phase's Bravais lattice."""
    return LATTICES.index(get_phase_entry(phase).bravais_lattice)


def training_materials() -> tuple[str, ...]:
    """The 28 training materials, in lattice order."""
    return tuple(name for lattice in LATTICES for name in TRAINING_MATERIALS[lattice])


def blind_materials(training: tuple[str, ...] | None = None) -> tuple[str, ...]:
    """Every catalogue material not in ``training`` (default: ``training_materials()``)."""
    trained = set(training or training_materials())
    return tuple(name for name in catalogue() if name not in trained)
