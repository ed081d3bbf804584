"""Dataset splits from a config, generated in shards and cached on disk.

Splits of a lattice dataset:

| split | materials | frames | cameras, pattern centre |
| --- | --- | --- | --- |
| ``train`` | training materials | ``patterns_per_lattice`` per lattice + unusable | varied, jittered |
| ``val`` | training materials | ``val_patterns_per_lattice`` per lattice + unusable | varied, jittered |
| ``test`` | training materials | ``test_patterns_per_phase`` each, fresh | varied, jittered |
| ``blind`` | materials never trained on | ``test_patterns_per_phase`` each | varied, jittered |
| ``demo`` | the demo phases (Ni, Fe, Ti) | ``test_patterns_per_phase`` each | ``fast`` preset, demo PC exactly |

A 4D-STEM set (``data.kind = "4dstem"``, paper 2's task) has one class per material and
only ``train``, ``val`` and ``test``: paper 2's random 60/20/20 split of ``data.patterns``
labelled frames (``SPED_SPLIT``), each with its share of frames without a pattern.

Each split is cached under ``$DIFFSTREAM_CACHE/datasets/SPLIT-KEY/``, KEY a hash of
everything the frames depend on (the split's plan, geometry, cameras, seed, the master
patterns' own cache keys and this module's format), so a changed config or structure never
reads stale frames. Shards are written atomically and a manifest last, so an interrupted
generation resumes at the first missing shard.
"""
from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import tempfile
import zlib
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from orix.crystal_map import Phase
from tqdm import tqdm

from diffstream.trainer.config import BLIND_REST, PAPER1_TRAINING, ConfigError, DataConfig
from diffstream.trainer.physics.axial_ratios import rescaled_series
from diffstream.trainer.physics.catalogue import get_phase_entry
from diffstream.trainer.physics.geometry import EBSDGeometry
from diffstream.trainer.physics.master_pattern import (
    dynamical_contrast,
    fill_master_pattern_cache,
    master_pattern_cache_key,
    simulated_master_pattern,
)
from diffstream.trainer.physics.random_structures import random_names

from .lattices import (
    DEMO_PHASES,
    HOLOHEDRY,
    LATTICES,
    ORDERING_CLASSES,
    blind_materials,
    class_index,
    training_materials,
)
from .sped_synthesis import SpedShardPlan, sped_geometry, synthesize_sped_shard
from .synthesis import CAMERA_BLOCK, MasterSet, Shard, ShardPlan, synthesize_shard

DATASET_FORMAT = 2
"""Bump when generation changes what a given config produces, so old caches are not hit."""

SPLITS = ("train", "val", "test", "blind", "demo")
SPED_SPLIT = {"train": 0.6, "val": 0.2, "test": 0.2}
"""Paper 2's random split of its labelled patterns."""


@dataclass(frozen=True)
class SplitSpec:
    """The plan of one split: usable frames per phase, unusable frames in all, the pattern
    centre jitter and the kind of cameras ("varied" or "demo")."""

    name: str
    phases: tuple[str, ...]
    counts: tuple[int, ...]
    unusable: int
    pc_jitter: float
    cameras: str

    def restricted(self, names: tuple[str, ...]) -> SplitSpec:
        """This split cut down to ``names`` (some of its phases, each with its frame count),
        without empty frames: the plan of a study of a few materials."""
        keep = [self.phases.index(name) for name in names]
        return replace(self, phases=tuple(names), counts=tuple(self.counts[i] for i in keep), unusable=0)


def resolve_materials(data: DataConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(training, blind) material names, canonical catalogue spelling, from the config's
    lists or its keywords; the random structures it asks for train and are never blind."""
    if data.materials == PAPER1_TRAINING:
        training = training_materials()
    else:
        training = tuple(get_phase_entry(name).name for name in data.materials)
    training += random_names(data.random_structures_per_lattice)
    if data.blind == BLIND_REST:
        blind = blind_materials(training)
    else:
        blind = tuple(get_phase_entry(name).name for name in data.blind)
    return training, blind


def class_names(data: DataConfig) -> tuple[str, ...]:
    """The classes a dataset labels: the 14 Bravais lattices or ordered/disordered (EBSD, by
    ``data.labels``), or its materials (4D-STEM)."""
    if data.kind == "4dstem":
        return resolve_materials(data)[0]
    return ORDERING_CLASSES if data.labels == "ordering" else LATTICES


def class_point_groups(data: DataConfig) -> tuple[str, ...]:
    """The point group the live map reads for each class of an EBSD set: a lattice's
    holohedry, or, for ordered / disordered, the Laue group all the class's training
    materials share (the map colours a class's orientations under one group)."""
    if data.labels != "ordering":
        return tuple(HOLOHEDRY[name] for name in LATTICES)
    laue: dict[str, set[str]] = {name: set() for name in ORDERING_CLASSES}
    for material in resolve_materials(data)[0]:
        group = get_phase_entry(material).phase().point_group.laue.name
        laue[ORDERING_CLASSES[class_index(material, "ordering")]].add(group)
    mixed = {name: sorted(groups) for name, groups in laue.items() if len(groups) != 1}
    if mixed:
        raise ConfigError(f"data.materials: each ordering class needs materials of one Laue group, got {mixed}")
    return tuple(groups.pop() for groups in laue.values())


def sped_split_sizes(patterns: int) -> dict[str, int]:
    """Frames with a pattern per split of a 4D-STEM set: 60/20/20 of ``patterns``, rounded."""
    train, val = round(patterns * SPED_SPLIT["train"]), round(patterns * SPED_SPLIT["val"])
    return {"train": train, "val": val, "test": patterns - train - val}


def split_spec(data: DataConfig, split: str) -> SplitSpec:
    """The plan of ``split`` under ``data`` (see the module table)."""
    training, blind = resolve_materials(data)
    if data.kind == "4dstem":
        if split not in SPED_SPLIT:
            raise ConfigError(f"split: a 4dstem set has only {', '.join(SPED_SPLIT)} (no blind materials, no demo)")
        n = sped_split_sizes(data.patterns)[split]
        counts = tuple(_share(n, len(training), i) for i in range(len(training)))
        unusable = round(n * data.unusable_fraction / (1.0 - data.unusable_fraction))
        return SplitSpec(split, training, counts, unusable, 0.0, "varied")
    if split in ("train", "val"):
        per_lattice = data.patterns_per_lattice if split == "train" else data.val_patterns_per_lattice
        counts = _balanced_counts(training, per_lattice, data.material_weights, data.labels)
        unusable = round(sum(counts) * data.unusable_fraction / (1.0 - data.unusable_fraction))
        return SplitSpec(split, training, counts, unusable, data.pc_jitter, "varied")
    n = data.test_patterns_per_phase
    if split == "test":
        return SplitSpec(split, training, (n,) * len(training), 0, data.pc_jitter, "varied")
    if split == "blind":
        return SplitSpec(split, blind, (n,) * len(blind), 0, data.pc_jitter, "varied")
    if split == "demo":
        demo = tuple(p for p in DEMO_PHASES if p in training) or training
        return SplitSpec(split, demo, (n,) * len(demo), 0, 0.0, "demo")
    raise ValueError(f"split: unknown split {split!r}; known: {', '.join(SPLITS)}")


def _balanced_counts(phases: tuple[str, ...], per_lattice: int,
                     weights: dict[str, float] | None = None, labels: str = "lattice") -> tuple[int, ...]:
    """Frames per phase such that every class present (lattice, or ordered/disordered, by
    ``labels``) gets exactly ``per_lattice`` in all (the classes are balanced by
    construction), shared by its materials in proportion to their ``weights`` (default 1),
    rounded by largest remainder."""
    weights = {get_phase_entry(k).name: float(v) for k, v in (weights or {}).items()}
    by_class: dict[int, list[int]] = {}
    for i, name in enumerate(phases):
        by_class.setdefault(class_index(name, labels), []).append(i)
    counts = [0] * len(phases)
    for members in by_class.values():
        share = np.array([weights.get(phases[i], 1.0) for i in members])
        exact = per_lattice * share / share.sum()
        floor = np.floor(exact).astype(int)
        for rank in np.argsort(floor - exact, kind="stable")[: per_lattice - floor.sum()]:
            floor[rank] += 1
        for i, count in zip(members, floor):
            counts[i] = int(count)
    return tuple(counts)


def dataset_cache_root() -> Path:
    """``$DIFFSTREAM_CACHE/datasets`` (default ``~/.cache/diffstream/datasets``)."""
    root = os.environ.get("DIFFSTREAM_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "diffstream") / "datasets"


def split_key(data: DataConfig, spec: SplitSpec) -> str:
    """The hash naming a split's cache folder (see the module docstring)."""
    voltages = split_voltages(data, spec.name)
    settings = {
        "format": DATASET_FORMAT,
        "camera_block": CAMERA_BLOCK,
        "spec": asdict(spec),
        "frame_shape": list(data.frame_shape),
        "voltage_kv": data.voltage_kv,
        "shard_size": data.shard_size,
        "seed": data.seed,
    }
    if data.labels != "lattice":
        settings["labels"] = data.labels
    if voltages != (data.voltage_kv,):
        settings["voltages"] = list(voltages)
    if data.kind == "4dstem":
        settings.update(kind=data.kind, geometry=asdict(sped_geometry(data.frame_shape, data.voltage_kv)),
                        dose=list(data.dose))
        if (texture := data.texture()) is not None:
            settings["texture"] = asdict(texture)
    else:
        settings.update(
            pattern_centre=list(data.pattern_centre), sample_tilt=data.sample_tilt, detector_tilt=data.detector_tilt,
            high_res_fraction=data.high_res_fraction,
            masters=[master_pattern_cache_key(master_crystal(data, spec.name, name, kv), kv,
                                              **master_settings(data, spec.name, name, kv, simulation))
                     for name in spec.phases for kv in voltages for simulation in data.simulations()])
        contrast = [master_contrast(data, spec.name, name, kv) for name in spec.phases for kv in voltages]
        if any(contrast):
            settings["contrast"] = contrast
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def shard_plans(data: DataConfig, spec: SplitSpec) -> list[ShardPlan] | list[SpedShardPlan]:
    """The split cut into shards of about ``shard_size`` frames, each holding every phase in
    proportion, with its own seed (data seed, split, shard index)."""
    total = sum(spec.counts) + spec.unusable
    n_shards = max(1, math.ceil(total / data.shard_size))
    split_id = zlib.crc32(spec.name.encode())
    if data.kind == "4dstem":
        geometry = sped_geometry(tuple(data.frame_shape), data.voltage_kv)
        return [SpedShardPlan(phases=spec.phases, counts=tuple(_share(c, n_shards, index) for c in spec.counts),
                              unusable=_share(spec.unusable, n_shards, index), geometry=geometry,
                              dose=tuple(data.dose), seed=(data.seed, split_id, index), texture=data.texture())
                for index in range(n_shards)]
    geometry = ebsd_geometry(data)
    voltages = split_voltages(data, spec.name)
    plans = []
    for index in range(n_shards):
        plans.append(ShardPlan(
            phases=spec.phases,
            counts=tuple(_share(c, n_shards, index) for c in spec.counts),
            unusable=_share(spec.unusable, n_shards, index),
            geometry=geometry,
            pc_jitter=spec.pc_jitter,
            cameras=spec.cameras,
            high_res_fraction=data.high_res_fraction,
            seed=(data.seed, split_id, index),
            classes=tuple(class_index(name, data.labels) for name in spec.phases),
            voltages=voltages,
            simulations=data.simulations(),
        ))
    return plans


def ebsd_geometry(data: DataConfig) -> EBSDGeometry:
    """The detector geometry EBSD frames of ``data`` are projected on, at the nominal pattern
    centre (each frame's jittered one is stored with it, ``Shard.pc``)."""
    return EBSDGeometry(shape=tuple(data.frame_shape), pc=tuple(data.pattern_centre),
                        sample_tilt=data.sample_tilt, tilt=data.detector_tilt)


def split_voltages(data: DataConfig, split: str) -> tuple[float, ...]:
    """The beam voltages (kV) of a split's frames: ``train_voltages_kv`` for training and
    validation where set, ``voltage_kv`` otherwise."""
    if split in ("train", "val") and data.train_voltages_kv:
        return tuple(float(kv) for kv in data.train_voltages_kv)
    return (data.voltage_kv,)


def master_settings(data: DataConfig, split: str, phase: str, voltage_kv: float,
                    simulation: str = "kinematical") -> dict:
    """The keyword arguments of ``simulated_master_pattern`` for the master pattern a split's
    frames of ``phase`` at ``voltage_kv`` come from by ``simulation`` (one of
    ``data.simulations()``): band-jittered for training and validation away from the nominal
    voltage (``DataConfig.band_jitter``), with a seed of its own per (material, voltage)."""
    settings = {"half_size": data.master_half_size}
    if simulation != "kinematical":
        settings["simulation"] = simulation
    if data.band_jitter and _varied_in_training(data, split, voltage_kv):
        seed = zlib.crc32(f"{phase}|{voltage_kv:g}|{data.seed}".encode())
        settings.update(band_jitter=data.band_jitter, band_jitter_seed=seed)
    return settings


def master_crystal(data: DataConfig, split: str, phase: str, voltage_kv: float) -> str | Phase:
    """The crystal a split's master pattern of ``phase`` at ``voltage_kv`` is simulated for:
    the catalogue material, or, for training and validation away from the nominal voltage
    with ``DataConfig.axial_jitter``, one of the material's cells with rescaled axes, a
    different one at each such voltage (``physics.axial_ratios.rescaled_series``)."""
    if not (data.axial_jitter and _varied_in_training(data, split, voltage_kv)):
        return phase
    varied = [kv for kv in split_voltages(data, split) if _varied_in_training(data, split, kv)]
    seed = zlib.crc32(f"axes|{phase}|{data.seed}".encode())
    series = rescaled_series(get_phase_entry(phase), data.axial_jitter, len(varied), seed)
    return series[varied.index(voltage_kv)].phase()


def master_contrast(data: DataConfig, split: str, phase: str, voltage_kv: float) -> dict | None:
    """The ``dynamical_contrast`` arguments (clip quantile, edge gain) a split's master
    pattern of ``phase`` at ``voltage_kv`` is re-rendered with, drawn from a seed of its own
    per (material, voltage); None where it is used as simulated (``DataConfig.dynamical_contrast``
    off, or test, blind and demo frames, or the nominal voltage)."""
    if not (data.dynamical_contrast and _varied_in_training(data, split, voltage_kv)):
        return None
    rng = np.random.default_rng(zlib.crc32(f"contrast|{phase}|{voltage_kv:g}|{data.seed}".encode()))
    return {"clip_quantile": round(float(rng.uniform(0.93, 1.0)), 4),
            "edge_gain": round(float(rng.uniform(1.0, 5.0)), 3)}


def _varied_in_training(data: DataConfig, split: str, voltage_kv: float) -> bool:
    """Whether a split's master patterns at ``voltage_kv`` may be varied (band jitter, axial
    jitter, dynamical contrast): training and validation only, and never at ``voltage_kv``, where
    test, blind and demo frames are made and training must see each material as simulated."""
    return split in ("train", "val") and voltage_kv != data.voltage_kv


def load_masters(data: DataConfig, spec: SplitSpec, progress: bool = True) -> MasterSet:
    """The master pattern of every (phase, voltage, simulation) a split's frames are projected
    from, those not cached yet simulated first on every core."""
    requests = {(name, kv, simulation): (master_crystal(data, spec.name, name, kv), kv,
                                         master_settings(data, spec.name, name, kv, simulation))
                for name in spec.phases for kv in split_voltages(data, spec.name) for simulation in data.simulations()}
    fill_master_pattern_cache(list(requests.values()), progress=progress)
    masters = {}
    for (name, kv, simulation), (crystal, _, settings) in requests.items():
        master = simulated_master_pattern(crystal, kv, **settings)
        contrast = master_contrast(data, spec.name, name, kv)
        masters[name, kv, simulation] = master if contrast is None else dynamical_contrast(master, **contrast)
    return masters


def _share(total: int, parts: int, index: int) -> int:
    base, extra = divmod(total, parts)
    return base + (index < extra)


def build_split(data: DataConfig, split: str, progress: bool = True) -> Path:
    """Generate (or finish generating) a split's shards; returns its cache folder."""
    spec = split_spec(data, split)
    folder = dataset_cache_root() / f"{split}-{split_key(data, spec)}"
    manifest = folder / "manifest.json"
    if manifest.is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    plans = shard_plans(data, spec)
    if data.kind == "4dstem":
        synthesize = synthesize_sped_shard
    else:
        synthesize = functools.partial(synthesize_shard, masters=load_masters(data, spec, progress))
    sizes = []
    for index, plan in enumerate(tqdm(plans, desc=f"dataset {split}", unit="shard", disable=not progress)):
        path = folder / f"shard-{index:05d}.npz"
        if not path.is_file():
            _write_atomic(path, synthesize(plan))
        sizes.append(sum(plan.counts) + plan.unusable)
    record = {"split": asdict(spec), "shards": [f"shard-{i:05d}.npz" for i in range(len(plans))], "sizes": sizes}
    _write_text_atomic(manifest, json.dumps(record, indent=1))
    return folder


def load_split(data: DataConfig, split: str, progress: bool = True) -> Shard:
    """All frames and labels of a split in memory: generated first if not cached, or, for
    ``data.source = "folder"``, the split a user imported there (``write_split``)."""
    if data.source == "folder":
        return _load_imported(data, split)
    return read_split(build_split(data, split, progress))


def _load_imported(data: DataConfig, split: str) -> Shard:
    folder = Path(data.folder) / split
    if not (folder / "manifest.json").is_file():
        raise ConfigError(f"data.folder: {folder} holds no imported {split!r} split (`diffstream dataset import` "
                          f"writes train, val and test)")
    shard = read_split(folder)
    if shard.frames.shape[1:] != tuple(data.frame_shape):
        raise ConfigError(f"data.folder: {folder} holds {shard.frames.shape[1]}×{shard.frames.shape[2]} frames, "
                          f"the config's frame_shape is {data.frame_shape[0]}×{data.frame_shape[1]}")
    return shard


def write_split(folder: Path, shard: Shard, shard_size: int, source: dict) -> Path:
    """Write ``shard`` as a split folder in the cache's format (shards of ``shard_size``
    frames, then the manifest, which records ``source``), so ``read_split`` reads it."""
    folder.mkdir(parents=True, exist_ok=True)
    names, sizes = [], []
    for index, first in enumerate(range(0, max(len(shard), 1), shard_size)):
        part = Shard(**{key: value[first:first + shard_size] for key, value in shard.arrays().items()})
        names.append(f"shard-{index:05d}.npz")
        sizes.append(len(part))
        _write_atomic(folder / names[-1], part)
    record = {"split": {"name": folder.name, "source": source}, "shards": names, "sizes": sizes}
    _write_text_atomic(folder / "manifest.json", json.dumps(record, indent=1))
    return folder


def read_split(folder: Path) -> Shard:
    """All shards of a split folder (its manifest's list), concatenated."""
    record = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    parts = []
    for name in record["shards"]:
        with np.load(folder / name, allow_pickle=False) as stored:
            parts.append({key: stored[key] for key in stored.files})
    return Shard(**{key: np.concatenate([p[key] for p in parts]) for key in parts[0]})


def class_counts(shard: Shard) -> np.ndarray:
    """Usable frames per lattice class (length 14)."""
    return np.bincount(shard.lattice[shard.usable].astype(np.int64), minlength=len(LATTICES))


def _write_atomic(path: Path, shard: Shard) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, **shard.arrays())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _write_text_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.part")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
