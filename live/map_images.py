"""Colouring scan-grid maps the way microscopists read them: categorical phase colours and
orix's inverse-pole-figure (IPF) colours, with points that hold no result left black.

The PNG writers draw on a bare matplotlib ``Figure`` (Agg canvas), never through pyplot, so
they run in any thread and never touch a GUI's backend. Maps with a ``received`` property
(the live assembler's, 0/1) paint points whose frame never arrived mid grey, apart from the
black of points the model could not index.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.gridspec import SubplotSpec
from matplotlib.patches import Patch
from orix.crystal_map import CrystalMap
from orix.plot import DirectionColorKeyTSL, IPFColorKeyTSL
from orix.projections import InverseStereographicProjection, StereographicProjection
from orix.quaternion import Orientation, Rotation
from orix.quaternion.symmetry import Symmetry
from orix.vector import Vector3d

from diffstream.engines.model_card import ModelClass

from .map_assembler import model_phase_list

DIRECTIONS = {"x": Vector3d.xvector(), "y": Vector3d.yvector(), "z": Vector3d.zvector()}
NOT_INDEXED_RGB = (0.0, 0.0, 0.0)
NOT_RECEIVED_RGB = (0.5, 0.5, 0.5)
NO_ORIENTATION_RGB = (0.85, 0.85, 0.85)
"""IPF maps: points of a class the model gives no orientation for."""

_MAP_INCHES = 6.0
"""Long side of the map panel; the DPI grows with the map so that up to 1200 points span
at least one pixel each, and small maps are drawn as crisp blocks (nearest neighbour)."""
_DPI_RANGE = (100, 200)
_KEY_GRID = 160
"""Samples per side of an IPF colour key image: orix's own key interpolates onto a
0.001-step grid and takes 1-4 s per key; this takes under 0.1 s and looks the same."""
_KEYS_PER_COLUMN = 3


def phase_rgb(xmap: CrystalMap) -> np.ndarray:
    """(rows, cols, 3) float RGB of each point's phase colour; unindexed points black."""
    rgb = np.zeros((xmap.size, 3))
    for phase_id, phase in _indexed_phases(xmap):
        rgb[xmap.phase_id == phase_id] = phase.color_rgb
    return rgb.reshape(*grid_shape(xmap), 3)


def ipf_rgb(xmap: CrystalMap, direction: str = "z", phase_ids: Iterable[int] | None = None) -> np.ndarray:
    """(rows, cols, 3) float IPF colours along sample ``direction`` (x, y or z), each phase
    keyed by its own point group; only ``phase_ids`` (default: every indexed phase) are
    coloured, all other points are black."""
    wanted = None if phase_ids is None else set(phase_ids)
    rgb = np.zeros((xmap.size, 3))
    for phase_id, phase in _indexed_phases(xmap):
        if wanted is not None and phase_id not in wanted:
            continue
        mask = xmap.phase_id == phase_id
        key = IPFColorKeyTSL(phase.point_group, direction=DIRECTIONS[direction])
        orientations = Orientation(xmap.rotations[mask], symmetry=phase.point_group)
        rgb[mask] = key.orientation2color(orientations)
    return rgb.reshape(*grid_shape(xmap), 3)


def class_colours(classes: Sequence[ModelClass]) -> np.ndarray:
    """(C, 3) float RGB of a model's classes in card order: the phase colours the PNG files
    use, so that a live window painting from a snapshot shows the same colours."""
    return np.array([phase.color_rgb for _, phase in model_phase_list(classes)], dtype=float).reshape(-1, 3)


def class_point_groups(classes: Sequence[ModelClass]) -> list[Symmetry]:
    """orix point group of each class in card order, as the map files resolve them."""
    return [phase.point_group for _, phase in model_phase_list(classes)]


def ipf_colours(quaternions: np.ndarray, point_group: Symmetry, direction: str = "z") -> np.ndarray:
    """(N, 3) float IPF colours of (N, 4) quaternions (w, x, y, z) along sample ``direction``
    under ``point_group``: what :func:`ipf_rgb` paints, for callers that hold bare arrays
    (a live snapshot) rather than a ``CrystalMap``."""
    rotations = Rotation(np.asarray(quaternions, dtype=np.float64).reshape(-1, 4))
    key = IPFColorKeyTSL(point_group, direction=DIRECTIONS[direction])
    return key.orientation2color(Orientation(rotations, symmetry=point_group))


def ipf_key_rgba(laue: Symmetry, samples: int = _KEY_GRID) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The TSL IPF colour key of ``laue`` sampled on a ``samples`` × ``samples`` grid in the
    stereographic plane: float RGBA with row 0 at the bottom (the sector's lowest y) and
    transparent outside the fundamental sector, and its (x0, x1, y0, y1) extent."""
    sector = laue.fundamental_sector
    x, y = StereographicProjection().vector2xy(sector.edges)
    grid_x, grid_y = np.meshgrid(np.linspace(x.min(), x.max(), samples), np.linspace(y.min(), y.max(), samples))
    vectors = InverseStereographicProjection().xy2vector(grid_x.ravel(), grid_y.ravel())
    inside = vectors <= sector
    rgba = np.zeros((grid_x.size, 4))
    rgba[inside, :3] = DirectionColorKeyTSL(laue).direction2color(vectors[inside])
    rgba[inside, 3] = 1.0
    return rgba.reshape(samples, samples, 4), (x.min(), x.max(), y.min(), y.max())


def grid_shape(xmap: CrystalMap) -> tuple[int, int]:
    """(rows, cols) of the scan; orix calls a one-line map one-dimensional."""
    if xmap.ndim == 2:
        return xmap.shape
    return (1, xmap.size) if xmap.dx else (xmap.size, 1)


def save_overview_png(xmap: CrystalMap, path: str | Path, title: str = "") -> Path:
    """Phase map with a legend of names and area fractions beside the IPF-Z map."""
    fig = Figure(figsize=(10, 5.4), layout="constrained")
    ax_phase, ax_ipf = fig.subplots(1, 2)
    _show(ax_phase, _with_unreceived(xmap, phase_rgb(xmap)), "phase")
    ax_phase.legend(handles=_phase_handles(xmap), loc="upper left", bbox_to_anchor=(0, -0.02), ncol=4,
                    fontsize=8, frameon=False)
    _show(ax_ipf, _with_unreceived(xmap, ipf_rgb(xmap, "z")), "IPF-Z")
    fig.suptitle(title)
    return _save(fig, path)


def save_phase_png(xmap: CrystalMap, path: str | Path, title: str = "") -> Path:
    """The phase map with a legend beside it: each phase's colour, name and share of the
    scan, then not indexed (black) and not received (grey) where present."""
    fig, ax, side = _map_figure(grid_shape(xmap), side_inches=2.2)
    _show(ax, _with_unreceived(xmap, phase_rgb(xmap)), "phase")
    legend_ax = fig.add_subplot(side)
    legend_ax.set_axis_off()
    legend_ax.legend(handles=_phase_handles(xmap), loc="center left", fontsize=9, frameon=False)
    fig.suptitle(title)
    return _save(fig, path)


def save_ipf_png(xmap: CrystalMap, path: str | Path, title: str = "", direction: str = "z",
                 phase_ids: Iterable[int] | None = None) -> Path:
    """The IPF map along ``direction`` with one colour key per coloured phase beside it
    (phases sharing a Laue group share a key). ``phase_ids`` limits the colouring to the
    phases that carry orientations; other indexed points are painted light grey."""
    indexed = [pid for pid, _ in _indexed_phases(xmap)]
    wanted = set(indexed if phase_ids is None else phase_ids)
    oriented = [pid for pid in indexed if pid in wanted]
    rgb = ipf_rgb(xmap, direction, oriented)
    unoriented = np.isin(xmap.phase_id, [pid for pid in indexed if pid not in wanted]).reshape(grid_shape(xmap))
    rgb[unoriented] = NO_ORIENTATION_RGB
    keys = _keys_by_laue_group(xmap, oriented)
    key_columns = max(1, -(-len(keys) // _KEYS_PER_COLUMN))
    key_rows = min(max(len(keys), 1), _KEYS_PER_COLUMN)
    fig, ax, side = _map_figure(grid_shape(xmap), side_inches=2.0 * key_columns)
    _show(ax, _with_unreceived(xmap, rgb), f"IPF-{direction.upper()}")
    grid = side.subgridspec(key_rows, key_columns)
    for position, (laue, names) in enumerate(keys.items()):
        key_ax = fig.add_subplot(grid[position % key_rows, position // key_rows], projection="ipf", symmetry=laue)
        _draw_ipf_key(key_ax, laue, ", ".join(names))
    handles = _share_handles([(NO_ORIENTATION_RGB, "no orientation", unoriented.mean()), *_no_result_shares(xmap)])
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(0, -0.01), ncol=3, fontsize=8, frameon=False)
    fig.suptitle(title)
    return _save(fig, path)


def save_confidence_png(xmap: CrystalMap, path: str | Path, title: str = "", prop: str = "confidence") -> Path:
    """A [0, 1] property map in viridis with its colour bar; not received points grey."""
    values = np.ma.masked_array(xmap.prop[prop].reshape(grid_shape(xmap)), mask=~_received(xmap))
    fig, ax, _ = _map_figure(grid_shape(xmap), side_inches=0.0, colour_bar=True)
    cmap = colormaps["viridis"].with_extremes(bad=NOT_RECEIVED_RGB)
    image = ax.imshow(values, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_title(prop)
    ax.set_axis_off()
    fig.colorbar(image, ax=ax, shrink=0.8, label=prop)
    fig.suptitle(title)
    return _save(fig, path)


def _indexed_phases(xmap: CrystalMap) -> list[tuple[int, object]]:
    """(id, phase) for the phases in the data, without orix's not-indexed phase -1."""
    return [(pid, phase) for pid, phase in xmap.phases_in_data if pid >= 0]


def _received(xmap: CrystalMap) -> np.ndarray:
    if "received" not in xmap.prop:
        return np.ones(grid_shape(xmap), dtype=bool)
    return xmap.prop["received"].reshape(grid_shape(xmap)).astype(bool)


def _with_unreceived(xmap: CrystalMap, rgb: np.ndarray) -> np.ndarray:
    rgb[~_received(xmap)] = NOT_RECEIVED_RGB
    return rgb


def _phase_handles(xmap: CrystalMap) -> list[Patch]:
    handles = [Patch(color=phase.color_rgb, label=f"{phase.name} {np.mean(xmap.phase_id == pid):.1%}")
               for pid, phase in _indexed_phases(xmap)]
    return handles + _share_handles(_no_result_shares(xmap))


def _no_result_shares(xmap: CrystalMap) -> list[tuple[tuple[float, float, float], str, float]]:
    """(colour, label, share of the scan) of the points without a result."""
    received = _received(xmap).ravel()
    return [(NOT_INDEXED_RGB, "not indexed", float(np.mean((xmap.phase_id < 0) & received))),
            (NOT_RECEIVED_RGB, "not received", float(np.mean(~received)))]


def _share_handles(entries: Iterable[tuple[tuple[float, float, float], str, float]]) -> list[Patch]:
    """Legend entries with their shares, for the kinds of point present."""
    return [Patch(color=colour, label=f"{label} {share:.1%}") for colour, label, share in entries if share > 0]


def _keys_by_laue_group(xmap: CrystalMap, phase_ids: list[int]) -> dict[Symmetry, list[str]]:
    keys: dict[Symmetry, list[str]] = {}
    for pid in phase_ids:
        phase = xmap.phases[pid]
        keys.setdefault(phase.point_group.laue, []).append(phase.name)
    return keys


def _draw_ipf_key(ax: Axes, laue: Symmetry, label: str) -> None:
    """The TSL IPF colour key of ``laue`` on an orix "ipf" axes, labelled with the phases
    it colours: the key sampled on a grid in the stereographic plane, outside transparent."""
    rgba, extent = ipf_key_rgba(laue)
    ax.imshow(rgba, extent=extent, origin="lower", zorder=0, interpolation="bilinear")
    ax.stereographic_grid(False)
    ax.set_title(f"{label} ({laue.name})", y=0.0, pad=-22, va="top", fontsize=8)


def _map_figure(shape: tuple[int, int], side_inches: float,
                colour_bar: bool = False) -> tuple[Figure, Axes, SubplotSpec | None]:
    """A figure with the map panel sized to the scan's aspect and a side panel for a
    legend or keys (none when ``side_inches`` is 0; a colour bar makes room for itself);
    returns the figure, the map axes and the side slot."""
    rows, cols = shape
    longest = max(rows, cols)
    width = max(_MAP_INCHES * cols / longest, 3.0)
    height = max(_MAP_INCHES * rows / longest, 3.0)
    dpi = int(np.clip(longest / _MAP_INCHES, *_DPI_RANGE))
    fig = Figure(figsize=(width + side_inches + 1.2 * colour_bar, height + 1.0), dpi=dpi, layout="constrained")
    if not side_inches:
        return fig, fig.add_subplot(), None
    grid = fig.add_gridspec(1, 2, width_ratios=(width, side_inches))
    return fig, fig.add_subplot(grid[0]), grid[1]


def _show(ax: Axes, rgb: np.ndarray, title: str) -> None:
    ax.imshow(rgb, interpolation="nearest")
    ax.set_title(title)
    ax.set_axis_off()


def _save(fig: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path
