"""``diffstream evaluate``: score a model file on fresh simulated frames, as the papers score
theirs, and optionally write a report (numbers as JSON, figures as PNG).

What is scored is the ONNX file itself, through ONNX Runtime (``export.onnx_session``), on
data regenerated from the training config stored in its card with the data seed moved by
``EVALUATION_SEED_OFFSET``: frames no training, validation or export test ever saw.

- EBSD lattice models (paper 1): accuracy over the training materials (``test``) or the
  blind ones (``--blind``), per-class precision and recall, the confusion matrix by class
  and with materials as rows (paper 1 Figs. 2-3), and the disorientation (mean, median,
  95th percentile) of the phases whose orientation was trained.
- 4D-STEM orientation models (paper 2): the disorientation statistics, and MAE, MSE and R²
  on Bunge Euler angles in degrees as paper 2 computes them (plain differences of the three
  angles, R² the mean over the angles of 1 − SS_res/SS_tot), against the labels in the
  Euler fundamental region, as an indexing program reports them. A symmetry-aware model may
  answer with any symmetry equivalent, so the scores are given for the prediction as it
  comes (``euler_raw``) and moved to the equivalent nearest the label (``euler``), which is
  what a label that respects symmetry would compare against.
- The dose study (``evaluate_dose``, EBSD lattice models): the same test set at a series of
  camera doses, each camera's gain raised to keep its mean level, so only the shot noise
  changes: accuracy and median disorientation as the dose drops.
- The voltage study (``evaluate_voltage``): the test or blind set at a series of beam
  voltages, which scale every band's width: whether the model has learnt lattices or its
  training materials' band widths.
- Refinement (``refine=True``): what diffstream's orientations reach when pattern matching
  finishes what the network starts. EBSD models with oriented phases: each frame's
  orientation refined against its phase's master pattern from the network's answer
  (``physics.refinement``). 4D-STEM models: each frame indexed by template matching
  (``physics.sped_indexing``), the network's answer among the candidates, scored as the
  network is, and again over the frames whose reliability reaches ``MIN_RELIABILITY``, as
  paper 2 kept only reliably indexed frames.
- The axial-ratio study (``evaluation_axial``): the hexagonal and tetragonal training
  materials with c stretched or shrunk: whether the model has learnt lattices or its
  training materials' exact band angles.
- Dynamical patterns (``evaluation_dynamical``): the same frames from EMsoft master pattern
  files beside the kinematical ones the models are trained on.
"""
from __future__ import annotations

import dataclasses
import time
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
from orix.quaternion import Rotation

from diffstream.engines.model_card import ModelCard, read_card
from diffstream.engines.registry import resolve_model

from .config import Config, DataConfig, parse_config
from .datasets import (
    HOLOHEDRY,
    ORDERED_SUPERSTRUCTURES,
    SPED_SPLIT,
    Shard,
    load_split,
    paper2_scores,
    score,
    split_spec,
    synthesize_shard,
)
from .datasets.sped_synthesis import sped_geometry
from .datasets.store import SplitSpec, ebsd_geometry, load_masters, shard_plans
from .datasets.synthesis import MasterSet
from .export import onnx_session, run_onnx
from .orientation import disorientation_deg, indexed_euler, laue_operators, nearest_operator, quaternions_to_matrices
from .physics.catalogue import get_phase_entry
from .physics.master_pattern import SIMULATION_HALF_SIZES, VOLTAGE_RANGE_KV
from .physics.refinement import OrientationRefiner
from .physics.sped_indexing import HALF_TURN, MIN_RELIABILITY, SpedIndexer

EVALUATION_SEED_OFFSET = 1000
"""Added to the config's data seed: the splits of a seed are disjoint draws, so seed + 1000
gives frames unrelated to any the model was trained, validated or tested on at export."""
DEFAULT_FRAMES = {"ebsd": 200, "4dstem": 1000}
"""Frames per material when ``--n`` is not given: a few thousand in all, seconds to simulate
and score on two CPU cores."""
DEFAULT_DOSES = (10.0, 30.0, 100.0, 300.0, 1000.0)
"""Electrons per pixel of the dose study: from below the training cameras' range (25-300 for
the fast camera, 500-4000 for the high-resolution one) to inside the high-resolution range."""
DEFAULT_VOLTAGES = (10.0, 15.0, 20.0, 25.0, 30.0)
"""Beam voltages (kV) of the voltage study: the range SEMs record EBSD patterns at."""


class Sweep(NamedTuple):
    """How a study is named and drawn: the condition it varies, the axis label (with unit),
    the axis scale and the figure's file name."""

    condition: str
    label: str
    scale: str
    figure: str


SWEEPS = {"dose": Sweep("dose", "dose (electrons per pixel)", "log", "dose.png"),
          "voltage_kv": Sweep("beam voltage", "beam voltage (kV)", "linear", "voltage.png"),
          "c_scale": Sweep("c scale", "c scale (a and b kept)", "linear", "axial.png")}
"""The studies, by the key of their rows (the varied condition)."""


class EvaluationError(ValueError):
    """A model or request that cannot be evaluated (the message says why)."""


@dataclasses.dataclass(frozen=True)
class EvaluatedModel:
    path: Path
    card: ModelCard
    config: Config


def load_for_evaluation(spec: str | Path) -> EvaluatedModel:
    """The model file (shipped name or path), its card and the training config in the card."""
    path = resolve_model(spec)
    card = read_card(path)
    text = card.training.get("config_text")
    if not text:
        raise EvaluationError(f"model {spec}: its card holds no training config, so its test data cannot be made")
    config = parse_config(tomllib.loads(text), text, quick=bool(card.training.get("quick")), origin=f"{path} card")
    return EvaluatedModel(path, card, config)


def evaluate_model(spec: str | Path, blind: bool = False, frames: int | None = None, refine: bool = False,
                   patterns: str | None = None) -> dict:
    """The scores of ``spec`` on fresh frames (module docstring); ``frames`` per material
    (default ``DEFAULT_FRAMES``); for a 4D-STEM model they are the 20 % test share of
    5 × ``frames`` patterns, the split of its training set. ``refine`` adds the oriented
    phases' disorientation after refinement against their master patterns. ``patterns``
    (EBSD; one of ``SIMULATIONS``) projects the frames from that kind of master pattern at
    its default half size, the frames the demo streams, whatever the model was trained on:
    a network trained on one kind fails on the other."""
    model = load_for_evaluation(spec)
    n = DEFAULT_FRAMES.get(model.card.kind, 1) if frames is None else frames
    if n < 1:
        raise EvaluationError(f"n: frames must be a positive integer, got {n}")
    if patterns is not None:
        _check_patterns(model, patterns)
    if refine:
        _check_refinable(model, blind)
    if model.card.kind == "4dstem":
        if blind:
            raise EvaluationError(f"--blind: {model.card.name} is a 4D-STEM orientation model of "
                                  f"{', '.join(model.card.class_names)}; it has no blind materials")
        data = dataclasses.replace(model.config.data, seed=model.config.data.seed + EVALUATION_SEED_OFFSET,
                                   patterns=round(n / SPED_SPLIT["test"]))
        result = evaluate_sped(model.path, data, "test", refine=refine)
    elif model.card.kind == "ebsd":
        data = dataclasses.replace(model.config.data, seed=model.config.data.seed + EVALUATION_SEED_OFFSET,
                                   test_patterns_per_phase=n)
        if patterns is not None:
            data = dataclasses.replace(data, master_simulation=patterns,
                                       master_half_size=SIMULATION_HALF_SIZES[patterns])
        result = evaluate_lattice(model, data, "blind" if blind else "test", refine=refine)
        result["patterns"] = data.master_simulation
    else:
        raise EvaluationError(f"model {spec}: kind {model.card.kind!r} has no evaluation")
    if data.source == "folder":  # an imported set: its own held-out test split, not fresh frames
        result["data_folder"] = data.folder
    return {"model": model.card.name, "file": str(model.path), "kind": model.card.kind,
            "data_seed": data.seed, **result}


def evaluate_dose(spec: str | Path, doses: tuple[float, ...] = DEFAULT_DOSES, frames: int | None = None) -> dict:
    """An EBSD lattice model's accuracy and median disorientation as the camera dose drops:
    the test set of ``evaluate_model`` made again at each of ``doses`` (electrons per pixel,
    every camera's gain raised to keep its mean level), ``frames`` per material. The
    orientations and pattern centres are the same at every dose; the cameras are drawn from
    the same distribution (their noise draws depend on the dose)."""
    if not doses or min(doses) <= 0:
        raise EvaluationError(f"doses: need positive electrons per pixel, got {', '.join(map(str, doses))}")
    return lattice_sweep(spec, "dose", doses, frames, "test",
                         lambda data, dose: simulate_split(data, "test", dose=dose))


def evaluate_voltage(spec: str | Path, voltages: tuple[float, ...] = DEFAULT_VOLTAGES, frames: int | None = None,
                     blind: bool = False) -> dict:
    """An EBSD lattice model's accuracy and median disorientation across beam voltages: the
    test (or ``blind``) set made again from master patterns at each of ``voltages`` (kV), the
    same orientations, pattern centres and cameras at every voltage. Band widths scale with
    the electron wavelength, so a voltage the model was not trained at shows whether it has
    learnt a lattice or its training materials' exact band widths."""
    low, high = VOLTAGE_RANGE_KV
    if not voltages or not all(low <= kv <= high for kv in voltages):
        raise EvaluationError(f"voltages: need beam voltages in [{low:g}, {high:g}] kV, "
                              f"got {', '.join(map(str, voltages))}")
    split = "blind" if blind else "test"
    return lattice_sweep(spec, "voltage_kv", voltages, frames, split,
                         lambda data, kv: simulate_split(dataclasses.replace(data, voltage_kv=kv), split))


def lattice_sweep(spec: str | Path, variable: str, values: tuple[float, ...], frames: int | None, split: str,
                  make_split: Callable[[DataConfig, float], Shard]) -> dict:
    """Score ``split`` of an EBSD lattice model's evaluation data made by ``make_split`` at
    each of ``values``: the rows of a dose, voltage or axial-ratio study (``SWEEPS``)."""
    model = load_for_evaluation(spec)
    if model.card.kind != "ebsd":
        raise EvaluationError(f"{variable}: the {SWEEPS[variable].condition} study is for EBSD lattice models; "
                              f"{model.card.name} is {model.card.kind!r}")
    n = DEFAULT_FRAMES["ebsd"] if frames is None else frames
    if n < 1:
        raise EvaluationError(f"n: frames must be a positive integer, got {n}")
    data = dataclasses.replace(model.config.data, seed=model.config.data.seed + EVALUATION_SEED_OFFSET,
                               test_patterns_per_phase=n)
    rows = []
    for value in values:
        result = lattice_scores(model, make_split(data, float(value)), split)
        row = {variable: float(value), "frames": result["frames"], "accuracy": result["accuracy"],
               "per_material_accuracy": result["per_material_accuracy"],
               "median_disorientation_deg": {name: stats["median"]
                                             for name, stats in result["disorientation_deg"].items()}}
        if "accuracy_without_ordered_superstructures" in result:
            row["accuracy_without_ordered_superstructures"] = result["accuracy_without_ordered_superstructures"]
        rows.append(row)
    return {"model": model.card.name, "file": str(model.path), "kind": model.card.kind, "split": split,
            "data_seed": data.seed, "frames_per_material": n, "sweep": variable, "rows": rows}


def simulate_split(data: DataConfig, split: str, dose: float | None = None) -> Shard:
    """``split`` of ``data`` made in memory (not cached), every camera at ``dose`` if given."""
    spec = split_spec(data, split)
    return synthesize_in_memory(data, spec, load_masters(data, spec), dose)


def synthesize_in_memory(data: DataConfig, spec: SplitSpec, masters: MasterSet,
                         dose: float | None = None) -> Shard:
    """The frames of ``spec`` projected from ``masters`` as one shard, every camera at
    ``dose`` if given."""
    shards = [synthesize_shard(dataclasses.replace(plan, dose=dose), masters) for plan in shard_plans(data, spec)]
    return Shard(**{key: np.concatenate([s.arrays()[key] for s in shards]) for key in shards[0].arrays()})


def evaluate_lattice(model: EvaluatedModel, data: DataConfig, split: str, refine: bool = False) -> dict:
    """Scores of an EBSD lattice model on ``split`` of ``data``, with ``refine`` also after
    refinement (``refined_scores``)."""
    shard = load_split(data, split, progress=False)
    result = lattice_scores(model, shard, split)
    if refine:
        result["refined_disorientation_deg"] = refined_scores(model, data, shard, split)
    return result


def refined_scores(model: EvaluatedModel, data: DataConfig, shard: Shard, split: str) -> dict:
    """Per oriented phase: the disorientation statistics of the refined orientations
    (``physics.refinement``, from the model's own answers, each frame at its own pattern
    centre, the dictionary at the nominal one), the share of frames matched (NCC ≥
    ``MIN_NCC``), the share whose answer came from the dictionary, and the refinement's rate
    on this machine."""
    session = onnx_session(model.path)
    masters = load_masters(data, split_spec(data, split))
    simulation, = data.simulations()
    geometry = ebsd_geometry(data)
    scores = {}
    for name in model.card.orientation_phases:
        rows = np.flatnonzero(shard.usable & (shard.phase == name))
        if not len(rows):
            continue
        _, rotations, _ = run_onnx(session, shard.frames[rows])
        start = time.perf_counter()
        refiner = OrientationRefiner(masters[name, data.voltage_kv, simulation], geometry)
        refined = refiner.refine(shard.frames[rows], rotations, shard.pc[rows])
        seconds = time.perf_counter() - start
        scores[name] = {**disorientation_stats(refined.matrices, shard.quaternions[rows],
                                               get_phase_entry(name).point_group),
                        "matched": _mean(refined.matched()), "from_dictionary": _mean(refined.from_dictionary),
                        "frames_per_second": round(len(rows) / seconds, 1)}
    return scores


def indexed_scores(data: DataConfig, shard: Shard, rotations: np.ndarray) -> dict:
    """Per 4D-STEM phase: the disorientation and paper 2's Euler scores of the orientations
    template matching gives (``physics.sped_indexing``, the network's answers among the
    candidates), the share of frames whose reliability reaches ``MIN_RELIABILITY`` with their
    own disorientation statistics, and the rate on this machine, the template bank included."""
    geometry = sped_geometry(tuple(data.frame_shape), data.voltage_kv)
    scores = {}
    for name in dict.fromkeys(shard.phase[shard.usable].tolist()):
        rows = np.flatnonzero(shard.usable & (shard.phase == name))
        entry = get_phase_entry(name)
        start = time.perf_counter()
        indexed = SpedIndexer(entry.full_phase(), geometry).index(shard.frames[rows], guesses=rotations[rows])
        seconds = time.perf_counter() - start
        truth = shard.quaternions[rows]
        kept = indexed.reliable()
        scores[name] = {**_orientation_scores(indexed.matrices, truth, entry.point_group),
                        "frames_per_second": round(len(rows) / seconds, 1),
                        "reliable": {"share": _mean(kept), "min_reliability": MIN_RELIABILITY,
                                     **(_orientation_scores(indexed.matrices[kept], truth[kept], entry.point_group)
                                        if kept.any() else {"frames": 0})}}
    return scores


def _orientation_scores(predicted: np.ndarray, quaternions: np.ndarray, point_group: str) -> dict:
    """The disorientation statistics and paper 2's Euler scores of one set of answers."""
    return {**disorientation_stats(predicted, quaternions, point_group),
            **euler_scores(predicted, quaternions, point_group)}


def _check_patterns(model: EvaluatedModel, patterns: str) -> None:
    """Frames from another kind of master pattern need an EBSD model trained on simulated ones."""
    name = model.card.name
    if patterns not in SIMULATION_HALF_SIZES:
        raise EvaluationError(f"--patterns: must be one of {', '.join(SIMULATION_HALF_SIZES)}, got {patterns!r}")
    if model.card.kind != "ebsd":
        raise EvaluationError(f"--patterns: {name} is not an EBSD model; master patterns make EBSD frames")
    if model.config.data.source != "simulated":
        raise EvaluationError(f"--patterns: {name} was trained on imported frames, not master patterns")


def _check_refinable(model: EvaluatedModel, blind: bool) -> None:
    """Refinement needs simulated frames of phases the model orients."""
    name = model.card.name
    if not model.card.orientation_phases:
        raise EvaluationError(f"--refine: {name} gives no orientations to refine")
    if model.config.data.source == "folder":
        raise EvaluationError(f"--refine: {name} was trained on imported frames, which have no simulated "
                              "patterns to refine against")
    if len(simulations := model.config.data.simulations()) > 1:
        raise EvaluationError(f"--refine: {name}'s frames come from {' and '.join(simulations)} master patterns; "
                              "refinement matches a frame against one of them")
    if blind:
        raise EvaluationError(f"--refine: the phases {name} orients ({', '.join(model.card.orientation_phases)}) are "
                              "test materials; leave out --blind")


def lattice_scores(model: EvaluatedModel, shard: Shard, split: str) -> dict:
    """Scores of an EBSD lattice model on the frames of ``shard``, a ``split``."""
    probabilities, rotations, confidence = run_onnx(onnx_session(model.path), shard.frames)
    classes = tuple(model.card.class_names)
    oriented = model.card.orientation_phases
    base = score(shard, probabilities, classes=classes)
    usable = shard.usable
    predicted = probabilities.argmax(axis=1)
    confusion = np.array(base["confusion"])
    materials = list(dict.fromkeys(shard.phase[usable].tolist()))
    by_material = np.zeros((len(materials), len(classes)), dtype=np.int64)
    np.add.at(by_material, ([materials.index(p) for p in shard.phase[usable]], predicted[usable]), 1)
    result = {
        "split": split,
        "frames": int(usable.sum()),
        "accuracy": base["lattice_accuracy"],
        "per_material_accuracy": base["per_material"],
        "per_class": precision_recall(confusion, classes),
        "classes": list(classes),
        "confusion": confusion.tolist(),
        "materials": materials,
        "confusion_by_material": by_material.tolist(),
    }
    if model.config.data.labels == "lattice":
        result["lattice_system_accuracy"] = lattice_system_accuracy(confusion, classes)
    if split == "blind" and model.config.data.labels == "lattice":
        keep = usable & ~np.isin(shard.phase, ORDERED_SUPERSTRUCTURES)
        result["accuracy_without_ordered_superstructures"] = _mean(predicted[keep] == shard.lattice[keep])
    result["disorientation_deg"] = {
        name: disorientation_stats(rotations[rows], shard.quaternions[rows], get_phase_entry(name).point_group)
        for name in oriented if len(rows := np.flatnonzero(usable & (shard.phase == name)))
    }
    return result


def evaluate_sped(path: str | Path, data: DataConfig, split: str, refine: bool = False) -> dict:
    """Scores of a 4D-STEM orientation model on ``split`` of ``data`` (its frames with a
    pattern; those without score the confidence), with ``refine`` also after template
    matching (``indexed_scores``)."""
    shard = load_split(data, split, progress=False)
    _, rotations, confidence = run_onnx(onnx_session(path), shard.frames)
    usable = shard.usable
    result: dict = {"split": split, "frames": int(usable.sum()), "frames_without_pattern": int((~usable).sum())}
    per_phase = {}
    for name in dict.fromkeys(shard.phase[usable].tolist()):
        rows = np.flatnonzero(usable & (shard.phase == name))
        group = get_phase_entry(name).point_group
        per_phase[name] = {**_orientation_scores(rotations[rows], shard.quaternions[rows], group),
                           "half_turn": half_turn_stats(rotations[rows], shard.quaternions[rows], group)}
    first = per_phase[next(iter(per_phase))]
    result.update({
        "median_disorientation_deg": first["median"],
        "mean_disorientation_deg": first["mean"],
        "p95_disorientation_deg": first["p95"],
        "within_10deg": first["within_10deg"],
        "half_turn": first["half_turn"],
        "euler": first["euler"],
        "euler_raw": first["euler_raw"],
        "per_phase": per_phase,
    })
    if usable.any() and (~usable).any():
        result["confidence_accuracy"] = _mean((confidence > 0.5) == usable)
    if refine:
        result["refined_disorientation_deg"] = indexed_scores(data, shard, rotations)
    return result


def precision_recall(confusion: np.ndarray, classes: tuple[str, ...]) -> dict[str, dict]:
    """Per class: precision (of the frames called it, the share that are it), recall (of the
    frames that are it, the share called it) and its frame count; classes absent from both
    rows and columns are left out."""
    out = {}
    for k, name in enumerate(classes):
        called, true = int(confusion[:, k].sum()), int(confusion[k].sum())
        if called or true:
            out[name] = {"precision": round(confusion[k, k] / called, 4) if called else None,
                         "recall": round(confusion[k, k] / true, 4) if true else None, "frames": true}
    return out


def lattice_system_accuracy(confusion: np.ndarray, classes: tuple[str, ...]) -> float:
    """Share of the frames whose predicted lattice lies in the true one's lattice system
    (cubic, hexagonal, rhombohedral, tetragonal, orthorhombic, monoclinic, triclinic: the
    lattices of one holohedry). On blind materials most errors only mistake the centring
    (bcc W called cF, B2 NiAl called cI), so this says how far the lattice map can be
    trusted when the exact lattice cannot."""
    holohedry = np.array([HOLOHEDRY[name] for name in classes])
    same_system = holohedry[:, None] == holohedry[None, :]
    total = confusion.sum()
    return round(float(confusion[same_system].sum() / total), 4) if total else float("nan")


def disorientation_stats(predicted: np.ndarray, quaternions: np.ndarray, point_group: str) -> dict:
    """Mean, median and 95th percentile of the disorientation (degrees) under the Laue group,
    and the share of frames within 10°: a network that gets a fifth of its frames right
    and guesses the rest has the median of a random one, so the median alone hides it."""
    angles = disorientation_deg(predicted, quaternions_to_matrices(quaternions), laue_operators(point_group))
    return {"mean": round(float(angles.mean()), 3), "median": round(float(np.median(angles)), 3),
            "p95": round(float(np.percentile(angles, 95)), 3), "within_10deg": _mean(angles < 10.0),
            "frames": int(len(angles))}


def half_turn_stats(predicted: np.ndarray, quaternions: np.ndarray, point_group: str) -> dict:
    """How a SPED network's error splits: the median disorientation and the share within 10°
    counting the orientation turned by 180° about the beam as right too (within the
    zero-order Laue zone its pattern equals the truth's, by Friedel's law), the share of the
    frames so counted within 10° that are on that twin, and the median angle between the
    predicted and true beam directions in the crystal, up to symmetry, which the half turn
    leaves in place."""
    truth = quaternions_to_matrices(quaternions)
    operators = laue_operators(point_group)
    plain = disorientation_deg(predicted, truth, operators)
    counted = np.minimum(plain, disorientation_deg(predicted, truth @ HALF_TURN, operators))
    near = counted < 10.0
    beam = np.einsum("kij,nj->nki", operators, truth[:, :, 2])  # symmetry equivalents of the beam direction
    cosine = np.abs(np.einsum("nki,ni->nk", beam, np.asarray(predicted)[:, :, 2])).max(axis=1)
    beam_deg = np.degrees(np.arccos(np.clip(cosine, 0.0, 1.0)))
    return {"median": round(float(np.median(counted)), 3), "within_10deg": _mean(near),
            "on_twin": _mean(plain[near] >= 10.0) if near.any() else None,
            "beam_direction_median_deg": round(float(np.median(beam_deg)), 3)}


def equivalent_switches(predicted: np.ndarray, quaternions: np.ndarray, grain_id: np.ndarray,
                        point_group: str) -> float:
    """Share of a specimen's points (grain id ≥ 0) whose prediction lies nearest another
    symmetry equivalent of their grain's orientation than most of that grain's points do:
    paper 2's "alternating predictions inside grains" as one number. It is 0 for a network
    that answers each grain with one equivalent, whichever it picks, however accurate."""
    grain_id = np.asarray(grain_id).ravel()
    inside = grain_id >= 0
    if not inside.any():
        return 0.0
    operators = laue_operators(point_group)
    truth = quaternions_to_matrices(np.asarray(quaternions).reshape(-1, 4)[inside])
    nearest = nearest_operator(np.asarray(predicted)[inside], truth, operators)
    grains = grain_id[inside]
    votes = np.zeros((grains.max() + 1, len(operators)), dtype=np.int64)
    np.add.at(votes, (grains, nearest), 1)
    return round(float(np.mean(nearest != votes.argmax(axis=1)[grains])), 4)


def euler_scores(predicted: np.ndarray, quaternions: np.ndarray, point_group: str) -> dict:
    """Paper 2's MAE, MSE and R² on Bunge Euler angles (degrees) against the label as an
    indexing program reports it (``orientation.indexed_euler``), of the prediction as it is
    (``euler_raw``) and moved to its symmetry equivalent nearest the label (``euler``)."""
    indexed = indexed_euler(quaternions, point_group)
    truth = Rotation.from_euler(indexed).to_matrix().reshape(-1, 3, 3)
    predicted = np.asarray(predicted, dtype=np.float64)
    operators = laue_operators(point_group)
    # P ≈ S·T for the best S; Sᵀ·P is then the prediction's equivalent nearest the label T.
    nearest = np.einsum("nik,nij->nkj", operators[nearest_operator(predicted, truth, operators)], predicted)
    target = np.degrees(indexed)
    return {"euler": paper2_scores(_euler_deg(nearest), target),
            "euler_raw": paper2_scores(_euler_deg(predicted), target)}


def _euler_deg(matrices: np.ndarray) -> np.ndarray:
    return Rotation.from_matrix(matrices).to_euler(degrees=True)


def _mean(values: np.ndarray) -> float:
    return round(float(np.mean(values)), 4) if len(values) else float("nan")
