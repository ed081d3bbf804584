"""Grad-CAM over the pattern panel's frame (paper 1 Fig. 5, live): which parts of the pattern
drive the model's class decision, as a semi-transparent colour map over the grey pattern.

A model offers it when its ``torch.export`` program (``NAME.pt2``) sits beside its ONNX file and
torch is installed (:func:`diffstream.trainer.gradcam.gradcam_from_program`). The window runs on
ONNX Runtime alone, so torch is imported only once the user asks for the overlay, and then in a
worker thread: loading torch and the program takes seconds, and each map about 0.2 s on a CPU.
One worker computes only the newest request; requests made while it is busy replace each other,
so hovering over the map never queues up work.
"""
from __future__ import annotations

import importlib.util
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QLabel

from diffstream.engines.model_card import read_card
from diffstream.engines.registry import resolve_model

OPACITY = 0.45
"""Of the colour map over the pattern: the pattern stays readable beneath it."""
COLOUR_MAP = "turbo"
LOADING = "loading Grad-CAM… (torch and the model's program: a few seconds)"


def gradcam_offer(model: str) -> tuple[Path | None, str]:
    """The ONNX file of ``model`` (a shipped name or a file) when the window can show its
    Grad-CAM, else None; and a sentence saying so, or why not (the check box's tool tip)."""
    if importlib.util.find_spec("torch") is None:
        return None, "Grad-CAM needs torch, which is not installed here"
    try:
        path = resolve_model(model)
    except FileNotFoundError:
        return None, f"Grad-CAM needs the model's file; {model} is not one"
    program = path.with_suffix(".pt2")
    if not program.is_file():
        return None, f"Grad-CAM needs the model's torch program {program.name} beside {path.name}; there is none"
    return path, f"overlay the Grad-CAM of the pattern's predicted class (from {program.name})"


class GradCamOverlay(QObject):
    """The Grad-CAM colour map over ``view``'s pattern, with ``note`` saying what it shows (the
    class it explains, that it is loading, or why it failed).

    ``follow(frame)`` asks for the map of each frame shown; the map of the previous frame stays
    until the new one arrives, so that the latest pattern of a running scan does not flicker.
    """

    ready = Signal(int, object, str)
    """Request number, map (H, W) in [0, 1] or None, note; emitted from the worker thread."""

    def __init__(self, view: pg.ViewBox, note: QLabel) -> None:
        super().__init__(note)
        self.heat = pg.ImageItem(axisOrder="row-major")
        self.heat.setLookupTable(pg.colormap.get(COLOUR_MAP).getLookupTable(nPts=256))
        self.heat.setOpacity(OPACITY)
        self.heat.setZValue(1)
        self.heat.hide()
        view.addItem(self.heat)
        self.note = note
        self.model: Path | None = None
        self.shown = False
        self._frame: np.ndarray | None = None
        self._asked: np.ndarray | None = None
        self._newest = 0
        self._gradcams: dict[Path, tuple[object, list[str]]] = {}
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="diffstream-gradcam")
        self.ready.connect(self._arrived)

    def set_model(self, model: Path | None) -> None:
        """The ONNX file whose Grad-CAM to show (None: the model offers none)."""
        if model != self.model:
            self.model = model
            self._asked = None
            self._clear()
            self.follow(self._frame)

    def set_shown(self, shown: bool) -> None:
        """Turn the overlay on (the map of the frame shown follows) or off."""
        self.shown = shown
        self._asked = None
        self._clear()
        self.follow(self._frame)

    def follow(self, frame: np.ndarray | None) -> None:
        """The panel shows ``frame`` now: ask for its map unless it was asked for last."""
        self._frame = frame
        if frame is None:
            self._clear()
            return
        if not self.shown or self.model is None:
            return
        if self._asked is not None and self._asked.shape == frame.shape and np.array_equal(self._asked, frame):
            return
        self._asked = frame
        if self.model not in self._gradcams:
            self.note.setText(LOADING)
        self._newest += 1
        self._worker.submit(self._compute, self._newest, self.model, frame)

    def close(self) -> None:
        """Drop the requests not started (the one running finishes in its thread)."""
        self._newest += 1
        self._worker.shutdown(wait=False, cancel_futures=True)

    def _clear(self) -> None:
        self.heat.hide()
        self.heat.clear()
        self.note.setText("")

    def _compute(self, number: int, model: Path, frame: np.ndarray) -> None:
        if number != self._newest:  # a newer frame was asked for meanwhile
            return
        try:
            gradcam, names = self._load(model)
            maps, logits = gradcam(frame[None])
        except Exception as error:  # torch, the program or the frame: the note says why, the window goes on
            self.ready.emit(number, None, f"Grad-CAM failed: {error}")
            return
        self.ready.emit(number, maps[0], f"Grad-CAM of {names[int(logits[0].argmax())]}, the predicted class")

    def _load(self, model: Path) -> tuple[object, list[str]]:
        """The Grad-CAM of ``model``'s program and its class names, loaded once (in the worker)."""
        if model not in self._gradcams:
            from diffstream.trainer.gradcam import gradcam_from_program

            self._gradcams[model] = (gradcam_from_program(model), read_card(model).class_names)
        return self._gradcams[model]

    def _arrived(self, number: int, heat: np.ndarray | None, note: str) -> None:
        if number != self._newest or not self.shown:
            return
        self.note.setText(note)
        if heat is None:
            self.heat.hide()
            return
        self.heat.setImage(heat, levels=(0.0, 1.0))
        self.heat.show()
