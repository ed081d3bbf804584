"""The lattice dataset: materials and classes, determinism, balance, labels and the cache."""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from diffstream.trainer.config import DataConfig
from diffstream.trainer.datasets import (
    DEMO_PHASES,
    HOLOHEDRY,
    LATTICES,
    TRAINING_MATERIALS,
    Shard,
    blind_materials,
    build_split,
    class_counts,
    dataset_cache_root,
    load_split,
    split_spec,
    synthesize_shard,
    training_materials,
)
from diffstream.trainer.datasets.store import (
    load_masters,
    master_contrast,
    master_crystal,
    master_settings,
    shard_plans,
    split_key,
    split_voltages,
)
from diffstream.trainer.physics.catalogue import catalogue, get_phase_entry
from diffstream.trainer.physics.ebsd_projection import synthetic_master_pattern
from diffstream.trainer.physics.master_pattern import kinematical_master_pattern

TINY = DataConfig(materials=("Ni", "Al", "Fe", "Ti"), blind=("W",), patterns_per_lattice=40,
                  val_patterns_per_lattice=8, test_patterns_per_phase=6, unusable_fraction=0.1,
                  master_half_size=24, shard_size=48, seed=3)


def _masters(phases: tuple[str, ...], voltages: tuple[float, ...] = (20.0,),
             simulations: tuple[str, ...] = ("kinematical",)) -> dict:
    """Random stand-in master patterns: shards only need something to project."""
    keys = itertools.product(phases, voltages, simulations)
    return {key: synthetic_master_pattern(half_size=24, seed=i) for i, key in enumerate(keys)}


def _plan(seed: int = 0):
    return dataclasses.replace(shard_plans(TINY, split_spec(TINY, "train"))[0], seed=(seed, 1, 0))


def test_two_training_materials_per_lattice_from_the_catalogue() -> None:
    assert set(TRAINING_MATERIALS) == set(LATTICES)
    for lattice, names in TRAINING_MATERIALS.items():
        assert len(set(names)) == 2
        assert all(get_phase_entry(n).bravais_lattice == lattice for n in names)
    assert set(DEMO_PHASES) <= set(training_materials())


def test_blind_set_is_every_other_catalogue_material() -> None:
    training, blind = set(training_materials()), set(blind_materials())
    assert not training & blind
    assert training | blind == set(catalogue())


def test_holohedry_of_every_lattice() -> None:
    assert HOLOHEDRY["cF"] == "m-3m" and HOLOHEDRY["hP"] == "6/mmm" and HOLOHEDRY["hR"] == "-3m"
    for lattice, names in TRAINING_MATERIALS.items():
        from orix.crystal_map import Phase

        laue = {Phase(point_group=get_phase_entry(n).point_group).point_group.laue.name for n in names}
        assert laue <= {HOLOHEDRY[lattice], *_subgroups(HOLOHEDRY[lattice])}


def _subgroups(holohedry: str) -> set[str]:
    """Laue groups a lattice's materials may have below its holohedry."""
    return {"m-3m": {"m-3"}, "6/mmm": {"6/m", "-3m", "-3"}, "4/mmm": {"4/m"}, "-3m": {"-3"}}.get(holohedry, set())


def test_same_seed_gives_identical_arrays_and_another_seed_does_not() -> None:
    plan = _plan(seed=5)
    masters = _masters(plan.phases)
    first, second = synthesize_shard(plan, masters), synthesize_shard(plan, masters)
    for key, value in first.arrays().items():
        assert np.array_equal(value, second.arrays()[key]), key
    other = synthesize_shard(_plan(seed=6), masters)
    assert not np.array_equal(first.frames, other.frames)


def test_shard_labels_and_types() -> None:
    plan = _plan()
    shard = synthesize_shard(plan, _masters(plan.phases))
    assert shard.frames.dtype == np.uint8 and shard.frames.shape[1:] == (60, 60)
    assert len(shard) == sum(plan.counts) + plan.unusable
    assert shard.usable.sum() == sum(plan.counts)
    assert (shard.lattice[~shard.usable] == -1).all() and (shard.phase[~shard.usable] == "").all()
    for name in plan.phases:
        rows = shard.phase == name
        assert (shard.lattice[rows] == LATTICES.index(get_phase_entry(name).bravais_lattice)).all()
    assert np.allclose(np.linalg.norm(shard.quaternions, axis=1), 1.0)
    assert (np.abs(shard.pc[shard.usable] - 0.5) <= TINY.pc_jitter + 1e-12).all()


def test_stored_quaternions_are_the_projected_rotations() -> None:
    """A frame must match the clean projection of its own stored rotation and pattern
    centre far better than that of another frame's rotation."""
    from diffstream.trainer.physics.ebsd_projection import project_patterns
    from diffstream.trainer.physics.geometry import EBSDGeometry

    master = kinematical_master_pattern("Ni", half_size=48)
    data = dataclasses.replace(TINY, materials=("Ni",), patterns_per_lattice=24, unusable_fraction=0.0,
                               high_res_fraction=1.0)
    plan = shard_plans(data, split_spec(data, "train"))[0]
    shard = synthesize_shard(plan, {("Ni", 20.0, "kinematical"): master})
    geometry = EBSDGeometry(shape=(60, 60))
    own = project_patterns(master, shard.quaternions, geometry.with_pc(shard.pc))
    shifted = np.roll(own, 1, axis=0)

    def r(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])

    frames = shard.frames.astype(np.float64)
    assert np.mean([r(f, o) for f, o in zip(frames, own)]) > np.mean([r(f, o) for f, o in zip(frames, shifted)]) + 0.15


def test_classes_are_balanced_by_construction() -> None:
    spec = split_spec(DataConfig(patterns_per_lattice=1001), "train")
    per_lattice = np.zeros(len(LATTICES), dtype=int)
    for name, count in zip(spec.phases, spec.counts):
        per_lattice[LATTICES.index(get_phase_entry(name).bravais_lattice)] += count
    assert (per_lattice == 1001).all()
    assert max(spec.counts) - min(spec.counts) <= 1


def test_material_weights_share_a_lattice_without_changing_its_total() -> None:
    spec = split_spec(DataConfig(patterns_per_lattice=1000, material_weights={"Ni": 2.0, "fe": 3.0}), "train")
    counts = dict(zip(spec.phases, spec.counts))
    assert (counts["Ni"], counts["Al"]) == (667, 333)
    assert (counts["Fe"], counts["Ta"]) == (750, 250)
    assert counts["Ti"] + counts["WC"] == 1000 and counts["Ti"] == 500


def test_split_round_trip_cache_and_balance() -> None:
    shard = load_split(TINY, "train", progress=False)
    counts = class_counts(shard)
    present = counts[counts > 0]
    assert (present == TINY.patterns_per_lattice).all() and len(present) == 3
    assert abs((~shard.usable).mean() - TINY.unusable_fraction) < 0.02
    folder = build_split(TINY, "train", progress=False)
    assert folder.parent == dataset_cache_root() and (folder / "manifest.json").is_file()
    again = load_split(TINY, "train", progress=False)
    assert np.array_equal(again.frames, shard.frames)
    reseeded = build_split(dataclasses.replace(TINY, seed=4), "train", progress=False)
    assert reseeded != folder


def test_training_voltages_spread_frames_over_their_master_patterns() -> None:
    """Each (phase, voltage) has its own stand-in master: every frame must be the projection
    of exactly one of its phase's voltages, and both voltages must be drawn."""
    data = dataclasses.replace(TINY, materials=("Ni",), patterns_per_lattice=32, unusable_fraction=0.0,
                               train_voltages_kv=(15.0, 25.0))
    plan = shard_plans(data, split_spec(data, "train"))[0]
    assert plan.voltages == (15.0, 25.0)
    _assert_each_frame_from_one_of_all(plan, _masters(("Ni",), plan.voltages))


def _assert_each_frame_from_one_of_all(plan, masters: dict) -> None:
    """Every frame of ``plan``'s shard is the projection of exactly one of ``masters`` (it
    correlates better with it than with any other, by 0.2 on the median frame; the
    low-contrast camera's frames by less), and every master is drawn."""
    from diffstream.trainer.physics.ebsd_projection import project_patterns

    shard = synthesize_shard(plan, masters)
    frames = shard.frames.reshape(len(shard), -1).astype(np.float64)
    matches = []
    for master in masters.values():
        clean = project_patterns(master, shard.quaternions, plan.geometry.with_pc(shard.pc)).reshape(len(shard), -1)
        matches.append([np.corrcoef(f, c)[0, 1] for f, c in zip(frames, clean)])
    ranked = np.sort(matches, axis=0)
    margin = ranked[-1] - ranked[-2]
    assert np.all(margin > 0.05) and np.median(margin) > 0.2
    assert set(np.argmax(matches, axis=0)) == set(range(len(masters)))


def test_training_voltages_apply_to_train_and_val_only() -> None:
    data = dataclasses.replace(TINY, train_voltages_kv=(15.0, 25.0))
    assert split_voltages(data, "train") == split_voltages(data, "val") == (15.0, 25.0)
    assert split_voltages(data, "test") == split_voltages(data, "blind") == split_voltages(data, "demo") == (20.0,)
    assert split_voltages(TINY, "train") == (20.0,)
    for split in ("train", "val"):
        assert split_key(data, split_spec(data, split)) != split_key(TINY, split_spec(TINY, split))
    assert split_key(data, split_spec(data, "blind")) == split_key(TINY, split_spec(TINY, "blind"))


def test_band_jitter_applies_to_training_voltages_away_from_the_nominal_one() -> None:
    """Test, blind and demo frames are made at voltage_kv from the simulated master patterns,
    and training must see them too; elsewhere each (material, voltage) has its own seed."""
    data = dataclasses.replace(TINY, train_voltages_kv=(15.0, 20.0, 25.0), band_jitter=0.5)
    assert master_settings(data, "train", "Ni", 20.0) == {"half_size": data.master_half_size}
    jittered = [master_settings(data, split, name, kv) for split in ("train", "val")
                for name in ("Ni", "Al") for kv in (15.0, 25.0)]
    assert all(s["band_jitter"] == 0.5 for s in jittered)
    assert len({s["band_jitter_seed"] for s in jittered}) == 4
    for split in ("test", "blind", "demo"):
        assert master_settings(data, split, "Ni", 15.0) == {"half_size": data.master_half_size}
    plain = dataclasses.replace(data, band_jitter=0.0)
    assert split_key(data, split_spec(data, "train")) != split_key(plain, split_spec(plain, "train"))
    assert split_key(data, split_spec(data, "test")) == split_key(plain, split_spec(plain, "test"))


def test_axial_jitter_gives_each_training_voltage_a_cell_of_its_own() -> None:
    """As band jitter: at voltage_kv and in test, blind and demo frames each material is its
    catalogue cell; at the other training voltages it has one rescaled cell per voltage,
    the same in training and validation."""
    data = dataclasses.replace(TINY, train_voltages_kv=(15.0, 20.0, 25.0), axial_jitter=0.3)
    assert master_crystal(data, "train", "Ti", 20.0) == "Ti"
    for split in ("test", "blind", "demo"):
        assert master_crystal(data, split, "Ti", 15.0) == "Ti"
    cells = {kv: master_crystal(data, "train", "Ti", kv).structure.lattice.abcABG() for kv in (15.0, 25.0)}
    assert cells[15.0] != cells[25.0]
    assert master_crystal(data, "val", "Ti", 25.0).structure.lattice.abcABG() == cells[25.0]
    ni = master_crystal(data, "train", "Ni", 25.0).structure.lattice.abcABG()
    assert ni == pytest.approx(get_phase_entry("Ni").lattice), "a cubic cell has no free axis"
    plain = dataclasses.replace(data, axial_jitter=0.0)
    assert split_key(data, split_spec(data, "train")) != split_key(plain, split_spec(plain, "train"))
    assert split_key(data, split_spec(data, "test")) == split_key(plain, split_spec(plain, "test"))
    masters = load_masters(data, split_spec(data, "train"))
    cell = {kv: masters["Ti", kv, "kinematical"].phase.structure.lattice.abcABG() for kv in (15.0, 20.0)}
    assert cell[15.0] == pytest.approx(cells[15.0])
    assert cell[20.0] == pytest.approx(get_phase_entry("Ti").lattice)


def test_dynamical_contrast_renders_training_voltages_away_from_the_nominal_one(tmp_path, monkeypatch) -> None:
    """As band jitter: test, blind and demo frames (and training at voltage_kv) keep the
    simulated master patterns; elsewhere each (material, voltage) draws its own rendering,
    the same on every call, and the split's cache key follows it."""
    monkeypatch.setenv("DIFFSTREAM_CACHE", str(tmp_path))
    data = dataclasses.replace(TINY, materials=("Ni", "Al"), train_voltages_kv=(15.0, 20.0, 25.0),
                               dynamical_contrast=True)
    assert master_contrast(data, "train", "Ni", 20.0) is None
    assert all(master_contrast(data, split, "Ni", 15.0) is None for split in ("test", "blind", "demo"))
    drawn = [master_contrast(data, split, name, kv) for split in ("train", "val")
             for name in ("Ni", "Al") for kv in (15.0, 25.0)]
    assert drawn[:4] == drawn[4:] and len({tuple(d.values()) for d in drawn[:4]}) == 4
    assert all(0.93 <= d["clip_quantile"] <= 1.0 and 1.0 <= d["edge_gain"] <= 5.0 for d in drawn)
    plain = dataclasses.replace(data, dynamical_contrast=False)
    assert split_key(data, split_spec(data, "train")) != split_key(plain, split_spec(plain, "train"))
    assert split_key(data, split_spec(data, "test")) == split_key(plain, split_spec(plain, "test"))
    rendered, simulated = load_masters(data, split_spec(data, "train")), load_masters(plain, split_spec(plain, "train"))
    at = {kv: ("Ni", kv, "kinematical") for kv in (15.0, 20.0)}
    assert np.array_equal(rendered[at[20.0]].hemispheres, simulated[at[20.0]].hemispheres)
    assert "dynamical contrast" in rendered[at[15.0]].source
    assert not np.allclose(rendered[at[15.0]].hemispheres, simulated[at[15.0]].hemispheres)


def test_dynamical_master_patterns_serve_every_split(tmp_path, monkeypatch) -> None:
    """``master_simulation = "dynamical"`` swaps the master patterns of every split (test and
    blind frames must look like what the network was trained on) and so every cache key."""
    monkeypatch.setenv("DIFFSTREAM_CACHE", str(tmp_path))
    data = dataclasses.replace(TINY, materials=("Ni", "Ti"), master_simulation="dynamical")
    plain = dataclasses.replace(data, master_simulation="kinematical")
    assert data.simulations() == ("dynamical",) and plain.simulations() == ("kinematical",)
    assert master_settings(data, "blind", "W", 20.0, "dynamical") == {"half_size": 24, "simulation": "dynamical"}
    assert master_settings(plain, "blind", "W", 20.0) == {"half_size": 24}
    for split in ("train", "test", "blind"):
        assert split_key(data, split_spec(data, split)) != split_key(plain, split_spec(plain, split))
    masters = load_masters(data, split_spec(data, "test"))
    assert {master.source for master in masters.values()} == {"dynamical (Bloch waves)"}
    assert masters["Ti", 20.0, "dynamical"].hemispheres.shape == (2, 49, 49)


def test_mixed_master_patterns_give_each_frame_one_kind() -> None:
    """``master_simulation = "mixed"``: every split draws each frame from the kinematical or
    the dynamical master pattern of its phase and voltage (both drawn, in every split), and
    its cache key differs from either kind alone."""
    data = dataclasses.replace(TINY, materials=("Ni",), patterns_per_lattice=32, unusable_fraction=0.0,
                               train_voltages_kv=(15.0, 25.0), master_simulation="mixed")
    assert data.simulations() == ("kinematical", "dynamical")
    plan = shard_plans(data, split_spec(data, "train"))[0]
    assert plan.simulations == data.simulations()
    _assert_each_frame_from_one_of_all(plan, _masters(("Ni",), plan.voltages, plan.simulations))
    for split in ("train", "test", "blind"):
        keys = {split_key(dataclasses.replace(data, master_simulation=kind), split_spec(data, split))
                for kind in ("kinematical", "dynamical", "mixed")}
        assert len(keys) == 3
        assert shard_plans(data, split_spec(data, split))[0].simulations == ("kinematical", "dynamical")


@pytest.mark.parametrize("split", ["val", "test", "blind", "demo"])
def test_other_splits(split: str) -> None:
    shard: Shard = load_split(TINY, split, progress=False)
    names = set(shard.phase[shard.usable])
    expected = {"val": {"Ni", "Al", "Fe", "Ti"}, "test": {"Ni", "Al", "Fe", "Ti"}, "blind": {"W"},
                "demo": set(DEMO_PHASES)}[split]
    assert names == expected
    if split == "demo":
        assert np.allclose(shard.pc, 0.5) and shard.usable.all()
