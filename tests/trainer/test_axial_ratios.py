"""Rescaled cells: only the free axes change, the lattice is kept, the draws are seeded and
stratified, and refusals say what they refuse."""
from __future__ import annotations

import math

import numpy as np
import pytest

from diffstream.trainer.datasets import training_materials
from diffstream.trainer.physics.axial_ratios import free_axes, rescaled, rescaled_series
from diffstream.trainer.physics.catalogue import get_phase_entry
from diffstream.trainer.physics.errors import PhysicsInputError
from diffstream.trainer.physics.random_structures import MARGIN


def test_rescaled_changes_the_free_axes_only() -> None:
    sn = get_phase_entry("Sn")
    stretched = rescaled(sn, c=1.2)
    assert stretched.lattice[:2] == sn.lattice[:2] and stretched.lattice[3:] == sn.lattice[3:]
    assert stretched.lattice[2] == pytest.approx(1.2 * sn.lattice[2])
    assert stretched.atoms == sn.atoms and stretched.space_group == sn.space_group
    jadeite = get_phase_entry("jadeite")
    both = rescaled(jadeite, b=0.9, c=1.1)
    assert np.allclose(np.divide(both.lattice[:3], jadeite.lattice[:3]), (1.0, 0.9, 1.1))
    assert both.lattice[3:] == jadeite.lattice[3:], "angles kept"


@pytest.mark.parametrize("name", ["Ti", "Al2O3", "forsterite", "anorthite"])
def test_rescaled_cells_keep_their_point_group_and_atoms(name: str) -> None:
    entry = get_phase_entry(name)
    cell = rescaled_series(entry, 0.3, 4, seed=5)[0]
    assert cell.lattice != entry.lattice
    before, after = entry.full_phase(), cell.full_phase()
    assert after.point_group.name == before.point_group.name
    assert after.space_group.number == before.space_group.number
    assert len(after.structure) == len(before.structure)


def test_axes_that_are_not_free_are_refused() -> None:
    with pytest.raises(PhysicsInputError, match="Ni is cF, whose c cannot be rescaled alone .free: none."):
        rescaled(get_phase_entry("Ni"), c=1.1)
    with pytest.raises(PhysicsInputError, match="Ti is hP, whose b cannot be rescaled alone .free: c."):
        rescaled(get_phase_entry("Ti"), b=1.1)
    with pytest.raises(PhysicsInputError, match="scales must be positive"):
        rescaled(get_phase_entry("Ti"), c=0.0)


def test_a_cell_may_not_come_near_a_more_symmetric_one() -> None:
    sn = get_phase_entry("Sn")
    a, _, c = sn.lattice[:3]
    with pytest.raises(PhysicsInputError, match=r"Sn c/a 1\.000, within 5 % of 1\.000, where a tI cell is more"):
        rescaled(sn, c=a / c)
    with pytest.raises(PhysicsInputError, match=r"Sn c/a 1\.414, within 5 % of 1\.414"):
        rescaled(sn, c=math.sqrt(2.0) * a / c)
    al2o3 = get_phase_entry("Al2O3")
    with pytest.raises(PhysicsInputError, match="Al2O3 c/a 2.449"):
        rescaled(al2o3, c=math.sqrt(6.0) * al2o3.lattice[0] / al2o3.lattice[2])


def test_a_cell_near_higher_symmetry_may_move_away_but_not_nearer() -> None:
    """AuSn4's c/a is 1.001: the margin cannot hold for the material itself, only for its draws."""
    ausn4 = get_phase_entry("AuSn4")
    ratio = ausn4.lattice[2] / ausn4.lattice[0]
    assert abs(ratio - 1.0) < MARGIN
    assert rescaled(ausn4, c=0.98).lattice[2] == pytest.approx(0.98 * ausn4.lattice[2])
    with pytest.raises(PhysicsInputError, match=r"AuSn4 b/c 1.761, within 5 % of 1.732"):
        rescaled(ausn4, c=1.02)
    with pytest.raises(PhysicsInputError, match=r"AuSn4 a/c 1\.000, within 5 % of 1\.000"):
        rescaled(ausn4, c=1.0 / ratio)


@pytest.mark.parametrize("name", training_materials())
def test_series_are_seeded_stratified_and_within_range(name: str) -> None:
    entry = get_phase_entry(name)
    series = rescaled_series(entry, 0.3, 4, seed=11)
    assert series == rescaled_series(entry, 0.3, 4, seed=11)
    axes = free_axes(entry.bravais_lattice)
    if not axes:
        assert series == (entry,) * 4
        return
    assert series != rescaled_series(entry, 0.3, 4, seed=12)
    logs = np.log([[cell.lattice[i] / entry.lattice[i] for i in axes] for cell in series])
    bins = np.floor((logs + math.log1p(0.3)) / (2 * math.log1p(0.3) / 4)).astype(int)
    for column in bins.T:
        assert sorted(column) == [0, 1, 2, 3], "each quarter of the range once per axis"


def test_no_jitter_keeps_the_material() -> None:
    ti = get_phase_entry("Ti")
    assert rescaled_series(ti, 0.0, 3, seed=1) == (ti,) * 3
