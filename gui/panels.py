"""The live window's map panels: one aspect-locked pyqtgraph image per map, scan-grid pixels
with row 0 at the top (as EBSD software draws a scan), and what each map needs to be read:
the phase legend, the IPF colour keys, the confidence colour bar.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyqtgraph as pg
from matplotlib import colormaps
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from diffstream.live.map_assembler import NOT_INDEXED, NOT_INDEXED_NAME, NOT_RECEIVED, MapSnapshot

from .colour_keys import IpfKey
from .colouring import Rows, to_uint8

BACKGROUND = (255, 255, 255)
"""White around the maps, so that black (not indexed) and grey (not received) points show."""
_KEY_PIXELS = 110
NEVER_RECEIVED = "never received"
BAND_ROWS = 64
"""Rows per image band of a map panel: what one paint re-renders where the scan moved."""


class MapPanel(QWidget):
    """A titled map image; ``hovered`` carries the scan (row, col) under the mouse, (-1, -1) off
    the map, ``clicked`` the point clicked.

    The image is drawn as horizontal bands of :data:`BAND_ROWS` rows, one ``ImageItem`` each,
    and :meth:`set_image` re-renders only the bands whose rows changed: a beam scanning a
    2048×2048 map changes one or two bands between paints, so a paint costs a band's render
    (about 130,000 pixels) instead of the whole map's (4 million).
    """

    hovered = Signal(int, int)
    clicked = Signal(int, int)

    def __init__(self, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.graphics = pg.GraphicsLayoutWidget(border=None)
        self.graphics.setBackground(BACKGROUND)
        self.graphics.setMinimumSize(220, 220)
        self.view = self.graphics.addViewBox(row=0, col=0, lockAspect=True, invertY=True)
        self.bands: list[pg.ImageItem] = []
        self._shape: tuple[int, int] | None = None
        self._shown: np.ndarray | None = None
        self.graphics.scene().sigMouseMoved.connect(self._mouse_moved)
        self.graphics.scene().sigMouseClicked.connect(self._mouse_clicked)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        self.heading = QLabel()
        self.heading.setAlignment(Qt.AlignmentFlag.AlignHCenter)
        self.set_title(title)
        layout.addWidget(self.heading)
        layout.addWidget(self.graphics, stretch=1)

    @property
    def image(self) -> np.ndarray | None:
        """The (rows, cols, 3) uint8 image shown, row 0 at the top of the panel."""
        return self._shown

    def set_title(self, title: str) -> None:
        self.heading.setText(f"<b>{title}</b>")

    def set_image(self, rgb: np.ndarray, rows: Rows = (0, 1 << 30), brightness: np.ndarray | None = None) -> None:
        """Show ``rgb``, re-rendering only the bands that hold ``rows`` (all of them by default);
        ``brightness`` (rows, cols) in 0-1 scales the colours shown (confidence as brightness).

        A new scan shape builds the bands afresh and resets the zoom to the whole scan.
        """
        if self._shape != rgb.shape[:2]:
            self._build_bands(rgb.shape[:2])
            rows = (0, rgb.shape[0])
        if rows is None:
            return
        first = max(rows[0] // BAND_ROWS, 0)
        stop = min(-(-rows[1] // BAND_ROWS), len(self.bands))
        if brightness is None:
            self._shown = rgb
        elif self._shown is rgb or self._shown is None or self._shown.shape != rgb.shape:
            self._shown = np.empty_like(rgb)
            first, stop = 0, len(self.bands)
        for band in range(first, stop):
            lines = slice(band * BAND_ROWS, (band + 1) * BAND_ROWS)
            if brightness is not None:
                np.multiply(rgb[lines], brightness[lines, :, None], out=self._shown[lines], casting="unsafe")
            self.bands[band].setImage(self._shown[lines], autoLevels=False)

    def link(self, other: MapPanel) -> None:
        """Pan and zoom together with ``other``, so the same grains line up across maps."""
        self.view.setXLink(other.view)
        self.view.setYLink(other.view)

    def _build_bands(self, shape: tuple[int, int]) -> None:
        for item in self.bands:
            self.view.removeItem(item)
        self.bands = []
        for top in range(0, shape[0], BAND_ROWS):
            item = pg.ImageItem(axisOrder="row-major")
            item.setPos(0, top)
            self.view.addItem(item)
            self.bands.append(item)
        self._shape = shape
        self._shown = None
        self.view.setRange(xRange=(0, shape[1]), yRange=(0, shape[0]), padding=0.02)

    def _point(self, scene_pos: QPointF) -> tuple[int, int]:
        if self._shape is None:
            return -1, -1
        point = self.view.mapSceneToView(scene_pos)
        row, col = int(np.floor(point.y())), int(np.floor(point.x()))
        if not (0 <= row < self._shape[0] and 0 <= col < self._shape[1]):
            return -1, -1
        return row, col

    def _mouse_moved(self, scene_pos: QPointF) -> None:
        if self._shape is not None:
            self.hovered.emit(*self._point(scene_pos))

    def _mouse_clicked(self, event: object) -> None:
        row, col = self._point(event.scenePos())
        if row >= 0:
            self.clicked.emit(row, col)


class PhaseLegend(QWidget):
    """Swatch, name and share of each class, then not indexed, not yet received, and never
    received (the points still missing once the scan has ended: dropped or never sent).

    ``colours`` maps each entry's name to the (r, g, b) uint8 colour the phase map paints it,
    ``labels`` to the label that shows its name and share.
    """

    def __init__(self, class_names: Sequence[str], phase_lut: np.ndarray, missing: np.ndarray,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        names = [*class_names, "not indexed", "not yet received"]
        codes = [*range(len(class_names)), NOT_INDEXED, NOT_RECEIVED]
        self.colours = {name: tuple(int(v) for v in phase_lut[code - NOT_INDEXED]) for name, code in zip(names, codes)}
        names.append(NEVER_RECEIVED)
        self.colours[NEVER_RECEIVED] = tuple(int(v) for v in missing)
        self.labels: dict[str, QLabel] = {}
        grid = QGridLayout(self)
        grid.setContentsMargins(4, 0, 4, 0)
        columns = 2 if len(names) <= 8 else 3
        for position, name in enumerate(names):
            r, g, b = self.colours[name]
            swatch = QLabel()
            swatch.setFixedSize(14, 14)
            swatch.setStyleSheet(f"background-color: rgb({r}, {g}, {b}); border: 1px solid #888;")
            share = QLabel(name)
            self.labels[name] = share
            row, column = divmod(position, columns)
            grid.addWidget(swatch, row, 2 * column)
            grid.addWidget(share, row, 2 * column + 1)

    def set_shares(self, snapshot: MapSnapshot, *, ended: bool = False) -> None:
        """Each class's share of the received points and the share of the scan not yet received,
        or, once the scan has ended, never received."""
        shares = dict(snapshot.class_fractions)
        shares["not indexed"] = shares.pop(NOT_INDEXED_NAME)
        unreceived = 1.0 - snapshot.n_received / snapshot.received.size
        shares["not yet received"], shares[NEVER_RECEIVED] = (0.0, unreceived) if ended else (unreceived, 0.0)
        for name, label in self.labels.items():
            label.setText(f"{name} {shares[name]:.1%}")


class IpfKeyStrip(QWidget):
    """The IPF-Z colour keys side by side, each captioned with the classes it colours."""

    def __init__(self, keys: Sequence[IpfKey], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        row = QHBoxLayout(self)
        row.setContentsMargins(4, 0, 4, 0)
        for key in keys:
            column = QVBoxLayout()
            picture = QLabel()
            picture.setPixmap(_pixmap(key.rgba).scaled(_KEY_PIXELS, _KEY_PIXELS, Qt.AspectRatioMode.KeepAspectRatio,
                                                       Qt.TransformationMode.SmoothTransformation))
            picture.setAlignment(Qt.AlignmentFlag.AlignHCenter)
            caption = QLabel(key.label)
            caption.setAlignment(Qt.AlignmentFlag.AlignHCenter)
            column.addWidget(picture)
            column.addWidget(caption)
            row.addLayout(column)
        if not keys:
            row.addWidget(QLabel("the model gives no orientations"))


def add_confidence_bar(panel: MapPanel) -> None:
    """A fixed 0-1 viridis colour bar beside the confidence map (the colours of confidence.png)."""
    levels = np.linspace(0.0, 1.0, 256)
    colour_map = pg.ColorMap(levels, to_uint8(colormaps["viridis"](levels)))
    bar = pg.ColorBarItem(values=(0.0, 1.0), colorMap=colour_map, interactive=False, colorMapMenu=False,
                          label="confidence", width=16, pen="k")
    for axis in ("left", "right"):
        bar.getAxis(axis).setPen("k")
        bar.getAxis(axis).setTextPen("k")
    panel.graphics.addItem(bar, row=0, col=1)


def _pixmap(rgba: np.ndarray) -> QPixmap:
    rows, cols = rgba.shape[:2]
    image = QImage(np.ascontiguousarray(rgba).tobytes(), cols, rows, 4 * cols, QImage.Format.Format_RGBA8888)
    return QPixmap.fromImage(image.copy())
