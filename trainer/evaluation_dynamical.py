"""``diffstream evaluate --master PHASE=FILE``: an EBSD lattice model on frames projected from
dynamical (EMsoft) master patterns, beside the same frames from the master patterns it was
trained on (kinematical, the package's own Bloch-wave ones, or both: ``data.master_simulation``).

Why: real patterns are dynamical. Their zone axes are subdued and their bands sharp-edged,
where kinematical bands add up into bright zone-axis blobs; the model shipped on 2026-12-05,
trained on kinematical master patterns, classes none of 200 frames of kikuchipy's dynamical
Ni master pattern cF. Every row uses the same orientations, pattern centres and cameras
(the same shard plans), so the differences between rows are the master patterns alone.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from .config import DataConfig
from .datasets import split_spec
from .datasets.store import SplitSpec, load_masters
from .evaluation import (
    DEFAULT_FRAMES,
    EVALUATION_SEED_OFFSET,
    EvaluationError,
    lattice_scores,
    load_for_evaluation,
    synthesize_in_memory,
)
from .physics.catalogue import get_phase_entry
from .physics.errors import PhysicsInputError
from .physics.master_pattern import load_emsoft_master_pattern


def evaluate_dynamical(spec: str | Path, files: dict[str, Path], frames: int | None = None) -> dict:
    """Scores of ``spec`` on ``frames`` fresh frames of each phase of ``files`` (name → EMsoft
    master pattern file at the model's voltage), once from each kind of master pattern the
    model was trained on and once from the files: accuracy, how each phase's frames were classed, and the oriented
    phases' disorientation. The phases must all be training (test) or all blind materials."""
    model = load_for_evaluation(spec)
    if model.card.kind != "ebsd":
        raise EvaluationError(f"--master: {model.card.name} is not an EBSD lattice model")
    if model.config.data.source != "simulated":
        raise EvaluationError(f"--master: {model.card.name} was trained on imported frames, not master patterns")
    n = DEFAULT_FRAMES["ebsd"] if frames is None else frames
    if n < 1:
        raise EvaluationError(f"n: frames must be a positive integer, got {n}")
    data = dataclasses.replace(model.config.data, seed=model.config.data.seed + EVALUATION_SEED_OFFSET,
                               test_patterns_per_phase=n)
    names = tuple(get_phase_entry(name).name for name in files)
    split, restricted = _split_of(data, names)
    try:
        emsoft = {(name, data.voltage_kv, "dynamical"): load_emsoft_master_pattern(path, data.voltage_kv)
                  for name, path in zip(names, files.values())}
    except PhysicsInputError as error:
        raise EvaluationError(f"master: {error}") from None
    for (name, _, _), master in emsoft.items():
        expected, held = get_phase_entry(name).phase().space_group, master.phase.space_group
        if held is not None and held.number != expected.number:
            raise EvaluationError(f"master: {master.source} holds space group {held.short_name} "
                                  f"(No. {held.number}); {name} is {expected.short_name} (No. {expected.number})")
    rows = []
    for label in (*data.simulations(), "EMsoft"):
        one = dataclasses.replace(data, master_simulation="dynamical" if label == "EMsoft" else label)
        masters = emsoft if label == "EMsoft" else load_masters(one, restricted)
        scores = lattice_scores(model, synthesize_in_memory(one, restricted, masters), split)
        rows.append({"master": label, "frames": scores["frames"], "accuracy": scores["accuracy"],
                     "per_material_accuracy": scores["per_material_accuracy"],
                     "classed_as": _classed_as(scores),
                     "median_disorientation_deg": {name: stats["median"]
                                                   for name, stats in scores["disorientation_deg"].items()}})
    return {"model": model.card.name, "file": str(model.path), "kind": model.card.kind, "split": split,
            "data_seed": data.seed, "frames_per_material": n,
            "master_files": {name: str(path) for name, path in zip(names, files.values())}, "rows": rows}


def _split_of(data: DataConfig, names: tuple[str, ...]) -> tuple[str, SplitSpec]:
    """The split (test or blind) holding all of ``names``, cut down to them."""
    for split in ("test", "blind"):
        spec = split_spec(data, split)
        if set(names) <= set(spec.phases):
            return split, spec.restricted(names)
    test, blind = split_spec(data, "test").phases, split_spec(data, "blind").phases
    raise EvaluationError(f"master: {', '.join(names)} must all be training materials ({', '.join(test)}) "
                          f"or all blind ones ({', '.join(blind)}) of this model")


def _classed_as(scores: dict) -> dict[str, dict[str, int]]:
    """Per material, how many of its frames went to each class (classes with none left out)."""
    classes = scores["classes"]
    return {material: {classes[i]: int(c) for i, c in enumerate(row) if c}
            for material, row in zip(scores["materials"], scores["confusion_by_material"])}
