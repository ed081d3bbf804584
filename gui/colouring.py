"""The live window's three map images as uint8 RGB, coloured from snapshots without Qt.

Colours come from :mod:`diffstream.live.map_images`, so the window and the PNG files agree.
IPF colouring is the expensive part: orix takes about 90 ms for a whole 200×200 map and 390 ms
for a 500×500 one, about 2 µs a point plus 5-15 ms a call whatever its size (a call per Laue
group; measured on the shared, busy development CPU). :class:`MapColours` therefore keeps all
three images between paints and recolours only the points whose result changed since the
previous snapshot: phase and confidence at once by table look-up, IPF in
:meth:`MapColours.colour_ipf`, which the painter calls less often and which makes one orix call
for at most :data:`IPF_POINTS_PER_CALL` points, which keeps a paint near 30 ms or under even
while it catches up with a 500×500 scan the window has fallen behind on.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib import colormaps

from diffstream.engines.model_card import ModelClass
from diffstream.live.map_assembler import NOT_INDEXED, NOT_RECEIVED, MapSnapshot
from diffstream.live.map_images import (
    NO_ORIENTATION_RGB,
    NOT_INDEXED_RGB,
    NOT_RECEIVED_RGB,
    class_colours,
    class_point_groups,
    ipf_colours,
)

IPF_POINTS_PER_CALL = 3000
"""Most points IPF-coloured per :meth:`MapColours.colour_ipf`: about 10-25 ms of orix time."""
_OFFSET = -NOT_INDEXED
"""Look-up tables are indexed by class code + 2: not indexed, not received, then the classes."""


def to_uint8(rgb: np.ndarray) -> np.ndarray:
    """Float RGB in [0, 1] as the uint8 the images hold (round to nearest)."""
    return np.clip(np.rint(np.asarray(rgb, dtype=float) * 255.0), 0, 255).astype(np.uint8)


class MapColours:
    """Phase, IPF-Z and confidence images of the latest snapshot given to :meth:`update`.

    ``phase``, ``ipf`` and ``confidence`` are (rows, cols, 3) uint8 arrays, updated in place
    (and replaced when the scan shape changes); None before the first update. IPF colours of
    points of oriented classes wait in :attr:`pending` for :meth:`colour_ipf` and show grey
    (as not received) until then. ``phase_lut[code + 2]`` is the phase colour of a class code
    (see :mod:`diffstream.live.map_assembler`), which the window's legend shows too.
    """

    def __init__(self, classes: Sequence[ModelClass], ipf_points_per_call: int = IPF_POINTS_PER_CALL) -> None:
        self.classes = tuple(classes)
        self.ipf_points_per_call = int(ipf_points_per_call)
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
        self.phase: np.ndarray | None = None
        self.ipf: np.ndarray | None = None
        self.confidence: np.ndarray | None = None
        self._snapshot: MapSnapshot | None = None
        self._pending: np.ndarray | None = None

    @property
    def laue_groups(self) -> int:
        """Laue groups among the oriented classes: the orix calls a full IPF refresh takes."""
        return len(self._groups)

    @property
    def pending(self) -> int:
        """Points of oriented classes still waiting for their IPF colour."""
        return 0 if self._pending is None else int(np.count_nonzero(self._pending))

    def update(self, snapshot: MapSnapshot) -> None:
        """Recolour the points of ``snapshot`` that changed: phase and confidence now, IPF
        marked pending for :meth:`colour_ipf`.

        A snapshot of another shape (a new scan) starts all images afresh. In one of the
        same shape, a point has changed when its class code, confidence or quaternion differ
        from the previous snapshot's, which also covers a new scan of the same size.
        """
        rows, cols = np.nonzero(self._changed(snapshot))
        self._snapshot = snapshot
        codes = snapshot.class_id[rows, cols].astype(np.intp) + _OFFSET
        self.phase[rows, cols] = self.phase_lut[codes]
        levels = np.clip(snapshot.confidence[rows, cols] * 255.0 + 0.5, 0, 255).astype(np.uint8)
        self.confidence[rows, cols] = np.where((codes == NOT_RECEIVED + _OFFSET)[:, None], self._not_received,
                                               self._confidence_lut[levels])
        self.ipf[rows, cols] = self._ipf_base_lut[codes]
        self._pending[rows, cols] = self._oriented_lut[codes]

    def colour_ipf(self) -> None:
        """IPF-colour up to ``ipf_points_per_call`` pending points of one Laue group, the groups
        taking turns: one orix call, so that a paint never pays for more than one."""
        rows, cols = np.nonzero(self._pending)
        if rows.size == 0:
            return
        snapshot = self._snapshot
        groups = self._group_of_class[snapshot.class_id[rows, cols]]
        waiting = np.unique(groups)
        group = next((g for g in waiting if g >= self._turn), waiting[0])
        self._turn = group + 1
        here = np.flatnonzero(groups == group)[:self.ipf_points_per_call]
        rows, cols = rows[here], cols[here]
        point_group = self._point_groups[int(np.argmax(self._group_of_class == group))]
        self.ipf[rows, cols] = to_uint8(ipf_colours(snapshot.quaternions[rows, cols], point_group))
        self._pending[rows, cols] = False

    def _changed(self, snapshot: MapSnapshot) -> np.ndarray:
        """Points whose result differs from the previous snapshot's (all of them after a reset)."""
        previous = self._snapshot
        if previous is None or previous.scan_shape != snapshot.scan_shape:
            shape = snapshot.scan_shape
            self.phase, self.ipf, self.confidence = (np.empty((*shape, 3), dtype=np.uint8) for _ in range(3))
            self._pending = np.zeros(shape, dtype=bool)
            return np.ones(shape, dtype=bool)
        # Quaternions compared bit for bit as two uint64 per point: 0.3 ms instead of 3.5 ms at 500×500.
        now = snapshot.quaternions.view(np.uint64)
        before = previous.quaternions.view(np.uint64)
        return ((snapshot.class_id != previous.class_id) | (snapshot.confidence != previous.confidence)
                | (now[..., 0] != before[..., 0]) | (now[..., 1] != before[..., 1]))
