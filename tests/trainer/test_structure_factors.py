"""Kinematical structure factors and the full-cell expansion shared by SPED and EBSD:
systematic absences, symmetry-equivalent reflections, an explicit formula, and what the
EBSD master pattern makes of them for hexagonal and trigonal phases."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from diffsims.utils.lobato_scattering_params import ATOMIC_SCATTERING_PARAMS_LOBATO

from diffstream.trainer.physics.catalogue import get_phase_entry
from diffstream.trainer.physics.ebsd_projection import sample_master_pattern
from diffstream.trainer.physics.errors import PhysicsInputError
from diffstream.trainer.physics.master_pattern import kinematical_master_pattern, kinematical_reflectors
from diffstream.trainer.physics.structure_factors import (
    full_cell_phase,
    full_cell_sites,
    is_extinct,
    reflections_within,
    structure_factors,
)


@pytest.mark.parametrize(
    ("name", "absent", "present"),
    [
        # R-centring on hexagonal axes: -h + k + l = 3n.
        ("LiNiO2", [[1, 0, 0], [1, 0, 2], [0, 0, 1], [0, 0, 2], [0, 1, 4]], [[0, 0, 3], [0, 1, 2], [1, 0, 4]]),
        ("Ti", [[0, 0, 1], [0, 0, 3]], [[0, 0, 2], [1, 0, 0], [1, 0, 1]]),  # 6₃ screw: 00l, l even
        ("Si", [[2, 0, 0], [2, 2, 2], [1, 0, 0]], [[1, 1, 1], [2, 2, 0], [4, 0, 0]]),  # diamond glide
        ("Ni", [[1, 0, 0], [1, 1, 0], [2, 1, 0]], [[1, 1, 1], [2, 0, 0], [2, 2, 0]]),  # F: unmixed
        ("Fe", [[1, 0, 0], [1, 1, 1], [2, 1, 0]], [[1, 1, 0], [2, 0, 0], [2, 1, 1]]),  # I: h+k+l even
    ],
)
def test_systematic_absences(name: str, absent: list, present: list) -> None:
    entry = get_phase_entry(name)
    for phase in (entry.phase(), entry.full_phase()):
        f000 = abs(structure_factors(phase, [[0, 0, 0]])[0])
        forbidden = structure_factors(phase, absent)
        allowed = structure_factors(phase, present)
        assert np.all(np.abs(forbidden) < 1e-12 * f000), np.abs(forbidden)
        assert np.all(np.abs(allowed) > 0.05 * f000), np.abs(allowed)
        assert is_extinct(forbidden, phase).all() and not is_extinct(allowed, phase).any()


def test_linio2_agrees_with_the_explicit_formula() -> None:
    """R-3m on hexagonal axes with Ni 3a (0,0,0), Li 3b (0,0,½), O 6c (0,0,±z):
    F = C · [f_Ni + (−1)^l f_Li + 2 f_O cos 2πlz] with each f damped by exp(−B g²/4), and
    C = 3 where −h + k + l = 3n, else 0. g² from the hexagonal metric, not from orix."""
    entry = get_phase_entry("LiNiO2")
    a, c = entry.lattice[0], entry.lattice[2]
    (z_o,) = [site.xyz[2] for site in entry.atoms if site.element == "O"]
    b_iso = {site.element: site.b_iso for site in entry.atoms}
    hkl = reflections_within(entry.phase(), 1.2)
    h, k, l_ = hkl.T.astype(float)
    g2 = 4 / 3 * (h**2 + h * k + k**2) / a**2 + l_**2 / c**2

    def f(element: str) -> np.ndarray:
        params = np.asarray(ATOMIC_SCATTERING_PARAMS_LOBATO[element])
        terms = params[:, 0] * (2 + params[:, 1] * g2[:, None]) / (1 + params[:, 1] * g2[:, None]) ** 2
        return terms.sum(axis=1) * np.exp(-b_iso[element] * g2 / 4)

    centring = np.where((-h + k + l_) % 3 == 0, 3.0, 0.0)
    expected = centring * (f("Ni") + (-1) ** l_ * f("Li") + 2 * f("O") * np.cos(2 * np.pi * l_ * z_o))
    assert len(hkl) > 100 and (centring == 0).sum() > 50
    ours = structure_factors(entry.phase(), hkl)
    np.testing.assert_allclose(ours.real, expected, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ours.imag, 0.0, atol=1e-9)  # centrosymmetric about the origin


def _hexagonal_equivalents(h: int, k: int, l_: int) -> list[tuple[int, int, int]]:
    """The orbit of (hkl) under -3m1 (R-3m's point group, 2-fold axes along a), written out
    with i = −h − k: the 3-fold cycles (h, k, i), the 2-folds swap two of them and flip l,
    and inversion flips all."""
    i = -h - k
    rotations = [(h, k, l_), (k, i, l_), (i, h, l_), (k, h, -l_), (h, i, -l_), (i, k, -l_)]
    return sorted({r for r in rotations} | {(-a, -b, -c) for a, b, c in rotations})


def test_equivalent_reflections_have_equal_structure_factors() -> None:
    phase = get_phase_entry("LiNiO2").phase()
    general = _hexagonal_equivalents(1, 2, 5)
    assert len(general) == 12 and (2, 1, 5) not in general
    for family in (general, _hexagonal_equivalents(0, 1, 2), _hexagonal_equivalents(1, 0, 4)):
        magnitude = np.abs(structure_factors(phase, family))
        assert magnitude.min() > 1.0
        np.testing.assert_allclose(magnitude, magnitude[0], rtol=1e-9)
    # (2,1,5) and (1,-1,2) share |g| with (1,2,5) and (0,1,2) but not their -3m family:
    # under 6/mmm they would be equivalent, under R-3m they are absent.
    assert np.all(is_extinct(structure_factors(phase, [[2, 1, 5], [1, -1, -2]]), phase))


def test_full_cell_is_idempotent_and_a_phase_again() -> None:
    ti = full_cell_phase(get_phase_entry("Ti").phase())
    xyz = sorted(map(tuple, np.round(ti.structure.xyz, 9)))
    np.testing.assert_allclose(xyz, [(1 / 3, 2 / 3, 1 / 4), (2 / 3, 1 / 3, 3 / 4)], atol=1e-9)
    linio2 = get_phase_entry("LiNiO2")
    once = full_cell_sites(linio2.phase())
    twice = full_cell_sites(full_cell_phase(linio2.phase()))
    assert sorted(once.elements) == sorted(twice.elements) == ["Li"] * 3 + ["Ni"] * 3 + ["O"] * 6
    catalogue_cell = full_cell_sites(linio2.full_phase())
    for sites in (twice, catalogue_cell):
        assert sorted(map(tuple, np.round(sites.xyz, 9) % 1)) == sorted(map(tuple, np.round(once.xyz, 9) % 1))


def test_hkl_must_be_integer_triples() -> None:
    phase = get_phase_entry("Ni").phase()
    with pytest.raises(PhysicsInputError, match="^hkl: "):
        structure_factors(phase, [[0.5, 0, 0]])
    with pytest.raises(PhysicsInputError, match="^hkl: "):
        structure_factors(phase, [1, 1, 1])


def test_linio2_master_pattern_reflectors_obey_r_centring() -> None:
    reflectors = kinematical_reflectors(get_phase_entry("LiNiO2").phase(), 20.0)
    hkl = np.rint(reflectors.hkl).astype(int)
    assert len(hkl) > 300
    assert np.all((hkl @ [-1, 1, 1]) % 3 == 0)
    assert {(0, 0, 3), (0, 0, -3), (0, 1, 2), (1, 0, 4)} <= set(map(tuple, hkl))
    assert not np.isnan(reflectors.structure_factor).any() and not np.isnan(reflectors.theta).any()


def test_ti_prism_family_holds_its_six_vectors_once() -> None:
    reflectors = kinematical_reflectors(get_phase_entry("Ti").phase(), 20.0)
    hkl = np.rint(reflectors.hkl).astype(int)
    assert len(set(map(tuple, hkl))) == len(hkl)  # no band drawn twice
    prism = np.isclose(reflectors.gspacing, reflectors.gspacing[(hkl == [1, 0, 0]).all(axis=1)][0]) & (hkl[:, 2] == 0)
    expected = {(1, 0, 0), (0, 1, 0), (-1, 1, 0), (-1, 0, 0), (0, -1, 0), (1, -1, 0)}
    assert set(map(tuple, hkl[prism])) == expected and prism.sum() == 6
    magnitude = np.abs(reflectors.structure_factor[prism])
    np.testing.assert_allclose(magnitude, magnitude[0], rtol=1e-9)


@pytest.mark.parametrize("name", ["Ti", "WC", "quartz", "LiNiO2", "Al2O3", "diopside", "kyanite"])
def test_reflectors_are_closed_under_the_point_group(name: str) -> None:
    """Every symmetry image h·R of a reflector is a reflector with the same |F|: nothing
    missing (diffsims' search box) and no wrong orbit (orix's monoclinic frame)."""
    phase = get_phase_entry(name).phase()
    reflectors = kinematical_reflectors(phase, 20.0, min_dspacing=0.7)
    hkl = np.rint(reflectors.hkl).astype(int)
    magnitude = dict(zip(map(tuple, hkl), np.abs(reflectors.structure_factor)))
    assert len(magnitude) == len(hkl)
    for operation in phase.space_group.iter_symops():
        images = hkl @ np.rint(operation.R).astype(int)
        for image, original in zip(map(tuple, images), map(tuple, hkl)):
            assert magnitude.get(image) == pytest.approx(magnitude[original], rel=1e-9), (image, original)


def test_linio2_master_pattern_is_threefold_not_sixfold(tmp_path: Path) -> None:
    """Directions rotated by 120° about c read the same intensities; by 60° they do not, as
    R-3m has no 6-fold axis (the diffsims-based pattern gave 0.994 for both)."""
    master = kinematical_master_pattern("LiNiO2", 20.0, half_size=300, min_dspacing=1.0, cache_dir=tmp_path)
    directions = np.random.default_rng(0).normal(size=(20000, 3))
    directions[:, 2] = np.abs(directions[:, 2])
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    upper = sample_master_pattern(master, directions)

    def correlation(degrees: float) -> float:
        angle = np.radians(degrees)
        rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
        return float(np.corrcoef(upper, sample_master_pattern(master, directions @ rotation.T))[0, 1])

    assert correlation(120) >= 0.99 and correlation(240) >= 0.99
    assert correlation(60) < 0.8
