"""The model card: what a diffstream ONNX file says about itself.

A model is one ONNX file. Its ``metadata_props`` hold the card as JSON under
:data:`METADATA_KEY`, so the live path learns class names, point groups, input shape
and output meanings from the file alone and never needs the training code.

Output contract (every backend computes exactly these, preprocessing included):

- input ``frames``: raw detector integers, shape (N, H, W), dtype ``card.input_dtype``;
- ``class_probabilities`` (N, C) float32, softmax over ``card.classes``;
- ``rotation_matrix`` (N, 3, 3) float32, optional: the orientation as orix's
  ``Rotation.to_matrix()`` of the label (only meaningful for classes with ``orientation``);
- ``confidence`` (N,) float32 in [0, 1], optional: probability that the pattern is usable.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

METADATA_KEY = "diffstream.card"
CARD_FORMAT = "diffstream-model-card/1"
OUTPUTS = ("class_probabilities", "rotation_matrix", "confidence")


class ModelCardError(ValueError):
    """An ONNX file without a usable diffstream card."""


@dataclass(frozen=True)
class ModelClass:
    """One output class: a Bravais lattice (Pearson symbol) or a phase."""

    name: str
    point_group: str
    orientation: bool = False
    space_group: int | None = None


@dataclass(frozen=True)
class ModelCard:
    name: str
    kind: str
    task: tuple[str, ...]
    input_shape: tuple[int, int]
    input_dtype: str
    classes: tuple[ModelClass, ...]
    outputs: dict[str, str]
    preprocessing: str = ""
    version: str = "1"
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def orientation_phases(self) -> tuple[str, ...]:
        """The phases whose orientation the model was trained to give (from the training
        data config in ``training``; none for a card without one)."""
        return tuple(self.training.get("data", {}).get("orientation_phases", ()))

    def to_json(self) -> str:
        data = asdict(self)
        data["format"] = CARD_FORMAT
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelCard:
        try:
            data = json.loads(text)
            if data.pop("format", None) != CARD_FORMAT:
                raise ModelCardError(f"card format is not {CARD_FORMAT}")
            data["classes"] = tuple(ModelClass(**c) for c in data["classes"])
            data["task"] = tuple(data["task"])
            data["input_shape"] = tuple(data["input_shape"])
            return cls(**data)
        except (KeyError, TypeError, json.JSONDecodeError) as error:
            raise ModelCardError(f"malformed model card ({error})") from None


def read_card(path: str | Path) -> ModelCard:
    """The card stored in an ONNX file, without building an inference session."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model file at {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # onnx raises DecodeError and friends for non-ONNX bytes
        raise ModelCardError(f"{path} is not an ONNX file ({type(error).__name__})") from None
    props = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in props:
        raise ModelCardError(f"{path} has no diffstream model card (metadata key {METADATA_KEY!r})")
    return ModelCard.from_json(props[METADATA_KEY])


def write_card(model: Any, card: ModelCard) -> None:
    """Store ``card`` in an in-memory ``onnx.ModelProto``, replacing any older card."""
    kept = [p for p in model.metadata_props if p.key != METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    entry = model.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = card.to_json()
