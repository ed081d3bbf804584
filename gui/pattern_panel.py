"""The window's current-pattern panel: the latest frame the pipeline mapped, or the frame of the
point under the mouse (or pinned by a click), with its class, confidence and orientation, and
its Grad-CAM over it when the user asks and the model offers it (:mod:`.gradcam_overlay`)."""
from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QVBoxLayout, QWidget

from .gradcam_overlay import GradCamOverlay
from .panels import BACKGROUND


class PatternPanel(QWidget):
    """A titled greyscale frame with a caption under it; levels follow each frame's own range."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.heading = QLabel("<b>pattern</b>")
        self.heading.setAlignment(Qt.AlignmentFlag.AlignHCenter)
        self.graphics = pg.GraphicsLayoutWidget(border=None)
        self.graphics.setBackground(BACKGROUND)
        self.graphics.setMinimumSize(200, 200)
        self.view = self.graphics.addViewBox(row=0, col=0, lockAspect=True, invertY=True)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.view.addItem(self.image_item)
        self.caption = QLabel("no pattern yet")
        self.caption.setWordWrap(True)
        self.caption.setMinimumHeight(3 * self.caption.fontMetrics().height())  # room for the Euler angles
        self.caption.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignHCenter)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.heading)
        layout.addWidget(self.graphics, stretch=1)
        self.gradcam_note = QLabel()
        self.gradcam_note.setWordWrap(True)
        self.gradcam_note.setAlignment(Qt.AlignmentFlag.AlignHCenter)
        layout.addWidget(self.caption)
        layout.addWidget(self.gradcam_note)
        self.gradcam = GradCamOverlay(self.view, self.gradcam_note)
        self._shape: tuple[int, int] | None = None

    @property
    def frame(self) -> np.ndarray | None:
        """The frame shown (None when the point's frame is no longer cached)."""
        return self.image_item.image

    def show_frame(self, heading: str, frame: np.ndarray | None, caption: str) -> None:
        self.heading.setText(f"<b>{heading}</b>")
        self.caption.setText(caption)
        self.gradcam.follow(frame)
        if frame is None:
            self.image_item.clear()
            return
        low, high = float(frame.min()), float(frame.max())
        self.image_item.setImage(frame, levels=(low, high if high > low else low + 1))
        if self._shape != frame.shape:
            self._shape = frame.shape
            self.view.autoRange(padding=0.0)
