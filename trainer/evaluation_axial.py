"""``diffstream evaluate --axial-sweep``: an EBSD lattice model on its own training materials
with the c axis stretched or shrunk, a and b kept.

Why: a network trained on two materials per lattice may learn those materials' exact band
angles (their axial ratios) rather than the lattice. The blind materials' ratios differ from
their training materials' by far more than anything training varies (quartz c/a 1.10 against
Ti 1.59 and WC 0.98; anatase 2.51 against Sn 0.55 and Mo5Si3 0.51), so accuracy against c
scale tells whether more variety of axial ratios is what the lattice map needs. Only the
hexagonal and tetragonal materials are used, whose lattice stays what it was when c alone
changes, as long as a tetragonal c/a keeps clear of a cubic cell's
(``physics.axial_ratios.rescaled``, which also strains training cells for ``axial_jitter``).
"""
from __future__ import annotations

from pathlib import Path

from .config import DataConfig
from .datasets import Shard, split_spec
from .datasets.store import SplitSpec
from .evaluation import EvaluationError, lattice_sweep, synthesize_in_memory
from .physics.axial_ratios import rescaled
from .physics.catalogue import get_phase_entry
from .physics.master_pattern import MasterPattern, simulated_master_pattern

AXIAL_LATTICES = ("hP", "tP", "tI")
"""Lattices whose type survives scaling c alone (tetragonal ones while c/a keeps clear of a
cubic cell's: 1 for tP, 1 or √2 for tI); rhombohedral cells meet cubic ones at c/a √1.5 and
√6, inside the range of a useful study for Al2O3 and ilmenite, and lower symmetries have
more ratios."""

DEFAULT_C_SCALES = (0.8, 0.9, 1.0, 1.1, 1.2)
"""c scales of the study: ±20 %, a fraction of the spread of c/a between the materials of
one lattice."""


def evaluate_axial(spec: str | Path, scales: tuple[float, ...] = DEFAULT_C_SCALES,
                   frames: int | None = None) -> dict:
    """An EBSD lattice model's accuracy on its hexagonal and tetragonal training materials
    (test frames, ``frames`` per material) with each material's c multiplied by each of
    ``scales``: the same orientations, pattern centres and cameras at every scale."""
    if not scales or min(scales) <= 0:
        raise EvaluationError(f"c scales: need positive factors, got {', '.join(map(str, scales))}")
    return lattice_sweep(spec, "c_scale", scales, frames, "test", _strained_split)


def _strained_split(data: DataConfig, scale: float) -> Shard:
    spec = axial_spec(data)
    masters = {(name, data.voltage_kv, simulation): strained_master(name, scale, data, simulation)
               for name in spec.phases for simulation in data.simulations()}
    return synthesize_in_memory(data, spec, masters)


def axial_spec(data: DataConfig) -> SplitSpec:
    """The test split cut down to its materials of ``AXIAL_LATTICES``, without empty frames."""
    spec = split_spec(data, "test")
    names = tuple(name for name in spec.phases if get_phase_entry(name).bravais_lattice in AXIAL_LATTICES)
    if not names:
        raise EvaluationError(f"c scale: the model has no training material of lattice {', '.join(AXIAL_LATTICES)}")
    return spec.restricted(names)


def strained_master(name: str, scale: float, data: DataConfig, simulation: str = "kinematical") -> MasterPattern:
    """The master pattern by ``simulation`` of catalogue material ``name`` at the data's
    voltage, with c multiplied by ``scale`` (fractional coordinates kept)."""
    strained = rescaled(get_phase_entry(name), c=scale)
    return simulated_master_pattern(strained.phase(), data.voltage_kv, simulation=simulation,
                                    half_size=data.master_half_size)
