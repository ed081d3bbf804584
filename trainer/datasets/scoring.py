"""Scores of a model's outputs on a labelled split, from plain arrays.

Works on numpy outputs, so the same function scores the torch network during training and
the exported ONNX file (what users actually run) after export.
"""
from __future__ import annotations

import math

import numpy as np

from diffstream.trainer.orientation import disorientation_deg, laue_operators, quaternions_to_matrices
from diffstream.trainer.physics.catalogue import get_phase_entry

from .lattices import LATTICES
from .synthesis import Shard


def score(shard: Shard, probabilities: np.ndarray, rotations: np.ndarray | None = None,
          confidence: np.ndarray | None = None, orientation_phases: tuple[str, ...] = (),
          classes: tuple[str, ...] = LATTICES) -> dict:
    """Lattice accuracy (overall, per material, per lattice) and the confusion matrix on the
    usable frames; the median disorientation (degrees, under each phase's Laue group) of
    ``orientation_phases``; the usable-flag accuracy at confidence 0.5 where frames of both
    kinds exist. ``classes`` name the class indices (the lattices, or a 4D-STEM set's
    materials). Rounded for records."""
    usable = shard.usable
    predicted = probabilities.argmax(axis=1)
    correct = predicted == shard.lattice
    result: dict = {"frames": int(len(shard)), "lattice_accuracy": _mean(correct[usable])}
    result["per_material"] = {
        str(name): _mean(correct[usable & (shard.phase == name)]) for name in dict.fromkeys(shard.phase[usable])
    }
    labels = shard.lattice[usable].astype(np.int64)
    confusion = np.zeros((len(classes), len(classes)), dtype=np.int64)
    np.add.at(confusion, (labels, predicted[usable]), 1)
    result["per_lattice"] = {
        classes[k]: _mean(correct[usable & (shard.lattice == k)]) for k in sorted(set(labels.tolist()))
    }
    result["confusion"] = confusion.tolist()
    if rotations is not None:
        result["median_disorientation_deg"] = {
            name: _median_disorientation(shard, rotations, name) for name in orientation_phases
            if (shard.phase == name).any()
        }
    if confidence is not None and usable.any() and (~usable).any():
        result["usable_accuracy"] = _mean((confidence > 0.5) == usable)
    return result


def paper2_scores(predicted: np.ndarray, target: np.ndarray) -> dict:
    """MAE, MSE over all angles and frames, and R² averaged over the three angles (paper 2, App. B)."""
    error = target - predicted
    ss_tot = ((target - target.mean(axis=0)) ** 2).sum(axis=0)
    r2 = 1.0 - (error**2).sum(axis=0) / np.where(ss_tot > 0, ss_tot, math.inf)
    return {"mae_deg": round(float(np.abs(error).mean()), 3), "mse_deg2": round(float((error**2).mean()), 2),
            "r2": round(float(r2.mean()), 4)}


def _median_disorientation(shard: Shard, rotations: np.ndarray, name: str) -> float:
    rows = np.flatnonzero(shard.usable & (shard.phase == name))
    operators = laue_operators(get_phase_entry(name).point_group)
    angles = disorientation_deg(rotations[rows], quaternions_to_matrices(shard.quaternions[rows]), operators)
    return round(float(np.median(angles)), 2)


def _mean(values: np.ndarray) -> float:
    return round(float(values.mean()), 4) if len(values) else float("nan")
