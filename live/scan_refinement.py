"""``diffstream refine``: a scan's orientations refined to a fraction of a degree, after the scan.

The live map shows the network's orientations, which for ``ebsd-lattice`` lie 10-16° from
the truth as a median and for ``sped-orientation`` near 45°: enough to watch grains appear,
not for texture or grain-boundary analysis. This reads the scan back (a recording, or any
pattern file ``replay`` reads), runs the model on every frame as the live map did (through
a :class:`~.map_assembler.MapAssembler`, so classes, confidence and orientations are the
live map's), and refines the points of each class that names a catalogue phase (or, asked
to, every point with a pattern against each phase named, keeping the best match):

- EBSD: against that phase's master pattern (kinematical, or an EMsoft dynamical one given
  per phase) at the scan's detector geometry, from the network's answer
  (:class:`~diffstream.trainer.physics.refinement.OrientationRefiner`, kikuchipy), about
  15-25 frames/s on 2 CPU cores. A model without an orientation output can be refined too
  (``--phases``): every frame then goes through the dictionary.
- 4D-STEM: by template matching at the scan's calibration, precession and direct-beam
  position, the network's answer among the candidates
  (:class:`~diffstream.trainer.physics.sped_indexing.SpedIndexer`), about 10 frames/s.

A large map takes hours either way; Ctrl-C (or SIGTERM) stops it after the batch in hand,
and the files hold the points refined by then.

The files (each written to a temporary name and renamed, as the live outputs are):

- ``refined.h5``: orix HDF5 ``CrystalMap`` (``orix.io.load``); one phase per refined
  catalogue phase with its real structure, every other point not indexed (-1); props
  ``refined`` (0/1, as orix stores no booleans), ``confidence`` (the live map's),
  ``received``, and the match: for EBSD ``ncc`` (the pattern match), ``matched`` (NCC ≥
  ``MIN_NCC``) and ``from_dictionary``; for 4D-STEM ``index`` (the template correlation),
  ``reliability`` (ASTAR's 0-100 scale), ``reliable`` (≥ ``MIN_RELIABILITY``) and ``ci``
  (the reliability over 100);
- ``refined.ang``: the same as EDAX TSL .ang (orix, MTEX, OIM), the NCC (EBSD) or the
  reliability over 100 (4D-STEM) as its CI column;
- ``refined_ipf_z.png`` and ``refined_ncc.png`` (EBSD) or ``refined_reliability.png``;
- ``refined.json``: points refined and trusted per phase, the rate, whether Ctrl-C cut it
  short and, given the simulator's ground truth, the median disorientation of the refined
  and of the network's orientations against it.
"""
from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import orix.io
from orix.crystal_map import CrystalMap, PhaseList
from orix.quaternion import Orientation, Rotation

from diffstream.engines.model_card import ModelCard
from diffstream.engines.registry import create_engine
from diffstream.trainer.physics.catalogue import get_phase_entry
from diffstream.trainer.physics.geometry import EBSDGeometry
from diffstream.trainer.physics.master_pattern import (
    MasterPattern,
    kinematical_master_pattern,
    load_emsoft_master_pattern,
)
from diffstream.trainer.physics.refinement import MIN_NCC, OrientationRefiner
from diffstream.trainer.physics.sped_geometry import SpedGeometry
from diffstream.trainer.physics.sped_indexing import MIN_RELIABILITY, SpedIndexer

from .decoder import decode_outputs
from .map_assembler import MapAssembler
from .map_images import save_confidence_png, save_ipf_png
from .map_outputs import write_files
from .replay import open_source
from .truth import Truth

FILE_NAMES = {"summary": "refined.json", "h5": "refined.h5", "ang": "refined.ang", "ipf_z": "refined_ipf_z.png"}
MATCH_FIGURES = {"ebsd": ("ncc", "refined_ncc.png"), "4dstem": ("reliability", "refined_reliability.png")}
"""Per kind, the prop mapped in the match figure and the figure's file name."""
DEFAULT_MODELS = {"ebsd": "ebsd-lattice", "4dstem": "sped-orientation"}
"""The shipped model a scan of each kind is mapped with when none is named."""
REFINE_BATCH = {"ebsd": 256, "4dstem": 64}
"""Frames refined per call, and between checks for Ctrl-C: about ten seconds of work."""


class RefineError(ValueError):
    """A source, model or phase list that refinement cannot use; the message says which."""


@dataclasses.dataclass
class ScanRefinement:
    """The refined scan, by scan index (row-major). ``phase_id`` indexes ``phases`` (-1: not
    refined); ``quaternions`` are orix's (w, x, y, z), refined where ``refined``, else the
    network's; ``network_quaternions`` the live map's."""

    kind: str
    scan_shape: tuple[int, int]
    phases: tuple[str, ...]
    phase_id: np.ndarray
    quaternions: np.ndarray
    network_quaternions: np.ndarray
    score: np.ndarray
    """The match a point keeps when refined against several phases: NCC (EBSD) or the
    template correlation index (4D-STEM)."""
    reliability: np.ndarray
    """4D-STEM: ASTAR's 0-100 reliability (EBSD: 0)."""
    from_dictionary: np.ndarray
    confidence: np.ndarray
    received: np.ndarray
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def refined(self) -> np.ndarray:
        return self.phase_id >= 0

    @property
    def trusted(self) -> np.ndarray:
        """Refined points whose answer the match vouches for: NCC ≥ ``MIN_NCC`` (EBSD),
        reliability ≥ ``MIN_RELIABILITY`` (4D-STEM)."""
        good = self.score >= MIN_NCC if self.kind == "ebsd" else self.reliability >= MIN_RELIABILITY
        return self.refined & good

    def to_crystal_map(self) -> CrystalMap:
        """The refined map in scan steps (a recording holds no step size)."""
        rows, cols = self.scan_shape
        y, x = np.mgrid[0:rows, 0:cols].astype(float)
        phases = [get_phase_entry(name).phase() for name in self.phases]
        return CrystalMap(
            rotations=Rotation(self.quaternions.astype(np.float64)), phase_id=self.phase_id.astype(np.int32),
            x=x.ravel(), y=y.ravel(), phase_list=PhaseList(phases=phases, ids=list(range(len(phases)))),
            prop={**self._match_props(),
                  "refined": self.refined.astype(np.uint8),
                  "confidence": self.confidence.astype(np.float32),
                  "received": self.received.astype(np.uint8)},
        )

    def _match_props(self) -> dict[str, np.ndarray]:
        score = np.where(self.refined, self.score, -1.0).astype(np.float32)
        trusted = self.trusted.astype(np.uint8)
        if self.kind == "ebsd":
            return {"ncc": score, "matched": trusted, "from_dictionary": self.from_dictionary.astype(np.uint8)}
        reliability = np.where(self.refined, self.reliability, 0.0).astype(np.float32)
        return {"index": score, "reliability": reliability, "reliable": trusted, "ci": reliability / 100}


def refine_targets(card: ModelCard,
                   phases: Sequence[tuple[str | None, str]] | None = None) -> dict[str, tuple[int, ...]]:
    """Catalogue phase → the indices of the classes whose points are refined against it.

    ``phases`` holds (class, phase) pairs; a class of None stands for every class, so each
    point with a pattern is refined against that phase too, and a point refined against
    several phases keeps its best match (the way to go where the network's classes cannot be
    trusted, as on dynamical patterns: docs/models.md). By default each class with
    orientations is refined against the class itself where it names a catalogue phase, else
    against the phase of that lattice whose orientation the model was trained on
    (``ebsd-lattice``: cF → Ni, cI → Fe, hP → Ti)."""
    names = [c.name for c in card.classes]
    if phases is None:
        by_lattice = {get_phase_entry(name).bravais_lattice: name for name in card.orientation_phases}
        phases = [(c.name, c.name if _is_phase(c.name) else by_lattice[c.name]) for c in card.classes
                  if c.orientation and (_is_phase(c.name) or c.name in by_lattice)]
    targets: dict[str, set[int]] = {}
    for class_name, phase in phases:
        if class_name is not None and class_name not in names:
            raise RefineError(f"phases: {card.name} has no class {class_name!r} (its classes: {', '.join(names)})")
        if not _is_phase(phase):
            raise RefineError(f"phases: {phase!r} is not a catalogue phase (see `diffstream phases`)")
        classes = range(len(names)) if class_name is None else [names.index(class_name)]
        targets.setdefault(get_phase_entry(phase).name, set()).update(classes)
    if not targets:
        raise RefineError(f"{card.name} gives no orientations to refine; name the phases with --phases")
    return {phase: tuple(sorted(classes)) for phase, classes in targets.items()}


class Matches(NamedTuple):
    """What refining a batch of frames against one phase gives, whatever the kind."""

    matrices: np.ndarray
    score: np.ndarray
    reliability: np.ndarray
    from_dictionary: np.ndarray


Matcher = Callable[[np.ndarray, np.ndarray], Matches]
"""(frames, the network's (N, 3, 3) orientations) → their refined orientations."""


def refine_scan(source: str | Path, model: str | Path | None = None, *,
                phases: Sequence[tuple[str | None, str]] | None = None,
                masters: Mapping[str, str | Path] | None = None, pc: tuple[float, float, float] | None = None,
                voltage_kv: float | None = None, progress: bool = True,
                stop: threading.Event | None = None) -> ScanRefinement:
    """Refine the first scan of ``source`` (module docstring) with ``model``'s answers as
    the starting points (by default those of ``DEFAULT_MODELS`` for the scan's kind);
    ``masters`` (phase → EMsoft master pattern file, EBSD) replaces the kinematical master
    pattern of a phase with a dynamical one, as real patterns want; ``pc`` (EBSD) and
    ``voltage_kv`` stand in for what the source does not say.
    Setting ``stop`` ends it after the batch in hand (``interrupted`` tells)."""
    stop = stop or threading.Event()
    scan = next(iter(open_source(source).scans()), None)
    if scan is None:
        raise RefineError(f"{source}: holds no scan")
    start = scan.start
    if start.kind not in REFINE_BATCH:
        raise RefineError(f"{source}: refine needs EBSD or 4D-STEM frames, got {start.kind}")
    engine = create_engine(model if model is not None else DEFAULT_MODELS[start.kind])
    card = engine.card
    if start.kind != card.kind:
        raise RefineError(f"{source}: refine needs EBSD or 4D-STEM frames and a model of the same kind, got "
                          f"{start.kind} frames and {card.name} ({card.kind})")
    if start.dtype != card.input_dtype and not np.can_cast(start.dtype, card.input_dtype, "safe"):
        raise RefineError(f"{source}: {start.dtype} frames; {card.name} takes {card.input_dtype}")
    targets = refine_targets(card, phases)
    phase_names = tuple(targets)
    if card.kind == "ebsd":
        matchers = _ebsd_matchers(phase_names, start.geometry, start.frame_shape, masters, pc, voltage_kv, source)
    else:
        if masters or pc is not None:
            raise RefineError(f"{source}: --master and --pc are for EBSD scans; this is a 4D-STEM scan")
        geometry = _sped_geometry(start.geometry, start.frame_shape, voltage_kv, source)
        matchers = {name: _sped_matcher(SpedIndexer(get_phase_entry(name).full_phase(), geometry))
                    for name in phase_names}
    assembler = MapAssembler(start.scan_shape, card.classes)
    result = _empty(card.kind, start.scan_shape, phase_names)
    batch = REFINE_BATCH[card.kind]
    began = time.perf_counter()
    bar = _progress_bar(start.n_frames, progress)
    try:
        for indices, frames in scan.chunks(stop):
            indices = np.asarray(indices, dtype=np.int64)
            if not len(indices):
                continue
            frames = np.asarray(frames, dtype=card.input_dtype)
            decoded = decode_outputs(engine.infer(frames), len(frames))
            assembler.place(indices, decoded.class_id, decoded.class_probability, decoded.usable,
                            decoded.rotation_matrices)
            guesses = (np.tile(np.eye(3), (len(frames), 1, 1)) if decoded.rotation_matrices is None
                       else decoded.rotation_matrices)
            class_id = _live_class_ids(assembler, indices)
            for first in range(0, len(indices), batch):
                if stop.is_set():
                    break
                part = slice(first, first + batch)
                _refine_batch(result, matchers, targets, indices[part], frames[part], class_id[part], guesses[part])
                bar.update(len(indices[part]))
            if stop.is_set():
                result.interrupted = True
                break
    finally:
        bar.close()
        engine.close()
    result.seconds = time.perf_counter() - began
    live = assembler.snapshot()
    result.received[:] = live.received.ravel()
    result.confidence[:] = live.confidence.ravel()
    result.network_quaternions[:] = live.quaternions.reshape(-1, 4)
    return result


def _live_class_ids(assembler: MapAssembler, indices: np.ndarray) -> np.ndarray:
    """The live map's class codes at ``indices``, copied from only the rows they span (a
    whole snapshot per chunk would copy the map once per chunk)."""
    cols = assembler.scan_shape[1]
    rows = assembler.snapshot_rows(int(indices.min()) // cols, int(indices.max()) // cols + 1)
    return rows.class_id.ravel()[indices - rows.first_row * cols]


def write_refinement(out_dir: str | Path, result: ScanRefinement, truth: Truth | None = None) -> dict[str, Path]:
    """Write the files of the module docstring into ``out_dir``; return their paths by key."""
    xmap = result.to_crystal_map()
    rows, cols = result.scan_shape
    title = f"refined: {rows}×{cols} scan, {int(result.refined.sum()):,} points refined"
    numbers = refinement_summary(result, truth)
    match_prop, match_figure = MATCH_FIGURES[result.kind]
    writers: dict[str, Callable[[Path], object]] = {
        "summary": lambda path: path.write_text(json.dumps(numbers, indent=2) + "\n"),
        "h5": lambda path: orix.io.save(path, xmap, overwrite=True),
        "ang": lambda path: orix.io.save(path, xmap, overwrite=True,
                                         confidence_index_prop="ncc" if result.kind == "ebsd" else "ci"),
        "ipf_z": lambda path: save_ipf_png(xmap, path, title, "z"),
        match_prop: lambda path: save_confidence_png(xmap, path, title, prop=match_prop),
    }
    return write_files(out_dir, {**FILE_NAMES, match_prop: match_figure}, writers)


def refinement_summary(result: ScanRefinement, truth: Truth | None = None) -> dict:
    """The numbers of ``refined.json``."""
    refined, trusted = result.refined, result.trusted
    per_phase = {}
    for index, name in enumerate(result.phases):
        mine = result.phase_id == index
        if result.kind == "ebsd":
            per_phase[name] = {"points": int(mine.sum()), "matched": int((mine & trusted).sum()),
                               "from_dictionary": int((mine & result.from_dictionary).sum()),
                               "median_ncc": _median(result.score[mine])}
        else:
            per_phase[name] = {"points": int(mine.sum()), "reliable": int((mine & trusted).sum()),
                               "median_index": _median(result.score[mine]),
                               "median_reliability": _median(result.reliability[mine])}
    threshold = {"min_ncc": MIN_NCC} if result.kind == "ebsd" else {"min_reliability": MIN_RELIABILITY}
    summary = {"kind": result.kind, "scan_size": {"rows": result.scan_shape[0], "cols": result.scan_shape[1]},
               "points_received": int(result.received.sum()), "points_refined": int(refined.sum()),
               "phases": per_phase, "seconds": round(result.seconds, 1),
               "frames_per_second": round(refined.sum() / result.seconds, 1) if result.seconds > 0 else None,
               "interrupted": result.interrupted, **threshold}
    if truth is not None:
        summary["truth"] = truth_comparison(result, truth)
    return summary


def truth_comparison(result: ScanRefinement, truth: Truth) -> dict:
    """Median disorientation against the ground truth over the refined points whose true
    phase is the one they were refined as: refined, and as the network gave them."""
    if truth.scan_shape != result.scan_shape:
        raise RefineError(f"{truth.path}: a {truth.scan_shape[0]}×{truth.scan_shape[1]} truth for a "
                          f"{result.scan_shape[0]}×{result.scan_shape[1]} scan")
    true_names = np.full(result.phase_id.shape, "", dtype=object)
    for phase_id, name in truth.phase_names.items():
        true_names[truth.phase_id.ravel() == phase_id] = name
    refined_angles, network_angles = [], []
    for index, name in enumerate(result.phases):
        mask = (result.phase_id == index) & (true_names == name)
        if not mask.any():
            continue
        laue = get_phase_entry(name).phase().point_group.laue
        expected = Orientation(truth.quaternions.reshape(-1, 4)[mask], symmetry=laue)
        for found, angles in ((result.quaternions, refined_angles), (result.network_quaternions, network_angles)):
            angles.append(expected.angle_with(Orientation(found[mask].astype(np.float64), symmetry=laue),
                                              degrees=True))
    compared = sum(len(a) for a in refined_angles)
    return {"points_compared": compared,
            "median_disorientation_deg": _median(np.concatenate(refined_angles)) if compared else None,
            "network_median_disorientation_deg": _median(np.concatenate(network_angles)) if compared else None}


def _refine_batch(result: ScanRefinement, matchers: Mapping[str, Matcher],
                  targets: Mapping[str, tuple[int, ...]], indices: np.ndarray, frames: np.ndarray,
                  class_id: np.ndarray, matrices: np.ndarray) -> None:
    """Refine the frames of one batch against each phase their class is refined against; a
    point refined against several keeps the best match."""
    for name, classes in targets.items():
        rows = np.flatnonzero(np.isin(class_id, classes))
        if not len(rows):
            continue
        found = matchers[name](frames[rows], matrices[rows])
        points = indices[rows]
        better = (result.phase_id[points] < 0) | (found.score > result.score[points])
        points = points[better]
        result.phase_id[points] = result.phases.index(name)
        result.quaternions[points] = Rotation.from_matrix(found.matrices[better]).data
        result.score[points] = found.score[better]
        result.reliability[points] = found.reliability[better]
        result.from_dictionary[points] = found.from_dictionary[better]


def _ebsd_matchers(phase_names: tuple[str, ...], header: Mapping, frame_shape: tuple[int, int],
                   masters: Mapping[str, str | Path] | None, pc: tuple[float, float, float] | None,
                   voltage_kv: float | None, source: str | Path) -> dict[str, Matcher]:
    """One master-pattern refiner per phase, at the scan's detector geometry."""
    geometry, voltage = _geometry(header, frame_shape, pc, voltage_kv, source)
    masters = {get_phase_entry(name).name if _is_phase(name) else name: path for name, path in (masters or {}).items()}
    unused = [name for name in masters if name not in phase_names]
    if unused:
        raise RefineError(f"master: {', '.join(unused)} is not among the phases refined ({', '.join(phase_names)})")

    def matcher(refiner: OrientationRefiner) -> Matcher:
        def match(frames: np.ndarray, guesses: np.ndarray) -> Matches:
            refined = refiner.refine(frames, guesses)
            return Matches(refined.matrices, refined.ncc, np.zeros(len(frames)), refined.from_dictionary)
        return match

    return {name: matcher(OrientationRefiner(_master(name, voltage, masters), geometry)) for name in phase_names}


def _sped_matcher(indexer: SpedIndexer) -> Matcher:
    def match(frames: np.ndarray, guesses: np.ndarray) -> Matches:
        indexed = indexer.index(frames, guesses)
        return Matches(indexed.matrices, indexed.index, indexed.reliability, np.zeros(len(frames), dtype=bool))
    return match


def _sped_geometry(header: Mapping, frame_shape: tuple[int, int], voltage_kv: float | None,
                   source: str | Path) -> SpedGeometry:
    """The 4D-STEM geometry of the scan_start ``header`` (keys of
    ``scan_render.sped_geometry_header``), ``voltage_kv`` taking precedence; the probe and
    precession default to ``SpedGeometry``'s where the header is silent."""
    voltage = voltage_kv if voltage_kv is not None else header.get("voltage_kv")
    if voltage is None:
        raise RefineError(f"{source}: gives no beam voltage; pass --voltage KV")
    if header.get("calibration") is None:
        raise RefineError(f"{source}: gives no calibration (Å⁻¹ per pixel) of its diffraction axes, which "
                          "template matching needs")
    beam = header.get("direct_beam_px")
    optional = {key: float(header[key]) for key in ("precession_deg", "semi_convergence_mrad") if key in header}
    return SpedGeometry(voltage_kv=float(voltage), calibration=float(header["calibration"]),
                        shape=tuple(frame_shape), direct_beam_px=None if beam is None else tuple(beam), **optional)


def _geometry(header: Mapping, frame_shape: tuple[int, int], pc: tuple[float, float, float] | None,
              voltage_kv: float | None, source: str | Path) -> tuple[EBSDGeometry, float]:
    """The EBSD detector geometry and beam voltage of the scan_start ``header`` (keys of
    ``scan_render.ebsd_geometry_header``), ``pc`` and ``voltage_kv`` taking precedence."""
    pc = pc if pc is not None else header.get("pc")
    voltage = voltage_kv if voltage_kv is not None else header.get("voltage_kv")
    for value, option, what in ((pc, "--pc X Y Z", "pattern centre"), (voltage, "--voltage KV", "beam voltage")):
        if value is None:
            raise RefineError(f"{source}: gives no {what}; pass {option}")
    geometry = EBSDGeometry(shape=tuple(frame_shape), pc=tuple(pc), sample_tilt=header.get("sample_tilt", 70.0),
                            tilt=header.get("detector_tilt", 0.0), azimuthal=header.get("azimuthal", 0.0),
                            twist=header.get("twist", 0.0))
    return geometry, float(voltage)


def _master(phase: str, voltage_kv: float, files: Mapping[str, str | Path]) -> MasterPattern:
    """The phase's master pattern: from its EMsoft file where ``files`` (by catalogue name)
    gives one, else kinematical."""
    path = files.get(phase)
    if path is None:
        return kinematical_master_pattern(phase, voltage_kv)
    return load_emsoft_master_pattern(path, voltage_kv)


def _empty(kind: str, scan_shape: tuple[int, int], phases: tuple[str, ...]) -> ScanRefinement:
    n = scan_shape[0] * scan_shape[1]
    identity = np.tile([1.0, 0.0, 0.0, 0.0], (n, 1))
    return ScanRefinement(kind=kind, scan_shape=tuple(scan_shape), phases=phases,
                          phase_id=np.full(n, -1, dtype=np.int32), quaternions=identity.copy(),
                          network_quaternions=identity.copy(), score=np.zeros(n, dtype=np.float32),
                          reliability=np.zeros(n, dtype=np.float32), from_dictionary=np.zeros(n, dtype=bool),
                          confidence=np.zeros(n, dtype=np.float32), received=np.zeros(n, dtype=bool))


def _is_phase(name: str) -> bool:
    from diffstream.trainer.physics.errors import PhysicsInputError

    try:
        get_phase_entry(name)
    except PhysicsInputError:
        return False
    return True


def _median(values: np.ndarray) -> float | None:
    return round(float(np.median(values)), 4) if len(values) else None


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", desc="refining", disable=not enabled, smoothing=0.1)
