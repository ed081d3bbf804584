"""The live window's three map images as uint8 RGB, coloured from snapshots without Qt.

Colours come from :mod:`diffstream.live.map_images`, so the window and the PNG files agree.
:class:`MapColours` keeps all three images between paints, with the result each point was
coloured with (so it holds a copy of the map, which the window reads instead of the assembler's),
and recolours only the points whose result changed within the rows it is given (the window gets
those rows from the assembler, knowing from the frame cache which changed), so a paint costs
what changed, not the map: at 2048×2048 comparing the whole map would take 20-30 ms a paint.

IPF colouring is the expensive part: orix takes about 90 ms for a whole 200×200 map and 390 ms
for a 500×500 one, about 2 µs a point plus 5-15 ms a call whatever its size (a call per Laue
group; measured on the shared, busy development CPU), and much more when the CPU is saturated.
Phase and confidence are coloured at once by table look-up; IPF colours wait as pending for
:meth:`MapColours.colour_ipf`, which makes one orix call for at most :data:`IPF_POINTS_PER_CALL`
points, in an executor's thread when given one (the window's), so the GUI thread never waits
for orix.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass

import numpy as np
from matplotlib import colormaps

from diffstream.engines.model_card import ModelClass
from diffstream.live.map_assembler import NOT_INDEXED, NOT_RECEIVED, MapRows, MapSnapshot
from diffstream.live.map_images import (
    NO_ORIENTATION_RGB,
    NOT_INDEXED_RGB,
    NOT_RECEIVED_RGB,
    class_colours,
    class_point_groups,
    ipf_colours,
)

MISSING_RGB = (1.0, 0.0, 1.0)
"""Magenta: points still not received after their scan ended; no phase colour is near it."""
IPF_POINTS_PER_CALL = 3000
"""Most points IPF-coloured per :meth:`MapColours.colour_ipf`: about 10-25 ms of orix time."""
_OFFSET = -NOT_INDEXED
ALL_ROWS = (0, sys.maxsize)
"""Every row of a map, as a (first, stop) span."""
"""Look-up tables are indexed by class code + 2: not indexed, not received, then the classes."""


Rows = tuple[int, int] | None
"""A span of image rows ``(first, stop)`` that changed, or None for none."""


def row_span(rows: np.ndarray) -> Rows:
    """The smallest span of rows holding every row in ``rows`` (None when empty)."""
    return None if rows.size == 0 else (int(rows.min()), int(rows.max()) + 1)


def merge_spans(a: Rows, b: Rows) -> Rows:
    """The smallest span covering both."""
    if a is None or b is None:
        return a or b
    return min(a[0], b[0]), max(a[1], b[1])


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """Float RGB in [0, 1] as the uint8 the images hold (round to nearest)."""
    return np.clip(np.rint(np.asarray(rgb, dtype=float) * 255.0), 0, 255).astype(np.uint8)


class MapColours:
    """Phase, IPF (along sample ``direction``: x, y or z) and confidence images of the map as
    given to :meth:`update` (a snapshot) and :meth:`update_rows` (the rows that changed).

    ``phase``, ``ipf`` and ``confidence`` are (rows, cols, 3) uint8 arrays, updated in place
    (and replaced when the scan shape changes); None before the first update. IPF colours of
    points of oriented classes wait in :attr:`pending` for :meth:`colour_ipf` and show grey
    (as not received) until then. ``phase_lut[code + 2]`` is the phase colour of a class code
    (see :mod:`diffstream.live.map_assembler`), which the window's legend shows too.
    """

    def __init__(self, classes: Sequence[ModelClass], ipf_points_per_call: int = IPF_POINTS_PER_CALL,
                 direction: str = "z", executor: Executor | None = None) -> None:
        self.classes = tuple(classes)
        self._executor = executor
        self._future: Future | None = None
        self._job: _IpfJob | None = None
        self.ipf_points_per_call = int(ipf_points_per_call)
        self.direction = direction
        self.phase_lut = to_uint8(np.vstack([NOT_INDEXED_RGB, NOT_RECEIVED_RGB, class_colours(self.classes)]))
        oriented = [c.orientation for c in self.classes]
        self._oriented_lut = np.array([False, False, *oriented])
        self._ipf_base_lut = to_uint8(np.vstack([NOT_INDEXED_RGB, NOT_RECEIVED_RGB,
                                                 [NOT_RECEIVED_RGB if o else NO_ORIENTATION_RGB for o in oriented]]))
        self._point_groups = class_point_groups(self.classes)
        laue_names = [pg.laue.name for pg in self._point_groups]
        self._groups = list(dict.fromkeys(name for name, o in zip(laue_names, oriented) if o))
        self._group_of_class = np.array([self._groups.index(n) if o else -1 for n, o in zip(laue_names, oriented)])
        self._turn = 0
        self._confidence_lut = to_uint8(colormaps["viridis"](np.linspace(0.0, 1.0, 256))[:, :3])
        self._not_received = to_uint8(NOT_RECEIVED_RGB)
        self.missing = to_uint8(MISSING_RGB)
        self.phase: np.ndarray | None = None
        self.ipf: np.ndarray | None = None
        self.confidence: np.ndarray | None = None
        self._coloured: _Coloured | None = None
        self._pending: np.ndarray | None = None
        self._pending_rows: Rows = None
        self.received_points = 0
        """Received points in the images: what the window has painted of the map."""

    @property
    def laue_groups(self) -> int:
        """Laue groups among the oriented classes: the orix calls a full IPF refresh takes."""
        return len(self._groups)

    @property
    def pending(self) -> int:
        """Points of oriented classes still waiting for their IPF colour."""
        if self._pending is None or self._pending_rows is None:
            return 0
        return int(np.count_nonzero(self._pending[slice(*self._pending_rows)]))

    def update(self, snapshot: MapSnapshot, rows: tuple[int, int] = ALL_ROWS) -> Rows:
        """Recolour the points of ``snapshot`` within ``rows`` (first, stop) that changed, as
        :meth:`update_rows` does; a snapshot of another shape (a new scan) is coloured whole."""
        if self._coloured is None or self._coloured.scan_shape != snapshot.scan_shape:
            rows = ALL_ROWS
        return self.update_rows(snapshot.rows(*rows))

    def update_rows(self, part: MapRows) -> Rows:
        """Recolour the points of ``part``'s rows that changed: phase and confidence now, IPF
        marked pending for :meth:`colour_ipf`; returns the rows that changed.

        A point has changed when its class code, confidence or quaternion differ from those
        it was last coloured with, so a caller that knows where the map changed (the window,
        from the frame cache) passes those rows and the cost follows the change, not the map;
        a point outside them that changed is coloured by a later call that covers it. Rows of
        a map of another shape (a new scan) start all images afresh, as an empty map, so the
        first rows given then should be the whole map (``part.whole``).
        """
        if self._coloured is None or self._coloured.scan_shape != part.scan_shape:
            self._reset(part.scan_shape)
        lines = slice(part.first_row, part.stop_row)
        new_codes, new_confidence = part.class_id, part.confidence
        old = self._coloured
        # Quaternions compared bit for bit as two uint64 per point: 0.3 ms instead of 3.5 ms at 500×500.
        now = part.quaternions.view(np.uint64)
        before = old.quaternions[lines].view(np.uint64)
        # Only a result's quaternions count: unreceived and unindexed points all hold the identity.
        changed = ((new_codes != old.class_id[lines]) | (new_confidence != old.confidence[lines])
                   | ((new_codes >= 0) & ((now[..., 0] != before[..., 0]) | (now[..., 1] != before[..., 1]))))
        rows_here, cols = np.nonzero(changed)
        codes_here = new_codes[rows_here, cols]
        confidence_here = new_confidence[rows_here, cols]
        quaternions_here = part.quaternions[rows_here, cols]
        rows_here = rows_here + part.first_row
        was = old.class_id[rows_here, cols]
        self.received_points += int(np.count_nonzero(codes_here != NOT_RECEIVED))
        self.received_points -= int(np.count_nonzero(was != NOT_RECEIVED))
        old.class_id[rows_here, cols] = codes_here
        old.confidence[rows_here, cols] = confidence_here
        old.quaternions[rows_here, cols] = quaternions_here
        old.received[rows_here, cols] = codes_here != NOT_RECEIVED
        codes = codes_here.astype(np.intp) + _OFFSET
        self.phase[rows_here, cols] = self.phase_lut[codes]
        levels = np.clip(confidence_here * 255.0 + 0.5, 0, 255).astype(np.uint8)
        self.confidence[rows_here, cols] = np.where((codes == NOT_RECEIVED + _OFFSET)[:, None], self._not_received,
                                                    self._confidence_lut[levels])
        self.ipf[rows_here, cols] = self._ipf_base_lut[codes]
        oriented = self._oriented_lut[codes]
        self._pending[rows_here, cols] = oriented
        self._pending_rows = merge_spans(self._pending_rows, row_span(rows_here[oriented]))
        return row_span(rows_here)

    def view(self, counts: MapRows) -> MapSnapshot | None:
        """The map as coloured, with the whole-map counts of ``counts``, as a read-only
        :class:`MapSnapshot` of views (None before the first update): what the window's readout,
        hover, status bar and legend read, since these arrays hold the map and a copy of the
        assembler's would cost 88 MB at 2048×2048. Unlike the assembler's, it changes with each
        update, and its quaternions are zero, not the identity, where nothing was received.
        """
        coloured = self._coloured
        if coloured is None:
            return None
        arrays = [array.view() for array in (coloured.class_id, coloured.confidence, coloured.quaternions,
                                             coloured.received)]
        for array in arrays:
            array.flags.writeable = False
        return MapSnapshot(class_id=arrays[0], confidence=arrays[1], quaternions=arrays[2], received=arrays[3],
                           n_received=counts.n_received, class_fractions=counts.class_fractions,
                           class_names=counts.class_names)

    def colour_ipf(self) -> Rows:
        """IPF-colour up to ``ipf_points_per_call`` pending points of one Laue group, the groups
        taking turns: one orix call, so that a caller never pays for more than one; returns
        the rows recoloured. Only the rows that hold pending points are searched.

        With an ``executor``, the orix call runs there and this returns at once: it applies
        the colours of the call in flight once it has finished (to the points whose result
        has not changed meanwhile), else starts the next call, and returns the rows applied.
        """
        if self._executor is None:
            job = self._next_job()
            return None if job is None else self._apply(job, ipf_colours(job.quaternions, job.point_group,
                                                                          self.direction))
        if self._future is not None:
            if not self._future.done():
                return None
            future, self._future = self._future, None
            return self._apply(self._job, future.result())
        self._job = self._next_job()
        if self._job is not None:
            self._future = self._executor.submit(ipf_colours, self._job.quaternions, self._job.point_group,
                                                 self.direction)
        return None

    def finish_ipf(self) -> None:
        """IPF-colour every pending point now, waiting for a call in flight (a final picture)."""
        if self._future is not None:
            future, self._future = self._future, None
            self._apply(self._job, future.result())
        while (job := self._next_job()) is not None:
            self._apply(job, ipf_colours(job.quaternions, job.point_group, self.direction))

    def mark_missing(self) -> Rows:
        """Paint the points not received in :data:`MISSING_RGB` in all three images: the scan has
        ended, so they were dropped or never sent. A frame that still arrives is coloured as usual."""
        missing = self._coloured.class_id == NOT_RECEIVED
        for image in (self.phase, self.ipf, self.confidence):
            image[missing] = self.missing
        return row_span(np.flatnonzero(missing.any(axis=1)))

    def _next_job(self) -> _IpfJob | None:
        if self._pending_rows is None:
            return None
        first = self._pending_rows[0]
        rows, cols = np.nonzero(self._pending[slice(*self._pending_rows)])
        rows += first
        self._pending_rows = row_span(rows)
        if rows.size == 0:
            return None
        coloured = self._coloured
        groups = self._group_of_class[coloured.class_id[rows, cols]]
        waiting = np.unique(groups)
        group = next((g for g in waiting if g >= self._turn), waiting[0])
        self._turn = group + 1
        here = np.flatnonzero(groups == group)[:self.ipf_points_per_call]
        rows, cols = rows[here], cols[here]
        point_group = self._point_groups[int(np.argmax(self._group_of_class == group))]
        return _IpfJob(rows, cols, coloured.class_id[rows, cols], coloured.quaternions[rows, cols], point_group)

    def _apply(self, job: _IpfJob, rgb: np.ndarray) -> Rows:
        """Paint a job's colours on the points that still hold the result they were computed for."""
        coloured = self._coloured
        same = ((coloured.class_id[job.rows, job.cols] == job.class_id)
                & (coloured.quaternions[job.rows, job.cols] == job.quaternions).all(axis=1))
        rows, cols = job.rows[same], job.cols[same]
        self.ipf[rows, cols] = to_uint8(rgb[same])
        self._pending[rows, cols] = False
        return row_span(rows)

    def _reset(self, shape: tuple[int, int]) -> None:
        """Images of an empty map, as the assembler starts one (not received, confidence 0), so
        that a first update of a big map colours only its received points."""
        code = NOT_RECEIVED + _OFFSET
        self.phase = _filled(shape, self.phase_lut[code])
        self.ipf = _filled(shape, self._ipf_base_lut[code])
        self.confidence = _filled(shape, self._not_received)
        self._pending = np.zeros(shape, dtype=bool)
        self._pending_rows = None
        self._future = self._job = None  # a call in flight colours the map replaced: dropped
        self.received_points = 0
        # Zeros cost nothing until written (the kernel maps pages lazily): 64 MB of quaternions at 2048×2048.
        self._coloured = _Coloured(np.full(shape, NOT_RECEIVED, dtype=np.int16), np.zeros(shape, dtype=np.float32),
                                   np.zeros((*shape, 4), dtype=np.float32), np.zeros(shape, dtype=bool))


def _filled(shape: tuple[int, int], rgb: np.ndarray) -> np.ndarray:
    """A (rows, cols, 3) image of one colour, copied a row at a time: ten times faster than
    copying a broadcast colour, 2 ms instead of 20 ms at 2048×2048."""
    image = np.empty((*shape, 3), dtype=np.uint8)
    image[:] = np.tile(rgb, (shape[1], 1))
    return image


@dataclass(frozen=True)
class _IpfJob:
    """Points to IPF-colour, all of one Laue group, with the result they hold now."""

    rows: np.ndarray
    cols: np.ndarray
    class_id: np.ndarray
    quaternions: np.ndarray
    point_group: object


@dataclass
class _Coloured:
    """The class code, confidence and quaternion each image point was last coloured with, and
    whether it was received: the window's copy of the map."""

    class_id: np.ndarray
    confidence: np.ndarray
    quaternions: np.ndarray
    received: np.ndarray

    @property
    def scan_shape(self) -> tuple[int, int]:
        return self.class_id.shape
