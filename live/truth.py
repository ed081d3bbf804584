"""Scoring a live map against the ground truth of a simulated specimen.

The truth is the orix HDF5 ``CrystalMap`` that ``Specimen.save`` writes: catalogue phase
names, phase id -1 for points without a pattern, one rotation per point in scan order. A
model does not predict those phases directly, so the truth is first translated into the
model's classes: a lattice model (every class name a Pearson symbol such as ``cF``) expects
each phase's Bravais lattice from the catalogue, a phase model expects the phase name.
Empty points expect "not indexed".
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import orix.io
from orix.crystal_map import Phase
from orix.quaternion import Orientation

from diffstream.engines.model_card import ModelClass
from diffstream.trainer.physics.catalogue import BRAVAIS_LATTICES, get_phase_entry
from diffstream.trainer.physics.errors import PhysicsInputError

from .map_assembler import NOT_INDEXED, MapSnapshot

OUTSIDE_MODEL = -3
"""Expected code of a truth phase that none of the model's classes stands for: no
prediction can match it, so such points count as wrong."""


class TruthError(ValueError):
    """A ground-truth file that exists but cannot be used."""


@dataclass(frozen=True)
class Truth:
    """The truth on the scan grid: ``phase_id`` (rows, cols) with -1 for empty points,
    ``phase_names`` by phase id, ``quaternions`` (rows, cols, 4) in orix convention."""

    path: Path
    phase_id: np.ndarray
    phase_names: dict[int, str]
    quaternions: np.ndarray

    @property
    def scan_shape(self) -> tuple[int, int]:
        return self.phase_id.shape

    def expected_class_id(self, class_names: Sequence[str]) -> np.ndarray:
        """(rows, cols) int16 of the class each point should get, in the codes of
        ``MapSnapshot.class_id``: a class index, ``NOT_INDEXED`` for empty points, or
        :data:`OUTSIDE_MODEL` for a phase the model has no class for."""
        names = list(class_names)
        lattice_model = all(name in BRAVAIS_LATTICES for name in names)
        expected = np.full(self.scan_shape, NOT_INDEXED, dtype=np.int16)
        for phase_id, phase_name in self.phase_names.items():
            label = self._lattice(phase_name) if lattice_model else phase_name
            expected[self.phase_id == phase_id] = names.index(label) if label in names else OUTSIDE_MODEL
        return expected

    def _lattice(self, phase_name: str) -> str:
        try:
            return get_phase_entry(phase_name).bravais_lattice
        except PhysicsInputError:
            raise TruthError(f"{self.path}: phase {phase_name!r} is not in the catalogue, so its Bravais "
                             f"lattice is unknown") from None


def load_truth(path: str | Path) -> Truth:
    """Read a ground truth written by ``Specimen.save``; a missing file raises
    ``FileNotFoundError`` and an unreadable one :class:`TruthError`, both naming the path."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no ground truth file at {path}")
    try:
        xmap = orix.io.load(path)
    except Exception as error:  # h5py and orix raise many types for a foreign or truncated file
        raise TruthError(f"cannot read ground truth {path} ({type(error).__name__}: {error})") from None
    if xmap.ndim != 2 or xmap.size != xmap.shape[0] * xmap.shape[1]:
        raise TruthError(f"ground truth {path} is not a full 2-D scan grid (shape {xmap.shape})")
    return Truth(
        path=path,
        phase_id=xmap.phase_id.reshape(xmap.shape).astype(np.int32),
        phase_names={pid: phase.name for pid, phase in xmap.phases if pid >= 0},
        quaternions=xmap.rotations.data.reshape(*xmap.shape, 4),
    )


def accuracy(truth: Truth, snapshot: MapSnapshot, class_names: Sequence[str]) -> float:
    """Share of all scan points whose class matches the truth: an empty point the model
    calls not indexed is right, a point never received is wrong."""
    _check_shapes(truth, snapshot)
    return float(np.mean(snapshot.class_id == truth.expected_class_id(class_names)))


def orientation_error_deg(truth: Truth, snapshot: MapSnapshot, classes: Sequence[ModelClass]) -> float | None:
    """Median disorientation (degrees) over the correctly classified points of classes
    with orientations, under each class's Laue group (diffraction cannot tell a crystal
    from its inverse); None when there are no such points."""
    _check_shapes(truth, snapshot)
    correct = snapshot.class_id == truth.expected_class_id([c.name for c in classes])
    angles = []
    for class_id, model_class in enumerate(classes):
        mask = correct & (snapshot.class_id == class_id)
        if not model_class.orientation or not mask.any():
            continue
        laue = Phase(point_group=model_class.point_group).point_group.laue
        expected = Orientation(truth.quaternions[mask], symmetry=laue)
        found = Orientation(snapshot.quaternions[mask].astype(np.float64), symmetry=laue)
        angles.append(expected.angle_with(found, degrees=True))
    return float(np.median(np.concatenate(angles))) if angles else None


def _check_shapes(truth: Truth, snapshot: MapSnapshot) -> None:
    if truth.scan_shape != snapshot.scan_shape:
        raise ValueError(f"ground truth {truth.path} is {truth.scan_shape}, the map is {snapshot.scan_shape}")
