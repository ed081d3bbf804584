"""The live window's tool bar: what to map (URL or a file to replay), with which model and
engine, and how to show it. It holds widgets only; the window connects them to its session.

Choosing a file (a model, a folder to save into, a file to replay) opens a dialog with
``open()``: window-modal but not blocking, so the maps keep painting while it is up.
"""
from __future__ import annotations

from collections.abc import Callable

from PySide6.QtGui import QAction
from PySide6.QtWidgets import QCheckBox, QComboBox, QFileDialog, QLabel, QLineEdit, QToolBar, QWidget

OPEN_MODEL = "open file…"


class ControlBar(QToolBar):
    """URL, model, engine, start/stop, record, replay, save, pause painting, IPF direction, overlay, Grad-CAM."""

    def __init__(self, models: list[str], engines: list[str], parent: QWidget | None = None) -> None:
        super().__init__("controls", parent)
        self.setMovable(False)
        self.url = QLineEdit()
        self.url.setPlaceholderText("tcp://host:5555")
        self.url.setMinimumWidth(200)
        self.model = QComboBox()
        self.model.addItems([*models, OPEN_MODEL])
        self.engine = QComboBox()
        self.engine.addItems(engines)
        self.start = QAction("Start", self)
        self.record = QAction("Record", self, checkable=True)
        self.record.setToolTip("record the stream of the next start to diffstream-recordings/TIME.h5")
        self.replay = QAction("Open file…", self)
        self.replay.setToolTip("replay a recording or pattern file and map it")
        self.save = QAction("Save…", self)
        self.save.setToolTip("write map.h5, map.ang, PNGs and summary.json of the map shown")
        self.pause = QAction("Pause painting", self, checkable=True)
        self.direction = QComboBox()
        self.direction.addItems(["IPF-X", "IPF-Y", "IPF-Z"])
        self.direction.setCurrentText("IPF-Z")
        self.overlay = QCheckBox("confidence as brightness")
        self.gradcam = QCheckBox("Grad-CAM")
        self.offer_gradcam(False, "Grad-CAM: no model is loaded yet")
        for label, widget in (("URL ", self.url), (" model ", self.model), (" engine ", self.engine)):
            self.addWidget(QLabel(label))
            self.addWidget(widget)
        for action in (self.start, self.record, self.replay, self.save, self.pause):
            self.addAction(action)
        self.addSeparator()
        self.addWidget(self.direction)
        self.addWidget(self.overlay)
        self.addWidget(self.gradcam)

    @property
    def ipf_direction(self) -> str:
        """x, y or z."""
        return self.direction.currentText()[-1].lower()

    def offer_gradcam(self, offered: bool, reason: str) -> None:
        """Enable the Grad-CAM box where the model offers it; else untick and disable it, with
        ``reason`` (also the tool tip when offered) saying why."""
        if not offered:
            self.gradcam.setChecked(False)
        self.gradcam.setEnabled(offered)
        self.gradcam.setToolTip(reason)

    def add_model(self, path: str) -> None:
        """Put a model file chosen by the user in the picker (before "open file…") and select it."""
        if self.model.findText(path) < 0:
            self.model.insertItem(self.model.count() - 1, path)
        self.model.setCurrentText(path)


def choose(parent: QWidget, caption: str, on_chosen: Callable[[str], None], *, folder: bool = False,
           name_filter: str = "") -> QFileDialog:
    """Open a non-blocking file (or folder) dialog that calls ``on_chosen`` with the path chosen."""
    dialog = QFileDialog(parent, caption)
    dialog.setFileMode(QFileDialog.FileMode.Directory if folder else QFileDialog.FileMode.ExistingFile)
    if name_filter:
        dialog.setNameFilter(name_filter)
    dialog.fileSelected.connect(on_chosen)
    dialog.open()
    return dialog
