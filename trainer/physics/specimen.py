"""Synthetic specimens: the ground truth a simulated scan is drawn from.

A specimen is a grain structure on the scan grid with a phase and an orientation per grain,
a small orientation gradient inside each grain, flagged grain boundaries (where a real
pattern mixes two crystals) and holes with no pattern at all. Because every label is
exact, a network trained or tested on patterns simulated from it is scored against the
truth, not against another indexing program's guesses.

Grains are a Laguerre (power) tessellation: Voronoi cells whose seeds carry weights, so the
cell sizes follow a chosen distribution instead of the fixed spread of Poisson-Voronoi. The
weights and seed positions are found by a few rounds of the capacity-constrained Lloyd
iteration (move each seed to its cell's centroid, grow the cells that are too small).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orix.io
from orix.crystal_map import CrystalMap, Phase, PhaseList
from orix.quaternion import Rotation
from orix.vector import Miller
from scipy import ndimage
from scipy.spatial import cKDTree

from .catalogue import get_phase_entry
from .errors import PhysicsInputError, check_number
from .sampling import uniform_quaternions

MAX_SCAN_SIDE = 8192
MAX_SCAN_POINTS = 4096 * 4096
FRACTION_TOLERANCE = 1e-3

_LLOYD_ROUNDS = 8
_WEIGHT_STEP = 0.3
"""Weight change per pixel of area deficit; larger steps oscillate (measured), smaller ones
need more rounds."""
_COARSE_GRAIN_PIXELS = 6
"""The Lloyd rounds run on a grid coarsened so that a mean grain spans about this many
cells across: enough to place the cells, and much cheaper on large grains."""
_MEAN_ANGLE_PER_SIGMA = 2 * math.sqrt(2 / math.pi)
"""Mean length of a 3-D Gaussian vector with unit standard deviation per axis (the Maxwell
mean), which turns a mean misorientation into the per-axis spread of a rotation vector."""
_PHASE_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple",
                  "tab:brown", "tab:pink", "tab:gray", "tab:olive", "tab:cyan")


@dataclass(frozen=True)
class RandomTexture:
    """Orientations uniform over SO(3): no texture."""


@dataclass(frozen=True)
class ComponentTexture:
    """Grains scattered about one orientation (Bunge Euler angles, degrees); ``spread`` is
    the mean misorientation angle from it, in degrees."""

    euler: tuple[float, float, float]
    spread: float = 10.0

    def __post_init__(self) -> None:
        _check_vector("texture.euler", self.euler)
        check_number("texture.spread", self.spread, 0.0, 60.0, "degrees")


@dataclass(frozen=True)
class FibreTexture:
    """A crystal direction [uvw] (three-index, in the phase's lattice) parallel to a sample
    direction, with any rotation about it; ``spread`` is the mean angle of the scatter
    rotation in degrees (the fibre axis itself tilts by π/4 of that on average)."""

    crystal_direction: tuple[float, float, float]
    sample_direction: tuple[float, float, float] = (0.0, 0.0, 1.0)
    spread: float = 10.0

    def __post_init__(self) -> None:
        _check_direction("texture.crystal_direction", self.crystal_direction)
        _check_direction("texture.sample_direction", self.sample_direction)
        check_number("texture.spread", self.spread, 0.0, 60.0, "degrees")


Texture = RandomTexture | ComponentTexture | FibreTexture


@dataclass(frozen=True)
class SpecimenSpec:
    """What to grow. Checked on construction; a bad field raises ``PhysicsInputError``
    naming it, and phase names are resolved through the catalogue (aliases and case
    allowed; stored under their catalogue names).

    Sizes are in scan steps so that a spec means the same map at any ``step_size``.
    """

    scan_shape: tuple[int, int] = (100, 100)
    step_size: float = 1.0
    """Micrometres between scan points, the same along x and y."""
    phases: Mapping[str, float] | tuple[tuple[str, float], ...] = (("Ni", 1.0),)
    """Phase name → area fraction of the specimen (holes excluded); fractions sum to 1."""
    grain_size: float = 10.0
    """Diameter of the circle with the mean grain area (the planimetric grain size)."""
    grain_size_spread: float = 0.3
    """Standard deviation of the log of the target grain diameters, up to 0.4: beyond it
    the Lloyd rounds let large cells swallow small ones (measured: 2 % of the grains lost at
    0.4, 5-12 % at 0.5). 0 gives near-equal grains, with a measured spread of the log
    diameter of ≈ 0.09; at 0.3 it is ≈ 0.32."""
    texture: Texture = field(default_factory=RandomTexture)
    intragrain_spread: float = 0.5
    """Mean misorientation of a pixel from its grain's mean orientation (GOS), degrees."""
    intragrain_length: float = 3.0
    """Correlation length of the in-grain orientation field in steps; 0 scatters each
    pixel independently, larger values give smooth orientation gradients."""
    empty_fraction: float = 0.0
    """Share of scan points with no pattern (holes, off-specimen): phase id -1."""
    empty_size: float | None = None
    """Typical hole diameter in steps; None uses the grain size."""
    seed: int = 0

    def __post_init__(self) -> None:
        _check_scan_shape(self.scan_shape)
        object.__setattr__(self, "scan_shape", tuple(int(v) for v in self.scan_shape))
        check_number("step_size", self.step_size, 0.0, 1e6, "µm", low_open=True)
        object.__setattr__(self, "phases", _checked_phases(self.phases))
        check_number("grain_size", self.grain_size, 1.0, 10.0 * max(self.scan_shape),
                      "scan steps")
        check_number("grain_size_spread", self.grain_size_spread, 0.0, 0.4, "")
        if not isinstance(self.texture, (RandomTexture, ComponentTexture, FibreTexture)):
            raise PhysicsInputError(f"texture: must be a RandomTexture, ComponentTexture or "
                                    f"FibreTexture, got {self.texture!r}")
        check_number("intragrain_spread", self.intragrain_spread, 0.0, 30.0, "degrees")
        largest = 10.0 * max(self.scan_shape)
        check_number("intragrain_length", self.intragrain_length, 0.0, largest, "scan steps")
        check_number("empty_fraction", self.empty_fraction, 0.0, 0.95, "")
        if self.empty_size is not None:
            check_number("empty_size", self.empty_size, 1.0, largest, "scan steps")
        if (isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer))
                or self.seed < 0):
            raise PhysicsInputError(f"seed: must be a non-negative integer, got {self.seed!r}")

    @property
    def phase_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.phases)

    @property
    def fractions(self) -> np.ndarray:
        return np.array([fraction for _, fraction in self.phases])


@dataclass(frozen=True, eq=False)
class Specimen:
    """The ground truth of one specimen on its scan grid: arrays are (rows, cols) with rows
    along y, so scan index row·cols + col (the wire protocol's) is their flat, row-major order.

    ``phase_id`` indexes ``phase_list`` (the order of ``spec.phases``); -1 marks scan points
    with no pattern, which also have ``grain_id`` -1 and the identity rotation.
    ``boundary`` flags points whose 4-neighbour lies in another grain or a hole, where a
    real pattern is a mixture or partly shadowed.
    """

    spec: SpecimenSpec
    phase_id: np.ndarray
    grain_id: np.ndarray
    quaternions: np.ndarray
    """(rows, cols, 4) unit quaternions (w, x, y, z), orix convention."""
    boundary: np.ndarray
    phase_list: PhaseList

    @property
    def empty(self) -> np.ndarray:
        return self.phase_id < 0

    @property
    def n_grains(self) -> int:
        return int(self.grain_id.max()) + 1

    def to_crystal_map(self) -> CrystalMap:
        """The truth as an orix ``CrystalMap`` in µm, with ``grain_id`` and ``boundary``
        (as 0/1, which orix's HDF5 writer stores) among its properties."""
        rows, cols = self.spec.scan_shape
        y, x = np.mgrid[0:rows, 0:cols].astype(float) * self.spec.step_size
        return CrystalMap(
            rotations=Rotation(self.quaternions.reshape(-1, 4)),
            phase_id=self.phase_id.ravel(),
            x=x.ravel(),
            y=y.ravel(),
            phase_list=self.phase_list.deepcopy(),
            prop={"grain_id": self.grain_id.ravel(),
                  "boundary": self.boundary.ravel().astype(np.uint8)},
            scan_unit="um",
        )

    def save(self, path: str | Path, overwrite: bool = False) -> None:
        """Write the truth with orix's HDF5 writer (``orix.io.load`` reads it back).
        Refuses to replace a file unless told: orix itself would ask on the terminal."""
        path = Path(path)
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace it")
        orix.io.save(path, self.to_crystal_map(), overwrite=True)


def make_specimen(spec: SpecimenSpec) -> Specimen:
    """Grow the specimen that ``spec`` describes; the same spec gives the same specimen."""
    rng = np.random.default_rng(spec.seed)
    phases = [get_phase_entry(name).phase() for name in spec.phase_names]
    cells = _tessellate(spec.scan_shape, spec.grain_size, spec.grain_size_spread, rng)
    hole_size = spec.empty_size or spec.grain_size
    empty = _empty_mask(spec.scan_shape, spec.empty_fraction, hole_size, rng)
    grain_id = _relabel(np.where(empty, -1, cells))
    areas = np.bincount(grain_id[~empty])
    grain_phase = _assign_phases(areas, spec.fractions, rng)
    grain_quats = _grain_orientations(grain_phase, phases, spec.texture, rng)
    scatter = _intragrain_rotvecs(grain_id, spec.intragrain_spread, spec.intragrain_length, rng)
    quats = np.tile(np.array([1.0, 0.0, 0.0, 0.0]), (*spec.scan_shape, 1))
    inside = ~empty
    scattered = Rotation(_rotvec_to_quat(scatter[inside])) * Rotation(grain_quats[grain_id[inside]])
    quats[inside] = scattered.data
    return Specimen(
        spec=spec,
        phase_id=np.where(empty, -1, grain_phase[np.maximum(grain_id, 0)]).astype(np.int32),
        grain_id=grain_id.astype(np.int32),
        quaternions=quats,
        boundary=_boundaries(grain_id),
        phase_list=_phase_list(phases),
    )


def _tessellate(shape: tuple[int, int], grain_size: float, spread: float,
                rng: np.random.Generator) -> np.ndarray:
    """Cell labels 0..n-1 over the scan, mean cell area π·grain_size²/4, log-normal areas.

    The target areas are handed out by rank of the plain Voronoi cells of the seeds (the
    largest target to the largest cell), which leaves the weights little to do; without
    that, a large cell grows over its small neighbours' seeds and they vanish.
    """
    area = shape[0] * shape[1]
    n = max(1, round(area / (math.pi / 4 * grain_size**2)))
    seeds = rng.random((n, 2)) * shape
    target = np.sort(np.exp(2 * spread * rng.standard_normal(n)))
    target *= area / target.sum()
    weights = np.zeros(n)
    coarse = max(1, int(grain_size // _COARSE_GRAIN_PIXELS))
    points = _pixel_centres(shape, coarse)
    for round_ in range(_LLOYD_ROUNDS if n > 1 else 0):
        labels = _power_cells(seeds, weights, points)
        cell_area = np.bincount(labels, minlength=n) * float(coarse**2)
        if round_ == 0:
            target = target[np.argsort(np.argsort(cell_area, kind="stable"))]
        weights += _WEIGHT_STEP * (target - cell_area)
        seeds = _centroids(labels, points, seeds)
    labels = _power_cells(seeds, weights, _pixel_centres(shape, 1))
    return _relabel(labels.reshape(shape))


def _pixel_centres(shape: tuple[int, int], stride: int) -> np.ndarray:
    rows, cols = (np.arange(stride / 2, side, stride) for side in shape)
    r, c = np.meshgrid(rows, cols, indexing="ij")
    return np.column_stack([r.ravel(), c.ravel()])


def _power_cells(seeds: np.ndarray, weights: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Nearest seed by power distance |p - s|² - w, exactly, via a nearest-neighbour query
    in 3-D: lifting each seed to height sqrt(max w - w) adds a constant minus w to every
    squared distance."""
    height = np.sqrt(weights.max() - weights)
    tree = cKDTree(np.column_stack([seeds, height]))
    _, labels = tree.query(np.column_stack([points, np.zeros(len(points))]), workers=-1)
    return labels


def _centroids(labels: np.ndarray, points: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Each seed moved to its cell's centroid; seeds with an empty cell stay put."""
    counts = np.bincount(labels, minlength=len(seeds))
    moved = seeds.copy()
    has = counts > 0
    for axis in range(2):
        sums = np.bincount(labels, weights=points[:, axis], minlength=len(seeds))
        moved[has, axis] = sums[has] / counts[has]
    return moved


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Consecutive ids 0..k-1 for the labels present, in order of first appearance in the
    sorted set; negative labels stay -1."""
    present = labels >= 0
    out = np.full(labels.shape, -1, dtype=np.int64)
    _, out[present] = np.unique(labels[present], return_inverse=True)
    return out


def _empty_mask(shape: tuple[int, int], fraction: float, size: float,
                rng: np.random.Generator) -> np.ndarray:
    """Exactly round(fraction × points) points in blobs: the top of a smoothed noise field."""
    n_empty = round(fraction * shape[0] * shape[1])
    if n_empty == 0:
        return np.zeros(shape, dtype=bool)
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), size / 3, mode="wrap")
    flat = np.zeros(noise.size, dtype=bool)
    flat[np.argpartition(noise.ravel(), -n_empty)[-n_empty:]] = True
    return flat.reshape(shape)


def _assign_phases(areas: np.ndarray, fractions: np.ndarray,
                   rng: np.random.Generator) -> np.ndarray:
    """A phase per grain so that phase areas hit the targets to within about a grain: walk
    the grains in random order and give each the phase whose share of the running total
    its area midpoint falls in."""
    order = rng.permutation(len(areas))
    cumulative = np.cumsum(areas[order])
    midpoints = cumulative - areas[order] / 2
    bounds = np.cumsum(fractions) * cumulative[-1]
    phase = np.empty(len(areas), dtype=np.int64)
    phase[order] = np.minimum(np.searchsorted(bounds, midpoints, side="right"), len(fractions) - 1)
    return phase


def _grain_orientations(grain_phase: np.ndarray, phases: list[Phase], texture: Texture,
                        rng: np.random.Generator) -> np.ndarray:
    """(n_grains, 4) quaternions drawn from the texture, phase by phase because a fibre's
    crystal direction depends on the lattice."""
    quats = np.empty((len(grain_phase), 4))
    for index, phase in enumerate(phases):
        members = np.flatnonzero(grain_phase == index)
        quats[members] = _sample_texture(texture, phase, len(members), rng)
    return quats


def _sample_texture(texture: Texture, phase: Phase, n: int, rng: np.random.Generator) -> np.ndarray:
    if isinstance(texture, RandomTexture):
        return uniform_quaternions(n, rng)
    if isinstance(texture, ComponentTexture):
        return component_quaternions(texture, n, rng)
    crystal = Miller(uvw=texture.crystal_direction, phase=phase).unit.data[0]
    sample = np.asarray(texture.sample_direction, dtype=float)
    onto_fibre = Rotation(_rotation_between(sample / np.linalg.norm(sample), crystal))
    spin = Rotation(_rotvec_to_quat(np.outer(rng.uniform(0, 2 * np.pi, n), crystal)))
    return (Rotation(_scatter_quats(n, texture.spread, rng)) * spin * onto_fibre).data



def component_quaternions(texture: ComponentTexture, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, 4) orientations scattered about the component's ideal one; also the orientations of
    a training set narrowed to one region of orientation space (``DataConfig.texture``)."""
    ideal = Rotation.from_euler(texture.euler, degrees=True)
    return (Rotation(_scatter_quats(n, texture.spread, rng)) * ideal).data


def _scatter_quats(n: int, mean_angle_deg: float, rng: np.random.Generator) -> np.ndarray:
    """Rotations with isotropic Gaussian rotation vectors whose mean angle is the given one."""
    sigma = math.radians(mean_angle_deg) / _MEAN_ANGLE_PER_SIGMA
    return _rotvec_to_quat(sigma * rng.standard_normal((n, 3)))


def _rotvec_to_quat(rotvec: np.ndarray) -> np.ndarray:
    """Rotation vectors (axis × angle, radians) to unit quaternions; the sinc form needs no
    special case at zero angle."""
    angle = np.linalg.norm(rotvec, axis=-1, keepdims=True)
    return np.concatenate([np.cos(angle / 2), 0.5 * np.sinc(angle / (2 * np.pi)) * rotvec], axis=-1)


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation taking unit vector a onto unit vector b, as a quaternion."""
    axis = np.cross(a, b)
    cos = float(np.clip(np.dot(a, b), -1.0, 1.0))
    if np.linalg.norm(axis) < 1e-12:
        if cos > 0:
            return np.array([1.0, 0.0, 0.0, 0.0])
        helper = np.eye(3)[np.argmin(np.abs(a))]
        axis = np.cross(a, helper)
    return _rotvec_to_quat(axis / np.linalg.norm(axis) * math.acos(cos))


def _intragrain_rotvecs(grain_id: np.ndarray, spread_deg: float, length: float,
                        rng: np.random.Generator) -> np.ndarray:
    """(rows, cols, 3) rotation vectors with zero mean in every grain and mean length equal
    to ``spread_deg``, so the spread measured about each grain's mean orientation is the
    one asked for, whatever the smoothing did."""
    if spread_deg == 0:
        return np.zeros((*grain_id.shape, 3))
    field_ = rng.standard_normal((3, *grain_id.shape))
    if length > 0:
        field_ = ndimage.gaussian_filter(field_, (0, length, length), mode="reflect")
    inside = grain_id >= 0
    labels = grain_id[inside]
    counts = np.bincount(labels)
    vectors = np.zeros((*grain_id.shape, 3))
    for axis in range(3):
        values = field_[axis][inside]
        vectors[inside, axis] = values - (np.bincount(labels, weights=values) / counts)[labels]
    mean_length = np.linalg.norm(vectors[inside], axis=1).mean()
    if mean_length > 0:
        vectors *= math.radians(spread_deg) / mean_length
    return vectors


def _boundaries(grain_id: np.ndarray) -> np.ndarray:
    """Points with a 4-neighbour in another grain or a hole (holes themselves excluded)."""
    boundary = np.zeros(grain_id.shape, dtype=bool)
    vertical = grain_id[1:] != grain_id[:-1]
    horizontal = grain_id[:, 1:] != grain_id[:, :-1]
    boundary[1:] |= vertical
    boundary[:-1] |= vertical
    boundary[:, 1:] |= horizontal
    boundary[:, :-1] |= horizontal
    return boundary & (grain_id >= 0)


def _phase_list(phases: list[Phase]) -> PhaseList:
    for index, phase in enumerate(phases):
        phase.color = _PHASE_COLOURS[index % len(_PHASE_COLOURS)]
    return PhaseList(phases=phases, ids=list(range(len(phases))))


def _checked_phases(phases: object) -> tuple[tuple[str, float], ...]:
    """Phase names resolved through the catalogue, fractions checked; as (name, fraction)."""
    items = list(phases.items()) if isinstance(phases, Mapping) else list(phases)
    if not items:
        raise PhysicsInputError("phases: at least one phase is needed")
    checked = []
    for item in items:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise PhysicsInputError(f"phases: entries must be (name, fraction) pairs, got {item!r}")
        name, fraction = item
        check_number("phases", fraction, 0.0, 1.0, f"(fraction of {name!r})")
        checked.append((get_phase_entry(str(name)).name, float(fraction)))
    names = [name for name, _ in checked]
    if len(set(names)) != len(names):
        raise PhysicsInputError(f"phases: a phase is listed twice (catalogue names {names})")
    total = sum(fraction for _, fraction in checked)
    if abs(total - 1.0) > FRACTION_TOLERANCE:
        raise PhysicsInputError(
            f"phases: fractions must sum to 1 (±{FRACTION_TOLERANCE:g}), got {total:g}")
    return tuple(checked)


def _check_scan_shape(shape: object) -> None:
    if (not isinstance(shape, (tuple, list)) or len(shape) != 2
            or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in shape)):
        raise PhysicsInputError(
            f"scan_shape: must be a pair of integers (rows, cols), got {shape!r}")
    if min(shape) < 1 or max(shape) > MAX_SCAN_SIDE:
        raise PhysicsInputError(
            f"scan_shape: each side must be within [1, {MAX_SCAN_SIDE}], got {tuple(shape)}")
    if shape[0] * shape[1] > MAX_SCAN_POINTS:
        raise PhysicsInputError(
            f"scan_shape: {shape[0]}×{shape[1]} is more than {MAX_SCAN_POINTS} scan points")



def _check_vector(field_name: str, value: object) -> None:
    if not isinstance(value, (tuple, list)) or len(value) != 3:
        raise PhysicsInputError(f"{field_name}: must be three numbers, got {value!r}")
    for component in value:
        check_number(field_name, component, -1e6, 1e6, "")


def _check_direction(field_name: str, value: object) -> None:
    _check_vector(field_name, value)
    if not any(value):
        raise PhysicsInputError(f"{field_name}: must not be the zero vector")
