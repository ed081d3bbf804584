"""Dataset splits from a config, generated in shards and cached on disk.

Splits of a lattice dataset:

| split | materials | frames | cameras, pattern centre |
| --- | --- | --- | --- |
| ``train`` | training materials | ``patterns_per_lattice`` per lattice + unusable | varied, jittered |
| ``val`` | training materials | ``val_patterns_per_lattice`` per lattice + unusable | varied, jittered |
| ``test`` | training materials | ``test_patterns_per_phase`` each, fresh | varied, jittered |
| ``blind`` | materials never trained on | ``test_patterns_per_phase`` each | varied, jittered |
| ``demo`` | the demo phases (Ni, Fe, Ti) | ``test_patterns_per_phase`` each | ``fast`` preset, demo PC exactly |

Each split is cached under ``$DIFFSTREAM_CACHE/datasets/SPLIT-KEY/``, KEY a hash of
everything the frames depend on (the split's plan, geometry, cameras, seed, the master
patterns' own cache keys and this module's format), so a changed config or structure never
reads stale frames. Shards are written atomically and a manifest last, so an interrupted
generation resumes at the first missing shard.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from diffstream.trainer.config import BLIND_REST, PAPER1_TRAINING, DataConfig
from diffstream.trainer.physics.catalogue import get_phase_entry
from diffstream.trainer.physics.geometry import EBSDGeometry
from diffstream.trainer.physics.master_pattern import kinematical_master_pattern, master_pattern_cache_key

from .lattices import DEMO_PHASES, LATTICES, blind_materials, training_materials
from .synthesis import CAMERA_BLOCK, Shard, ShardPlan, synthesize_shard

DATASET_FORMAT = 2
"""Bump when generation changes what a given config produces, so old caches are not hit."""

SPLITS = ("train", "val", "test", "blind", "demo")


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


def resolve_materials(data: DataConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(training, blind) material names, canonical catalogue spelling, from the config's
    lists or its keywords."""
    if data.materials == PAPER1_TRAINING:
        training = training_materials()
    else:
        training = tuple(get_phase_entry(name).name for name in data.materials)
    if data.blind == BLIND_REST:
        blind = blind_materials(training)
    else:
        blind = tuple(get_phase_entry(name).name for name in data.blind)
    return training, blind


def split_spec(data: DataConfig, split: str) -> SplitSpec:
    """The plan of ``split`` under ``data`` (see the module table)."""
    training, blind = resolve_materials(data)
    if split in ("train", "val"):
        per_lattice = data.patterns_per_lattice if split == "train" else data.val_patterns_per_lattice
        counts = _balanced_counts(training, per_lattice, data.material_weights)
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
                     weights: dict[str, float] | None = None) -> tuple[int, ...]:
    """Frames per phase such that every lattice present gets exactly ``per_lattice`` in all
    (the classes are balanced by construction), shared by its materials in proportion to
    their ``weights`` (default 1), rounded by largest remainder."""
    weights = {get_phase_entry(k).name: float(v) for k, v in (weights or {}).items()}
    by_lattice: dict[str, list[int]] = {}
    for i, name in enumerate(phases):
        by_lattice.setdefault(get_phase_entry(name).bravais_lattice, []).append(i)
    counts = [0] * len(phases)
    for members in by_lattice.values():
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
    settings = {
        "format": DATASET_FORMAT,
        "camera_block": CAMERA_BLOCK,
        "spec": asdict(spec),
        "frame_shape": list(data.frame_shape),
        "pattern_centre": list(data.pattern_centre),
        "sample_tilt": data.sample_tilt,
        "detector_tilt": data.detector_tilt,
        "voltage_kv": data.voltage_kv,
        "high_res_fraction": data.high_res_fraction,
        "shard_size": data.shard_size,
        "seed": data.seed,
        "masters": [
            master_pattern_cache_key(name, data.voltage_kv, half_size=data.master_half_size) for name in spec.phases
        ],
    }
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def shard_plans(data: DataConfig, spec: SplitSpec) -> list[ShardPlan]:
    """The split cut into shards of about ``shard_size`` frames, each holding every phase in
    proportion, with its own seed (data seed, split, shard index)."""
    total = sum(spec.counts) + spec.unusable
    n_shards = max(1, math.ceil(total / data.shard_size))
    geometry = EBSDGeometry(shape=tuple(data.frame_shape), pc=tuple(data.pattern_centre),
                            sample_tilt=data.sample_tilt, tilt=data.detector_tilt)
    split_id = zlib.crc32(spec.name.encode())
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
        ))
    return plans


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
    masters = {name: kinematical_master_pattern(name, data.voltage_kv, half_size=data.master_half_size)
               for name in spec.phases}
    sizes = []
    for index, plan in enumerate(tqdm(plans, desc=f"dataset {split}", unit="shard", disable=not progress)):
        path = folder / f"shard-{index:05d}.npz"
        if not path.is_file():
            _write_atomic(path, synthesize_shard(plan, masters))
        sizes.append(sum(plan.counts) + plan.unusable)
    record = {"split": asdict(spec), "shards": [f"shard-{i:05d}.npz" for i in range(len(plans))], "sizes": sizes}
    _write_text_atomic(manifest, json.dumps(record, indent=1))
    return folder


def load_split(data: DataConfig, split: str, progress: bool = True) -> Shard:
    """All frames and labels of a split in memory, generated first if not cached."""
    folder = build_split(data, split, progress)
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
