"""Orientations of SPED / 4D-STEM frames by template matching, as ASTAR and pyxem index them.

Paper 2's labels came from template matching (ASTAR), and a network trained on uniformly
random orientations is still far from a degree (docs/models.md). Matching finishes the job
the way the indexing programs do, on the same kinematic physics the frames are simulated with
(:mod:`.sped`):

1. **Templates.** A spot pattern depends on the beam direction in the crystal (two angles)
   and on the crystal's turn about the beam (one). Turning about the beam only turns the
   pattern, so one template per beam direction suffices: directions every ``resolution_deg``
   over the fundamental sector of the phase's *proper* point group (orix's S² sampling, as
   ``orix.sampling.get_sample_reduced_fundamental`` makes it). The proper group's sector is
   twice the Laue group's that pyxem samples and completes with mirrored templates, which
   assumes Friedel's law; the Ewald sphere's curvature breaks it, and twice the templates
   cost less than a wrong twin. Each template is its spots in polar coordinates (radius,
   azimuth), weighted by intensity to the power ``intensity_power``: weak high-order spots
   carry most of the orientation, as paper 2's log scaling also says.
2. **Frames** are log-scaled, correlated with the probe's disc (a matched filter), the
   diffuse halo taken off as each ring's median, and resampled onto the same polar grid
   (1 px by 1°).
3. **Grid search.** The correlation of a template with a frame at every turn about the beam
   is a circular cross-correlation along the azimuth, so all 360 turns of all templates come
   from one matrix product per azimuthal frequency and an inverse FFT (pyxem computes the
   same sums spot by spot). The best ``candidates`` answers at least ``DISTINCT_DEG`` apart
   go on.
4. **Local refinement.** From each candidate, the best one's twin half-turned about the
   beam and any guess given (a network's answer), a pattern search over small rotations,
   halving its step from ``resolution_deg / 2``, maximises the same
   correlation on the Cartesian frame (bilinear samples at the simulated spot centres), which
   removes the grid's steps; each frame keeps its best candidate.

Each frame's ``index`` is its best correlation and ``reliability`` ASTAR's
100·(1 − Q₂/Q₁), Q₂ the best refined candidate more than ``DISTINCT_DEG`` away, up to the
crystal's rotational symmetry (a guess may arrive at another symmetry equivalent): paper 2
kept frames with index ≥ 20 and reliability ≥ 15 on ASTAR's scale; the scale here is not
ASTAR's, but a reliability near zero means the same: two orientations explain the pattern
equally well.

The direct beam is taken to sit where ``SpedGeometry.centre`` puts it: a descan drift of a
pixel or more needs correcting before matching.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import scipy.fft
from orix.crystal_map import Phase
from orix.quaternion import Rotation
from orix.sampling import sample_S2
from scipy.signal import fftconvolve

from .errors import PhysicsInputError
from .sped import simulate_spots
from .sped_geometry import ReflectionTable, SpedGeometry

RESOLUTION_DEG = 1.5
"""Spacing of the templates' beam directions (6,241 for LiNiO2's proper group 32). On 200
LiNiO2 test frames (templates at 50 nm), 2° left 12 % of frames on a wrong answer, 1.5° 9 %,
1° (13,689 templates, 1.6 times the time) 9.5 %; refinement takes the right ones to the same
0.27° median from each."""
CANDIDATES = 3
"""Grid answers refined per frame, the best kept."""
DISTINCT_DEG = 5.0
"""Grid candidates closer than this (plain misorientation: they come from one fundamental
sector) are the same answer from neighbouring templates; the reliability's second answer
lies at least this far from the first up to the crystal's symmetry."""
INTENSITY_POWER = 0.25
"""Template spot weight = intensity ** power: 1 would let the two or three strongest
reflections decide, 0 would weigh barely excited ones like the strongest."""
TEMPLATE_THICKNESS_NM = 70.0
"""Foil thickness the templates are simulated at: it sets which spots a template counts as
excited (the rel-rod width). Over 300 LiNiO2 frames of 30-100 nm foils, 35, 50, 70, 90 and
120 nm left 13.7, 11.3, 11.0, 12.0 and 16.0 % of frames on a wrong answer."""
MIN_RADIUS_PX = 3
"""Rings inside this radius hold the direct beam's disc and carry no orientation."""
MIN_RELIABILITY = 5.0
"""Reliability below which a frame's answer is not trusted. Over 1,000 LiNiO2 test frames,
12.8 % of all answers but 0.9 % of those at reliability ≥ 5 (two thirds of the frames) were
more than 5° off; ≥ 2 kept 73 % with 1.5 % off, ≥ 10 kept 53 % with 0.2 % off."""
REFINE_STEPS = 5
"""Halvings of the local search's step: from half the grid spacing to 1/32 of it."""
_AZIMUTH_BINS = 360
_FREQUENCIES = 96
"""Azimuthal Fourier components kept in the grid search: the matched filter leaves little
above them (keeping all 181 changed no answer on 200 LiNiO2 frames), and they halve the
bank's memory."""
_TEMPLATE_CHUNK = 2048
_FRAME_CHUNK = 64
_MAX_MOVES = 12
"""Moves per step size at most; a start rarely needs more than three."""
_SHORTLIST = 24
"""Grid answers per frame kept for choosing ``candidates`` distinct ones."""


@dataclasses.dataclass(frozen=True)
class SpedIndexing:
    """Orientations of N frames as (N, 3, 3) matrices (orix's ``Rotation.to_matrix()``, the
    network's ``rotation_matrix`` convention), each frame's correlation index and ASTAR-style
    reliability (module docstring)."""

    matrices: np.ndarray
    index: np.ndarray
    reliability: np.ndarray

    def reliable(self, min_reliability: float = MIN_RELIABILITY) -> np.ndarray:
        """Frames no second, distinct orientation explains nearly as well."""
        return self.reliability >= min_reliability


class SpedIndexer:
    """Indexes frames of one phase on one ``geometry`` (module docstring). The template bank
    is built once (about 9 s and 300 MB for LiNiO2 at 1.5° on 128 × 128 frames), so a scan
    indexed chunk by chunk pays for it once."""

    def __init__(self, phase: Phase, geometry: SpedGeometry, *, resolution_deg: float = RESOLUTION_DEG,
                 candidates: int = CANDIDATES, intensity_power: float = INTENSITY_POWER,
                 thickness_nm: float = TEMPLATE_THICKNESS_NM) -> None:
        if not (np.isfinite(resolution_deg) and 0.5 <= resolution_deg <= 10):
            raise PhysicsInputError(f"resolution_deg: {resolution_deg!r} must lie in [0.5, 10] degrees")
        if isinstance(candidates, bool) or not isinstance(candidates, int) or candidates < 1:
            raise PhysicsInputError(f"candidates: {candidates!r} must be a positive integer")
        self.geometry = geometry
        self.resolution_deg = float(resolution_deg)
        self.candidates = candidates
        self.intensity_power = float(intensity_power)
        self.thickness_nm = float(thickness_nm)
        self.table = ReflectionTable.from_phase(phase, geometry.reciprocal_reach)
        self._symmetry = phase.point_group.proper_subgroup.to_matrix().reshape(-1, 3, 3)
        cx, cy = geometry.centre
        rows, cols = geometry.shape
        self.n_rings = int(np.floor(min(cx, cy, cols - 1 - cx, rows - 1 - cy))) + 1
        if self.n_rings <= 2 * MIN_RADIUS_PX:
            raise PhysicsInputError(f"shape: {geometry.shape} with the direct beam at ({cx:g}, {cy:g}) leaves too "
                                    "few rings between the beam and the frame's edge to index")
        self._disc = _disc_kernel(max(geometry.disc_radius_px, 1.0))
        radius, _ = self._polar_coordinates(np.stack(np.mgrid[0:rows, 0:cols][::-1], axis=-1).astype(float))
        self._ring_of_pixel = np.minimum(np.rint(radius).astype(np.int64), self.n_rings - 1)
        self._annulus = (radius >= MIN_RADIUS_PX) & (radius <= self.n_rings - 1)
        self.templates = template_rotations(phase, resolution_deg)
        self._bank = np.concatenate([self._template_spectra(self.templates[start:start + _TEMPLATE_CHUNK])
                                     for start in range(0, self.templates.size, _TEMPLATE_CHUNK)], axis=1)

    def index(self, frames: np.ndarray, guesses: np.ndarray | None = None,
              progress: Callable[[int], None] | None = None) -> SpedIndexing:
        """Index (N, rows, cols) frames in counts; ``guesses`` (N, 3, 3), e.g. a network's
        answers, join each frame's candidates. ``progress`` is called with each chunk's size."""
        frames = np.asarray(frames)
        if frames.ndim != 3 or frames.shape[1:] != self.geometry.shape:
            raise PhysicsInputError(f"frames: expected (N, {self.geometry.shape[0]}, {self.geometry.shape[1]}), "
                                    f"got {frames.shape}")
        if guesses is not None and np.shape(guesses) != (len(frames), 3, 3):
            raise PhysicsInputError(f"guesses: expected ({len(frames)}, 3, 3) matrices, got {np.shape(guesses)}")
        parts = []
        for start in range(0, len(frames), _FRAME_CHUNK):
            chunk = slice(start, start + _FRAME_CHUNK)
            parts.append(self._index_chunk(frames[chunk], None if guesses is None else np.asarray(guesses)[chunk]))
            if progress is not None:
                progress(len(parts[-1][0]))
        return SpedIndexing(*(np.concatenate(arrays) for arrays in zip(*parts)))

    def _index_chunk(self, frames: np.ndarray, guesses: np.ndarray | None) -> tuple[np.ndarray, ...]:
        image = self._prepared(frames)
        starts = self._grid_candidates(self._polar(image))
        starts = np.concatenate([starts, starts[:, :1] @ HALF_TURN], axis=1)
        if guesses is not None:
            starts = np.concatenate([starts, guesses[:, None]], axis=1)
        refined, scores = self._refine(image, starts)
        rows = np.arange(len(frames))
        best = scores.argmax(axis=1)
        matrices, q1 = refined[rows, best], scores[rows, best]
        apart = _misorientation_deg(refined, matrices[:, None], self._symmetry) > DISTINCT_DEG
        q2 = np.maximum(np.where(apart, scores, -np.inf).max(axis=1), 0.0)
        reliability = np.where(q1 > 0, 100 * (1 - q2 / np.where(q1 > 0, q1, 1)), 0.0)
        return matrices, q1.astype(np.float32), reliability.astype(np.float32)

    def _template_spectra(self, rotations: Rotation) -> np.ndarray:
        """(K, T, R) complex: each template's polar spot map, Fourier transformed along the
        azimuth and conjugated, ready for the correlation's matrix products."""
        spots = simulate_spots(self.table, rotations, self.geometry, thickness_nm=self.thickness_nm,
                               with_direct_beam=False)
        radius, azimuth = self._polar_coordinates(spots.xy)
        keep = (radius >= MIN_RADIUS_PX) & (radius <= self.n_rings - 1)
        maps = np.zeros((rotations.size, self.n_rings, _AZIMUTH_BINS), dtype=np.float32)
        ring = np.rint(radius[keep]).astype(np.int64)
        angle = np.rint(azimuth[keep]).astype(np.int64) % _AZIMUTH_BINS
        np.add.at(maps, (spots.pattern_index[keep], ring, angle), spots.intensity[keep] ** self.intensity_power)
        norms = np.linalg.norm(maps.reshape(len(maps), -1), axis=1)
        maps /= np.where(norms > 0, norms, 1)[:, None, None]
        spectra = np.conj(scipy.fft.rfft(maps, axis=2, workers=-1)[:, :, :_FREQUENCIES])
        return np.ascontiguousarray(spectra.transpose(2, 0, 1)).astype(np.complex64)

    def _polar_coordinates(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Radius (px) and azimuth (degrees, from +x towards +y) about the direct beam."""
        cx, cy = self.geometry.centre
        dx, dy = xy[..., 0] - cx, xy[..., 1] - cy
        return np.hypot(dx, dy), np.degrees(np.arctan2(dy, dx)) % 360

    def _prepared(self, frames: np.ndarray) -> np.ndarray:
        """log(1 + counts) through the disc's matched filter, less each ring's median (the
        diffuse halo), in units of its RMS over the annulus the templates cover, so that the
        index does not scale with the dose."""
        logged = np.log1p(np.maximum(frames.astype(np.float32), 0))
        logged = fftconvolve(logged, self._disc[None], mode="same", axes=(1, 2))
        image = logged - np.median(self._polar(logged), axis=2)[:, self._ring_of_pixel]
        rms = np.sqrt(np.mean(image[:, self._annulus] ** 2, axis=1))
        return image / np.where(rms > 0, rms, 1)[:, None, None]

    def _polar(self, images: np.ndarray) -> np.ndarray:
        """(N, rings, 360) bilinear samples of (N, rows, cols) images on the polar grid."""
        radius = np.arange(self.n_rings, dtype=float)[:, None]
        theta = np.radians(np.arange(_AZIMUTH_BINS))[None, :]
        cx, cy = self.geometry.centre
        return _bilinear(images, np.arange(len(images))[:, None, None],
                         (cx + radius * np.cos(theta))[None], (cy + radius * np.sin(theta))[None])

    def _grid_candidates(self, polar: np.ndarray) -> np.ndarray:
        """(N, candidates, 3, 3) best grid answers, at least ``DISTINCT_DEG`` apart."""
        polar = polar.copy()
        polar[:, :MIN_RADIUS_PX] = 0
        spectra = scipy.fft.rfft(polar, axis=2, workers=-1)[:, :, :_FREQUENCIES]
        spectra = spectra.transpose(2, 1, 0).astype(np.complex64)  # (K, R, N)
        n = len(polar)
        top_score = np.full((n, 0), -np.inf)
        top_template = top_turn = np.zeros((n, 0), dtype=np.int64)
        for start in range(0, self._bank.shape[1], _TEMPLATE_CHUNK):
            products = np.matmul(self._bank[:, start:start + _TEMPLATE_CHUNK], spectra)  # (K, T, N)
            correlation = scipy.fft.irfft(products.transpose(2, 1, 0), n=_AZIMUTH_BINS, axis=2, workers=-1)
            turn = correlation.argmax(axis=2)  # (N, T)
            score = np.take_along_axis(correlation, turn[..., None], axis=2)[..., 0]
            template = np.broadcast_to(np.arange(start, start + score.shape[1]), score.shape)
            top_score = np.concatenate([top_score, score], axis=1)
            top_template = np.concatenate([top_template, template], axis=1)
            top_turn = np.concatenate([top_turn, turn], axis=1)
            keep = np.argsort(-top_score, axis=1)[:, :_SHORTLIST]
            top_score, top_template, top_turn = (np.take_along_axis(a, keep, axis=1)
                                                 for a in (top_score, top_template, top_turn))
        # corr[Δ] = Σ template(θ) · frame(θ + Δ): the frame's spots sit Δ further round, which
        # turning the crystal by −Δ about the beam does.
        turns = Rotation.from_axes_angles([0, 0, 1], -np.radians(top_turn))
        shortlist = (self.templates[top_template] * turns).to_matrix().reshape(n, -1, 3, 3)
        return _distinct(shortlist, self.candidates)

    def _refine(self, image: np.ndarray, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pattern search from every start: (N, C, 3, 3) refined matrices and their scores."""
        n, c = starts.shape[:2]
        owner = np.repeat(np.arange(n), c)
        current = starts.reshape(-1, 3, 3)
        score = self._scores(image, current, owner)
        moves = _axis_moves()
        rows = np.arange(len(current))
        step = self.resolution_deg / 2
        for _ in range(REFINE_STEPS):
            for _ in range(_MAX_MOVES):
                trial = np.einsum("mij,njk->nmik", _small_rotations(moves * step), current)
                trial_score = self._scores(image, trial.reshape(-1, 3, 3), np.repeat(owner, len(moves)))
                trial_score = trial_score.reshape(-1, len(moves))
                best = trial_score.argmax(axis=1)
                gain = trial_score[rows, best] > score + 1e-6
                if not gain.any():
                    break
                current = np.where(gain[:, None, None], trial[rows, best], current)
                score = np.where(gain, trial_score[rows, best], score)
            step /= 2
        return current.reshape(n, c, 3, 3), score.reshape(n, c)

    def _scores(self, image: np.ndarray, matrices: np.ndarray, owner: np.ndarray) -> np.ndarray:
        """Correlation of each orientation's spots with its frame ``owner``: Σ wᵢ·image(xᵢ) / ‖w‖."""
        spots = simulate_spots(self.table, Rotation.from_matrix(matrices), self.geometry,
                               thickness_nm=self.thickness_nm, with_direct_beam=False)
        radius, _ = self._polar_coordinates(spots.xy)
        keep = (radius >= MIN_RADIUS_PX) & (radius <= self.n_rings - 1)
        which = spots.pattern_index[keep]
        weight = spots.intensity[keep] ** self.intensity_power
        values = _bilinear(image, owner[which], spots.xy[keep, 0], spots.xy[keep, 1])
        total = np.bincount(which, weights=weight * values, minlength=len(matrices))
        norm = np.sqrt(np.bincount(which, weights=weight**2, minlength=len(matrices)))
        return np.where(norm > 0, total / np.where(norm > 0, norm, 1), -np.inf)


def template_rotations(phase: Phase, resolution_deg: float) -> Rotation:
    """Rotations taking the beam (lab z) onto directions every ``resolution_deg`` over the
    fundamental sector of the phase's proper point group, with no turn about the beam
    (φ₁ = 0), in orix's sampling method for the crystal system."""
    group = phase.point_group.proper_subgroup
    method = {"triclinic": "icosahedral", "monoclinic": "icosahedral", "trigonal": "hexagonal",
              "hexagonal": "hexagonal"}.get(phase.point_group.system, "spherified_cube_edge")
    directions = sample_S2(resolution_deg, method=method)
    directions = directions[directions <= group.fundamental_sector]
    euler = np.column_stack([np.zeros(directions.size), directions.polar,
                             (np.pi / 2 - directions.azimuth) % (2 * np.pi)])
    return Rotation.from_euler(euler)


def _bilinear(images: np.ndarray, which: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Bilinear samples of ``images[which]`` at (x, y), zero off the frame."""
    n, rows, cols = images.shape
    which, x, y = np.broadcast_arrays(which, x, y)
    x0, y0 = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    fx, fy = x - x0, y - y0
    flat = images.reshape(-1)
    out = np.zeros(x.shape, dtype=np.float64)
    for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xi, yi = x0 + dx, y0 + dy
        inside = (xi >= 0) & (xi < cols) & (yi >= 0) & (yi < rows)
        index = (which * rows + np.clip(yi, 0, rows - 1)) * cols + np.clip(xi, 0, cols - 1)
        out += np.where(inside, w * flat[index], 0.0)
    return out


_IDENTITY = np.eye(3)[None]
HALF_TURN = np.diag([-1.0, -1.0, 1.0])
"""Half a turn about the beam, on the right of a ``to_matrix()`` matrix. Friedel's law makes a
pattern and its half-turned twin nearly alike (the Ewald sphere's curvature tells them apart),
so the grid's best answer often scores its twin close behind: the twin is always refined too."""


def _disc_kernel(radius: float) -> np.ndarray:
    """The probe's disc as a unit-sum kernel: correlating a frame with it peaks each spot at
    its centre (a matched filter), so the score rises to the exact spot positions instead of
    staying flat across each disc's plateau."""
    half = int(np.ceil(radius))
    y, x = np.mgrid[-half:half + 1, -half:half + 1]
    disc = np.clip(radius + 0.5 - np.hypot(x, y), 0.0, 1.0)
    return (disc / disc.sum()).astype(np.float32)


def _axis_moves() -> np.ndarray:
    """(27, 3) rotation vectors of the search's neighbourhood: every combination of −1, 0, +1
    steps about the lab x, y and z axes."""
    grid = np.stack(np.meshgrid(*[(-1.0, 0.0, 1.0)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)
    return grid[np.any(grid != 0, axis=1)]


def _small_rotations(vectors_deg: np.ndarray) -> np.ndarray:
    """(M, 3, 3) matrices of rotation vectors given in degrees, in the matrix convention of
    orix's ``to_matrix`` (the lab rotation applied on the left)."""
    angles = np.radians(np.linalg.norm(vectors_deg, axis=1))
    axes = vectors_deg / np.linalg.norm(vectors_deg, axis=1, keepdims=True)
    return Rotation.from_axes_angles(axes, angles).to_matrix().reshape(-1, 3, 3)


def _misorientation_deg(a: np.ndarray, b: np.ndarray, symmetry: np.ndarray = _IDENTITY) -> np.ndarray:
    """Rotation angle between matrices, broadcasting over leading axes; with the crystal's
    rotations ``symmetry`` (K, 3, 3), which make S·b the same orientation as b, the smallest
    over them (plain, no symmetry, by default)."""
    traces = np.einsum("...ij,kil,...lj->...k", a, symmetry, b)
    return np.degrees(np.arccos(np.clip((traces.max(axis=-1) - 1) / 2, -1.0, 1.0)))


def _distinct(shortlist: np.ndarray, count: int) -> np.ndarray:
    """(N, count, 3, 3): per frame, the best answers at least ``DISTINCT_DEG`` apart, in order
    of score, padded with the best when fewer are distinct."""
    n, m = shortlist.shape[:2]
    chosen = np.zeros((n, count), dtype=np.int64)
    taken = np.ones(n, dtype=np.int64)
    for j in range(1, m):
        far = np.ones(n, dtype=bool)
        for k in range(count):
            far &= (k >= taken) | (_misorientation_deg(shortlist[:, j], shortlist[np.arange(n), chosen[:, k]])
                                   > DISTINCT_DEG)
        accept = far & (taken < count)
        chosen[accept, taken[accept]] = j
        taken += accept
    return shortlist[np.arange(n)[:, None], chosen]
