"""Checkpoint of a 4D-STEM (SPED) orientation network → ONNX model file with its card.

The graph is written by ``export.export_network`` (the same exporter and output contract as
the EBSD models); what differs is the card (kind ``4dstem``, one class per material with its
point group, the training history for report curves) and the input's type: a counting
detector streams uint16, which torch's TorchScript exporter cannot trace, so the graph is
traced on uint8 and its input retyped to uint16. That is exact, because the first operation
on ``frames`` is a Cast to float32, which takes either. ``diffstream export`` comes here for
checkpoints whose data kind is ``4dstem``.
"""
from __future__ import annotations

from pathlib import Path

import onnx

from diffstream.engines.model_card import ModelCard, ModelClass, write_card

from .config import Config
from .export import ExportError, export_network, output_meanings, preprocessing_text, training_record
from .orientation import laue_operators
from .physics.catalogue import get_phase_entry
from .training import config_from_checkpoint, load_checkpoint, model_from_checkpoint

INPUT_DTYPE = "uint16"
OUTPUT_MEANINGS = {
    "class_probabilities": "softmax over the card's classes (the phases of the training set)",
    "confidence": "sigmoid of the usable-pattern logit: probability that the frame holds a spot pattern",
}


def build_sped_card(config: Config, checkpoint: dict, metrics: dict, views: int = 1) -> ModelCard:
    """The card of a 4D-STEM orientation model trained with ``config``, run on ``views`` views
    of each frame."""
    oriented = checkpoint["orientation_phases"]
    classes = tuple(ModelClass(name=name, point_group=get_phase_entry(name).point_group, orientation=name in oriented,
                               space_group=get_phase_entry(name).space_group)
                    for name in checkpoint["classes"])
    data = config.data
    return ModelCard(
        name=config.name,
        kind="4dstem",
        task=("phase", "orientation", "confidence"),
        input_shape=tuple(data.frame_shape),
        input_dtype=INPUT_DTYPE,
        classes=classes,
        outputs=output_meanings(OUTPUT_MEANINGS, checkpoint),
        preprocessing=preprocessing_text(checkpoint, INPUT_DTYPE) + views_text(views),
        training=training_record(config, checkpoint, {
            "source": "kinematic precession (SPED) spot patterns (diffstream.trainer.physics.sped), Poisson "
                      "counts at random dose, diffuse background and foil thickness per block of frames",
            "training_materials": list(checkpoint["classes"]),
            "orientation_phases": oriented,
            "patterns": data.patterns,
            "split": "60/20/20 train/val/test (paper 2)",
            "unusable_fraction": data.unusable_fraction,
            "dose_electrons": list(data.dose),
            "geometry": {"frame_shape": list(data.frame_shape), "voltage_kv": data.voltage_kv},
        }),
        metrics=metrics,
    )


def views_text(views: int) -> str:
    """The card's words for the view ensemble (none for a network run once per frame)."""
    if views == 1:
        return ""
    which = "the four quarter turns about the beam" + (", with and without a mirror" if views == 8 else "")
    return (f"; the network runs on {views} views of each frame ({which}); class probabilities and "
            "confidence are their means, the rotation the mean of the views that agree with the majority "
            "(diffstream.trainer.view_ensemble)")


def check_views_exact(checkpoint_path: str | Path, config: Config, oriented: dict) -> None:
    """The views are other orientations' frames only for square simulated frames with the
    direct beam at the centre, and their vote needs one Laue group."""
    if len(oriented) != 1:
        raise ExportError(f"views: {checkpoint_path} orients {len(oriented)} phases; views combine the "
                          "answers of one phase's Laue group")
    if config.data.source != "simulated":
        raise ExportError(f"views: {checkpoint_path} was trained on imported frames, whose direct beam need not sit "
                          "at the frame's centre; the views are exact for simulated frames only, so use views 1")
    rows, columns = config.data.frame_shape
    if rows != columns:
        raise ExportError(f"views: {checkpoint_path} takes {rows}x{columns} frames; a quarter turn needs square ones")


def export_sped_checkpoint(checkpoint_path: str | Path, out: str | Path, evaluate: bool = False,
                           views: int = 1) -> ModelCard:
    """Write the checkpoint's network to ``out`` with its card, run on ``views`` views of each
    frame (``view_ensemble``); with ``evaluate`` the file is scored on the config's held-out
    test split (``evaluation.evaluate_sped``) and the numbers go into the card."""
    checkpoint = load_checkpoint(checkpoint_path)
    config = config_from_checkpoint(checkpoint)
    if config.data.kind != "4dstem":
        raise ValueError(f"{checkpoint_path} is not a 4D-STEM checkpoint (its data kind is {config.data.kind})")
    oriented = checkpoint["orientation_phases"]
    if views != 1:
        check_views_exact(checkpoint_path, config, oriented)
    best = checkpoint["state"]["best_metrics"]
    metrics = {"validation": {k: best.get(k) for k in ("epoch", "val_loss", "val_median_disorientation_deg",
                                                        "val_usable_accuracy")}}
    out = Path(out)
    operators = laue_operators(next(iter(oriented.values()))) if views != 1 else None
    export_network(model_from_checkpoint(checkpoint), tuple(config.data.frame_shape),
                   build_sped_card(config, checkpoint, metrics, views), out, views=views, operators=operators)
    model = onnx.load(str(out))
    model.graph.input[0].type.tensor_type.elem_type = onnx.TensorProto.UINT16
    onnx.checker.check_model(model)
    onnx.save(model, str(out))
    if evaluate:
        from .evaluation import evaluate_sped

        metrics["test"] = evaluate_sped(out, config.data, "test")
    card = build_sped_card(config, checkpoint, metrics, views)
    write_card(model, card)
    onnx.save(model, str(out))
    return card
