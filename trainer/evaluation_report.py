"""``diffstream evaluate --report DIR``: the scores as JSON and the figures the papers show.

- ``confusion.png`` (class × class) and, for lattice models, ``confusion_by_material.png``
  (materials as rows, paper 1 Figs. 2-3), rows normalised to 1 with the counts written in;
- ``training_curves.png`` from the training history in the card, when the card holds one
  (the report says so when it does not);
- ``ipf_maps.png``: a synthetic specimen of the first oriented phase (``physics.specimen``),
  its grains oriented as the training set was (uniformly, or about the data's
  ``orientation_centre``), rendered as the live simulator renders it, predicted by the
  model: IPF-X, -Y and -Z maps
  of the truth above the prediction (orix's IPF colour key of the phase's Laue group), and
  the disorientation map (paper 2 Fig. 9's comparison, with exact truth instead of
  template-matching labels).
- ``gradcam.png`` with ``--gradcam``: Grad-CAM maps over a few test frames per class
  (paper 1 Fig. 5; ``gradcam.py``).
- ``dose.png``, ``voltage.png`` or ``axial.png`` for a dose, voltage or axial-ratio study
  (``write_sweep_report``).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .evaluation import SWEEPS, EvaluatedModel, equivalent_switches
from .export import onnx_session, run_onnx
from .gradcam import GradCam, gradcam_figure
from .orientation import disorientation_deg, laue_operators, quaternions_to_matrices
from .physics.catalogue import get_phase_entry
from .physics.specimen import RandomTexture, SpecimenSpec, make_specimen

SPECIMEN_SHAPE = (40, 40)
SPECIMEN_SEED = 7


def write_report(result: dict, model: EvaluatedModel, out_dir: str | Path, gradcam: GradCam | None = None) -> dict:
    """Write the figures and ``metrics.json`` (``result`` plus a ``report`` entry listing the
    files and what was skipped) into ``out_dir``, with ``gradcam.png`` when ``gradcam`` is given;
    returns the ``report`` entry."""
    import matplotlib

    matplotlib.use("Agg")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files, notes = [], {}
    if "confusion" in result:
        files.append(_confusion_figure(np.array(result["confusion"]), result["classes"], result["classes"],
                                       out_dir / "confusion.png", "true class"))
        files.append(_confusion_figure(np.array(result["confusion_by_material"]), result["materials"],
                                       result["classes"], out_dir / "confusion_by_material.png", "material"))
    history = model.card.training.get("history")
    if history:
        files.append(_training_curves(history, out_dir / "training_curves.png"))
    else:
        notes["training_curves"] = "skipped: the model card holds no training history (exported before it did)"
    oriented = [c for c in model.card.classes if c.orientation]
    phases = model.card.orientation_phases
    if oriented and phases:
        files.append(_ipf_maps(model, phases[0], out_dir / "ipf_maps.png", result))
    else:
        notes["ipf_maps"] = "skipped: the model has no oriented class"
    if gradcam is not None:
        files.append(gradcam_figure(gradcam, model, result["data_seed"], out_dir / "gradcam.png"))
    report = {"files": [p.name for p in files], "skipped": notes}
    (out_dir / "metrics.json").write_text(json.dumps({**result, "report": report}, indent=1), encoding="utf-8")
    return report


def write_sweep_report(result: dict, out_dir: str | Path) -> dict:
    """Write the study's figure (``SWEEPS``: accuracy and the oriented phases' median
    disorientation against the varied condition) and ``metrics.json`` for an
    ``evaluate_dose``, ``evaluate_voltage`` or ``evaluate_axial`` result; returns the
    ``report`` entry."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    variable, rows = result["sweep"], result["rows"]
    sweep = SWEEPS[variable]
    values = [row[variable] for row in rows]
    phases = list(rows[0]["median_disorientation_deg"])  # none on blind materials: one panel then
    fig, axes = plt.subplots(1, 2 if phases else 1, figsize=(9 if phases else 5, 3.5), squeeze=False)
    accuracy_ax = axes[0, 0]
    accuracy_ax.plot(values, [row["accuracy"] for row in rows], "o-", label="all materials")
    if "accuracy_without_ordered_superstructures" in rows[0]:
        accuracy_ax.plot(values, [row["accuracy_without_ordered_superstructures"] for row in rows], "s--",
                         label="without ordered superstructures")
        accuracy_ax.legend()
    accuracy_ax.set_ylabel("lattice accuracy")
    accuracy_ax.set_ylim(0, 1)
    if phases:
        angle_ax = axes[0, 1]
        for phase in phases:
            angle_ax.plot(values, [row["median_disorientation_deg"][phase] for row in rows], "o-", label=phase)
        angle_ax.set_ylabel("median disorientation (°)")
        angle_ax.legend()
    for ax in axes[0]:
        ax.set_xscale(sweep.scale)
        ax.set_xlabel(sweep.label)
    fig.suptitle(f"{result['model']}: {result['frames_per_material']} fresh {result['split']} frames per material "
                 f"and {sweep.condition}")
    fig.tight_layout()
    fig.savefig(out_dir / sweep.figure, dpi=120)
    plt.close(fig)
    report = {"files": [sweep.figure], "skipped": {}}
    (out_dir / "metrics.json").write_text(json.dumps({**result, "report": report}, indent=1), encoding="utf-8")
    return report


def _confusion_figure(counts: np.ndarray, rows: list[str], cols: list[str], path: Path, row_label: str) -> Path:
    import matplotlib.pyplot as plt

    fractions = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(0.45 * len(cols) + 2.5, 0.4 * len(rows) + 1.8))
    ax.imshow(fractions, cmap="Blues", vmin=0, vmax=1)
    for (i, j), n in np.ndenumerate(counts):
        if n:
            ax.text(j, i, str(n), ha="center", va="center", fontsize=6,
                    color="white" if fractions[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(cols)), cols, rotation=90, fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    ax.set_xlabel("predicted class")
    ax.set_ylabel(row_label)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _training_curves(history: list[dict], path: Path) -> Path:
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    oriented = list(history[-1].get("val_median_disorientation_deg", {}))  # none for a classifier alone
    fig, axes = plt.subplots(1, 2 if oriented else 1, figsize=(9 if oriented else 4.5, 3.5), squeeze=False)
    loss_ax = axes[0, 0]
    loss_ax.plot(epochs, [h["train_loss"] for h in history], label="train")
    loss_ax.plot(epochs, [h["val_loss"] for h in history], label="validation")
    loss_ax.set_xlabel("epoch")
    loss_ax.set_ylabel("loss")
    loss_ax.legend()
    if oriented:
        angle_ax = axes[0, 1]
        for name in oriented:
            angle_ax.plot(epochs, [h["val_median_disorientation_deg"].get(name) for h in history], label=name)
        angle_ax.set_xlabel("epoch")
        angle_ax.set_ylabel("validation median disorientation (°)")
        angle_ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _ipf_maps(model: EvaluatedModel, phase: str, path: Path, result: dict) -> Path:
    import matplotlib.pyplot as plt
    from orix.plot import IPFColorKeyTSL
    from orix.quaternion import Orientation, Rotation
    from orix.vector import Vector3d

    from diffstream.live.scan_render import make_renderer, render_scan

    texture = model.config.data.texture() or RandomTexture()  # the orientations the model was trained on
    specimen = make_specimen(SpecimenSpec(scan_shape=SPECIMEN_SHAPE, phases=((phase, 1.0),), grain_size=8.0,
                                          seed=SPECIMEN_SEED, texture=texture))
    renderer = make_renderer(model.card.kind, [phase], frame_size=model.card.input_shape[0], seed=SPECIMEN_SEED)
    frames = render_scan(renderer, specimen)
    _, rotations, _ = run_onnx(onnx_session(model.path), frames.astype(model.card.input_dtype, copy=False))
    truth = specimen.quaternions.reshape(-1, 4)
    group = get_phase_entry(phase).point_group
    error = disorientation_deg(rotations, quaternions_to_matrices(truth), laue_operators(group))
    result["specimen_median_disorientation_deg"] = round(float(np.median(error)), 3)
    result["specimen_equivalent_switches"] = equivalent_switches(rotations, truth, specimen.grain_id, group)
    symmetry = specimen.phase_list[0].point_group.laue
    orientations = {"truth": Orientation(Rotation(truth), symmetry=symmetry),
                    "predicted": Orientation(Rotation.from_matrix(rotations), symmetry=symmetry)}
    directions = {"X": Vector3d.xvector(), "Y": Vector3d.yvector(), "Z": Vector3d.zvector()}
    fig, axes = plt.subplots(2, 4, figsize=(13, 6.5))
    for row, (label, orientation) in enumerate(orientations.items()):
        for col, (name, direction) in enumerate(directions.items()):
            colours = IPFColorKeyTSL(symmetry, direction=direction).orientation2color(orientation)
            axes[row, col].imshow(colours.reshape(*SPECIMEN_SHAPE, 3))
            axes[row, col].set_title(f"{label}, IPF-{name}")
    image = axes[0, 3].imshow(error.reshape(SPECIMEN_SHAPE), cmap="magma")
    axes[0, 3].set_title("disorientation (°)")
    fig.colorbar(image, ax=axes[0, 3], fraction=0.046)
    axes[1, 3].hist(error, bins=60, range=(0, max(float(error.max()), 1.0)))
    axes[1, 3].set_xlabel("disorientation (°)")
    axes[1, 3].set_title(f"median {np.median(error):.2f}°")
    for ax in axes[:, :3].ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{model.card.name} on a synthetic {phase} specimen ({SPECIMEN_SHAPE[0]}×{SPECIMEN_SHAPE[1]} points)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
