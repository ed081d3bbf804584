"""A training set from a user's own experiment: indexed patterns become labelled shards.

Paper 2 trained on its own scan: patterns labelled with the orientations template matching
gave them, kept where the match was good (Q ≥ 20 and R ≥ 15). ``import_labelled`` does the
same with any pattern file replay opens (kikuchipy's and rosettasciio's formats, or a
diffstream recording) and the orientation map of the same scan that orix reads (.ang,
orix HDF5; orix names the .ang columns ``iq``, ``ci``, ``detector_signal``, ``fit``):

- points are kept where they are indexed and every ``--min`` / ``--max`` threshold on a
  named property of the map holds;
- each phase becomes its Bravais lattice, from the catalogue where the phase is known there,
  otherwise from the user's mapping (``--phase NAME=CLASS``);
- the kept points are split at random, from ``seed``, 60/20/20 into train, val and test
  (paper 2's split) and written as the shards the trainer reads (``store.write_split``), so
  ``data.source = "folder"`` trains or fine-tunes on them.

Frames keep their values when they are uint8 (what the stream carries); other dtypes are
scaled linearly from the file's range onto 0-255 (the networks standardise each pattern, so
a linear scale changes nothing they see).
"""
from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Sequence
from io import StringIO
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from diffstream.trainer.physics.catalogue import get_phase_entry
from diffstream.trainer.physics.errors import PhysicsInputError

from .lattices import LATTICES
from .store import sped_split_sizes, write_split
from .synthesis import Shard

if TYPE_CHECKING:
    from orix.crystal_map import CrystalMap

UINT8_MAX = 255


class LabelledDataError(ValueError):
    """Files or options that cannot make a training set (the message names the file)."""


def parse_assignments(items: Sequence[str], option: str, number: bool) -> dict:
    """``["ci=0.1", ...]`` as ``{"ci": 0.1}`` (``number``) or ``{"Ni": "cF"}``; anything else
    is a one-line error naming ``option``."""
    out: dict = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise LabelledDataError(f"{option}: expected NAME=VALUE, got {item!r}")
        try:
            out[name.strip()] = float(value) if number else value.strip()
        except ValueError:
            raise LabelledDataError(f"{option}: {item!r}: {value!r} is not a number") from None
    return out


def import_labelled(patterns: str | Path, orientations: str | Path, out: str | Path,
                    minimum: dict[str, float] | None = None, maximum: dict[str, float] | None = None,
                    phases: dict[str, str] | None = None, seed: int = 0, shard_size: int = 4096) -> dict:
    """Write ``out``/train, val and test from ``patterns`` labelled by ``orientations``
    (module docstring); returns a summary (also written to ``out``/import.json)."""
    patterns, orientations, out = Path(patterns), Path(orientations), Path(out)
    frames, pc = read_patterns(patterns)
    xmap = read_orientations(orientations)
    if _squeeze(frames.shape[:2]) != _squeeze(xmap.shape) or frames.shape[0] * frames.shape[1] != xmap.size:
        raise LabelledDataError(f"{patterns} holds a {frames.shape[0]}×{frames.shape[1]} scan, {orientations} a "
                                f"{'×'.join(map(str, xmap.shape))} map: they must be the same scan")
    keep = xmap.phase_id >= 0
    for bounds, passes in ((minimum or {}, np.greater_equal), (maximum or {}, np.less_equal)):
        for name, bound in bounds.items():
            if name not in xmap.prop:
                raise LabelledDataError(f"{orientations}: no property {name!r} to threshold (it has "
                                        f"{', '.join(sorted(xmap.prop)) or 'none'})")
            keep &= passes(np.asarray(xmap.prop[name]).reshape(-1), bound)
    labels = phase_labels(xmap, phases or {}, orientations)
    rows = np.flatnonzero(keep)
    sizes = sped_split_sizes(len(rows))
    if min(sizes.values()) < 1:
        raise LabelledDataError(f"{orientations}: {len(rows)} of {xmap.size} points pass the thresholds; "
                                "train, val and test need one each at least")
    ids = xmap.phase_id.reshape(-1)[rows]
    names = np.array([labels[i][0] for i in ids])
    shard = Shard(frames=frames.reshape(-1, *frames.shape[2:])[rows],
                  lattice=np.array([labels[i][1] for i in ids], dtype=np.int8),
                  quaternions=xmap.rotations.data.reshape(xmap.size, -1)[rows, :4].astype(np.float64),
                  phase=names, usable=np.ones(len(rows), dtype=bool), pc=np.tile(pc, (len(rows), 1)))
    order = np.random.default_rng(seed).permutation(len(rows))
    source = {"patterns": str(patterns), "orientations": str(orientations), "min": minimum or {},
              "max": maximum or {}, "phases": phases or {}, "seed": seed}
    per_class = np.bincount(shard.lattice, minlength=len(LATTICES))
    summary = {"folder": str(out), "points": int(xmap.size), "kept": int(len(rows)), "splits": {},
               "per_class": {LATTICES[k]: int(n) for k, n in enumerate(per_class) if n},
               "per_phase": {name: int((names == name).sum()) for name in dict.fromkeys(names.tolist())},
               "frame_shape": list(frames.shape[2:]), **source}
    first = 0
    for split, size in sizes.items():
        picked = np.sort(order[first:first + size])
        first += size
        part = Shard(**{key: value[picked] for key, value in shard.arrays().items()})
        write_split(out / split, part, shard_size, source)
        summary["splits"][split] = len(part)
    (out / "import.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary


def read_patterns(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The frames of the one scan in ``path`` as (rows, cols, h, w) uint8 and its pattern
    centre (Bruker; NaN where the file gives none), read as replay reads files."""
    from diffstream.live.replay import open_source

    scans = list(open_source(path).scans())
    if len(scans) != 1:
        raise LabelledDataError(f"{path}: holds {len(scans)} scans; import one scan at a time")
    start = scans[0].start
    frames = np.zeros((start.n_frames, *start.frame_shape), dtype=start.dtype)
    for index, block in scans[0].chunks(threading.Event()):
        frames[np.asarray(index)] = block
    return _as_uint8(frames).reshape(*start.scan_shape, *start.frame_shape), np.array(
        start.geometry.get("pc", [np.nan] * 3), dtype=np.float64)


def read_orientations(path: Path) -> CrystalMap:
    """The orientation map in ``path`` (any format orix reads)."""
    from orix import io

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with contextlib.redirect_stdout(StringIO()):  # orix prints what it guesses about phase names
            return io.load(path)
    except Exception as error:  # orix raises anything on files it cannot parse
        reason = (str(error).strip() or type(error).__name__).splitlines()[0]
        raise LabelledDataError(f"{path}: not an orientation map orix reads ({reason})") from None


def phase_labels(xmap: CrystalMap, mapping: dict[str, str], where: Path) -> dict[int, tuple[str, int]]:
    """Phase id → (name, lattice class index): the user's ``mapping`` (NAME=CLASS, matched
    ignoring case) first, then the catalogue; the name is the catalogue's where known, so
    ``data.orientation_phases`` can name it."""
    given = {name.lower(): cls for name, cls in mapping.items()}
    for name, cls in mapping.items():
        if cls not in LATTICES:
            raise LabelledDataError(f"--phase {name}={cls}: the class must be a Bravais lattice "
                                    f"({', '.join(LATTICES)})")
    labels = {}
    for phase_id, phase in xmap.phases:
        if phase_id < 0:
            continue
        try:
            entry = get_phase_entry(phase.name)
        except PhysicsInputError:
            entry = None
        if phase.name.lower() in given:
            labels[phase_id] = (entry.name if entry else phase.name, LATTICES.index(given[phase.name.lower()]))
        elif entry is not None:
            labels[phase_id] = (entry.name, LATTICES.index(entry.bravais_lattice))
        else:
            raise LabelledDataError(f"{where}: phase {phase.name!r} is not in the catalogue; say its lattice with "
                                    f"--phase {phase.name}=CLASS ({', '.join(LATTICES)})")
    return labels


def _as_uint8(frames: np.ndarray) -> np.ndarray:
    if frames.dtype == np.uint8:
        return frames
    low, high = float(frames.min()), float(frames.max())
    scaled = (frames.astype(np.float64) - low) * (UINT8_MAX / (high - low) if high > low else 0.0)
    return np.rint(scaled).astype(np.uint8)


def _squeeze(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(n for n in shape if n != 1)
