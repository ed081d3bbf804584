"""EBSD master patterns in the square Lambert projection: kinematical ones simulated for any
phase (and cached on disk, because they take seconds to tens of seconds each), dynamical ones
by many-beam Bloch waves (:mod:`.bloch_wave`, cached the same way) or read from EMsoft files.

Defaults and why:

- ``half_size=400`` (801 × 801 px per hemisphere, about 0.18° per pixel): five times finer
  than the centre pixel of a 128 × 128 detector at z* = 0.5 (about 0.9°) and finer than its
  corner pixels (about 0.3°), so the master pattern never limits the detector's resolution;
  both hemispheres (5 MB of float32) stay in a GPU's L2 cache for the torch projector.
- ``min_dspacing=0.5`` Å: bands of higher order are too weak and too wide to show in real
  patterns at EBSD voltages, and the reflector count (hence the time) grows as d⁻³.
- ``min_relative_intensity=0.1``: reflectors with |F| below a tenth of the strongest add
  faint clutter but dominate the cost for large cells.

Structure factors are the package's own (:mod:`.structure_factors`, shared with SPED), not
diffsims': its values draw forbidden bands for hexagonal and trigonal phases (why: there).
Being electron scattering factors with each site's Debye–Waller damping (diffsims' have none),
they also weaken high-order bands of every phase.

``band_jitter`` (training only): each symmetry-distinct band family's structure factor is
scaled by a log-normal factor, so that a network must learn a lattice from the bands'
geometry rather than from its training materials' band strengths (see
:func:`band_family_scales`). It keeps every band and the Laue symmetry, and 0 (the
default) gives the simulated master pattern and its old cache key.

With these, a catalogue phase takes about 4 s (Ni, 338 reflectors) to 20 s (AuSn4, 2282)
once; later calls read the cache in milliseconds. The band summation runs on one thread
(see ``_one_numba_thread``).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import multiprocessing
import os
import re
import sys
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import diffsims
import h5py
import kikuchipy
import numba
import numpy as np
from diffsims.crystallography import ReciprocalLatticeVector
from kikuchipy.signals import EBSDMasterPattern
from kikuchipy.simulations import KikuchiPatternSimulator
from orix.crystal_map import Phase
from scipy.ndimage import gaussian_filter
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from .bloch_wave import (
    DEFAULT_ABSORPTION,
    DEFAULT_BEAMS,
    DEFAULT_DEPTH_NM,
    MIN_RELATIVE_POTENTIAL,
    BlochWaveSimulator,
    dynamical_hemispheres,
)
from .catalogue import get_phase_entry
from .errors import PhysicsInputError, check_choice, check_integer, check_number
from .structure_factors import (
    full_cell_phase,
    full_cell_sites,
    is_extinct,
    reflections_within,
    structure_factors,
)

DEFAULT_VOLTAGE_KV = 20.0
DEFAULT_HALF_SIZE = 400
DYNAMICAL_HALF_SIZE = 100
"""The Bloch-wave master patterns' default: their cost grows with the square of the half
size (15-30 s per phase at 100 on one core); at 100 their frames correlate with EMsoft's
at r 0.93, at 200 at 0.95 (docs/physics.md)."""
DEFAULT_MIN_DSPACING = 0.5
DEFAULT_MIN_RELATIVE_INTENSITY = 0.1
VOLTAGE_RANGE_KV = (1.0, 40.0)
EMSOFT_VOLTAGE_TOLERANCE_KV = 0.5

_CACHE_FORMAT = 2
"""Bump when the cached content changes meaning, so old files are no longer hit. 2: own
structure factors and the full reflector sphere (1 drew forbidden hexagonal bands)."""


@dataclass(frozen=True, eq=False)
class MasterPattern:
    """Both hemispheres of a master pattern in the square Lambert projection.

    ``hemispheres`` is (2, n, n) float32, upper (north, z ≥ 0) first: the layout the
    projectors sample from in one gather. The array is made read-only because cached and
    shared master patterns must not be altered by a caller.
    """

    hemispheres: np.ndarray
    phase: Phase
    voltage_kv: float
    source: str

    def __post_init__(self) -> None:
        data = np.array(self.hemispheres, dtype=np.float32, order="C")
        if data.ndim != 3 or data.shape[0] != 2 or data.shape[1] != data.shape[2] or data.shape[1] < 2:
            raise PhysicsInputError(
                f"hemispheres: must be (2, n, n) upper and lower Lambert squares, got {data.shape}"
            )
        data.setflags(write=False)
        object.__setattr__(self, "hemispheres", data)

    @property
    def upper(self) -> np.ndarray:
        return self.hemispheres[0]

    @property
    def lower(self) -> np.ndarray:
        return self.hemispheres[1]

    @property
    def size(self) -> int:
        """Pixels along each side of a hemisphere's Lambert square."""
        return self.hemispheres.shape[1]

    def to_kikuchipy(self) -> EBSDMasterPattern:
        """The same master pattern as a kikuchipy signal, to compare against its projector."""
        n = self.size
        axes = [{"size": 2, "name": "hemisphere"}] + [
            {"size": n, "name": name, "offset": -(n // 2), "units": "px"}
            for name in ("height", "width")
        ]
        return EBSDMasterPattern(
            np.array(self.hemispheres), axes=axes, phase=self.phase.deepcopy(),
            hemisphere="both", projection="lambert",
        )


def kinematical_master_pattern(
    phase: str | Phase,
    voltage_kv: float = DEFAULT_VOLTAGE_KV,
    *,
    half_size: int = DEFAULT_HALF_SIZE,
    min_dspacing: float = DEFAULT_MIN_DSPACING,
    min_relative_intensity: float = DEFAULT_MIN_RELATIVE_INTENSITY,
    band_jitter: float = 0.0,
    band_jitter_seed: int = 0,
    cache_dir: str | Path | None = None,
) -> MasterPattern:
    """A kinematical master pattern of a catalogue phase (by name) or an orix ``Phase``,
    read from the disk cache when an identical one (same full structure and settings) was
    computed before. See the module docstring for the defaults and ``band_jitter``."""
    _check_voltage(voltage_kv)
    _check_simulation_settings(half_size, min_dspacing, min_relative_intensity, band_jitter)
    phase = _resolve_phase(phase)
    settings = _settings(phase, voltage_kv, half_size, min_dspacing, min_relative_intensity,
                         band_jitter, band_jitter_seed)

    def simulate() -> np.ndarray:
        reflectors = kinematical_reflectors(phase, voltage_kv, min_dspacing, min_relative_intensity,
                                            band_jitter=band_jitter, band_jitter_seed=band_jitter_seed)
        return _simulate(reflectors, half_size)

    source = f"kinematical, band jitter {band_jitter:g} (seed {band_jitter_seed})" if band_jitter else "kinematical"
    return MasterPattern(_cached(phase, settings, cache_dir, simulate), phase, float(voltage_kv), source=source)


def dynamical_master_pattern(
    phase: str | Phase,
    voltage_kv: float = DEFAULT_VOLTAGE_KV,
    *,
    half_size: int = DYNAMICAL_HALF_SIZE,
    min_dspacing: float = DEFAULT_MIN_DSPACING,
    cache_dir: str | Path | None = None,
) -> MasterPattern:
    """A dynamical master pattern of a catalogue phase (by name) or an orix ``Phase`` by
    many-beam Bloch waves (:mod:`.bloch_wave`, which says what the model holds and leaves out),
    cached like the kinematical ones. About 15 s for Ni at ``half_size=100`` on one core; the
    cost grows with the square of ``half_size``."""
    _check_voltage(voltage_kv)
    _check_simulation_settings(half_size, min_dspacing)
    phase = _resolve_phase(phase)
    settings = _dynamical_settings(phase, voltage_kv, half_size, min_dspacing)

    def simulate() -> np.ndarray:
        simulator = BlochWaveSimulator(phase, voltage_kv, min_dspacing=min_dspacing)
        return dynamical_hemispheres(simulator, half_size)

    data = _cached(phase, settings, cache_dir, simulate)
    return MasterPattern(data, phase, float(voltage_kv), source="dynamical (Bloch waves)")


SIMULATIONS = ("kinematical", "dynamical")
"""How a master pattern can be simulated: :func:`kinematical_master_pattern` or
:func:`dynamical_master_pattern`."""

SIMULATION_HALF_SIZES = {"kinematical": DEFAULT_HALF_SIZE, "dynamical": DYNAMICAL_HALF_SIZE}
"""Each simulation's default half size: what the demo's detector simulator streams
(``live.scan_render.EBSDRenderer.for_phases``) and ``evaluate --patterns`` scores."""


def simulated_master_pattern(phase: str | Phase, voltage_kv: float = DEFAULT_VOLTAGE_KV, *,
                             simulation: str = "kinematical", **settings) -> MasterPattern:
    """:func:`kinematical_master_pattern` or :func:`dynamical_master_pattern` of ``phase``,
    by ``simulation`` (one of ``SIMULATIONS``), with that function's keyword ``settings``."""
    check_choice("simulation", simulation, SIMULATIONS)
    simulate = dynamical_master_pattern if simulation == "dynamical" else kinematical_master_pattern
    return simulate(phase, voltage_kv, **settings)


def _cached(phase: Phase, settings: dict, cache_dir: str | Path | None,
            simulate: Callable[[], np.ndarray]) -> np.ndarray:
    """The hemispheres cached under ``settings``, or ``simulate()``'s, written to the cache."""
    path = _cache_file(phase, _key(settings), cache_dir)
    data = _read_cache(path, settings)
    if data is None:
        data = simulate()
        _write_cache(path, data, settings)
    return data


def kinematical_reflectors(
    phase: Phase,
    voltage_kv: float = DEFAULT_VOLTAGE_KV,
    min_dspacing: float = DEFAULT_MIN_DSPACING,
    min_relative_intensity: float = DEFAULT_MIN_RELATIVE_INTENSITY,
    *,
    band_jitter: float = 0.0,
    band_jitter_seed: int = 0,
) -> ReciprocalLatticeVector:
    """The reflectors a kinematical master pattern is made of: every reciprocal-lattice
    vector with d ≥ ``min_dspacing`` that is not a systematic absence and has |F| at least
    ``min_relative_intensity`` of the strongest, with structure factors and Bragg angles at
    the voltage (also what band overlays need); their ``phase`` is the full cell. With
    ``band_jitter``, the kept structure factors are scaled per band family
    (:func:`band_family_scales`); the choice of bands is made before, so it is the same.

    The set is the whole sphere |g| ≤ 1/d (:func:`.structure_factors.reflections_within`),
    which holds every symmetry equivalent by construction, rather than diffsims'
    ``from_min_dspacing`` → ``unique(use_symmetry=True)`` → ``symmetrise()``: at d ≥ 0.5 Å
    that misses 400 of LiNiO2's 3380 vectors before symmetrising, adds 192 second copies to
    Ti's 1164 after it (bands drawn at double weight) and builds wrong orbits for monoclinic
    cells.
    """
    _check_voltage(voltage_kv)
    phase = full_cell_phase(phase)
    sites = full_cell_sites(phase)
    hkl = reflections_within(phase, 1.0 / min_dspacing)
    factors = structure_factors(sites, hkl)
    magnitude = np.abs(factors)
    keep = ~is_extinct(factors, sites)
    keep &= magnitude >= min_relative_intensity * magnitude[keep].max(initial=0.0)
    if band_jitter:
        factors = factors * band_family_scales(hkl, factors, sites.reciprocal_basis, band_jitter, band_jitter_seed)
    vectors = ReciprocalLatticeVector(phase, hkl=hkl[keep])
    # diffsims offers no setter, and its calculate_structure_factor is what is wrong here;
    # kikuchipy reads ``structure_factor``, which returns this array, and slicing or
    # flattening the vectors carries it along.
    vectors._structure_factor = factors[keep]
    vectors.calculate_theta(voltage_kv * 1e3)
    return vectors


def band_family_scales(hkl: np.ndarray, factors: np.ndarray, reciprocal_basis: np.ndarray,
                       spread: float, seed: int) -> np.ndarray:
    """One log-normal factor (median 1, ``spread`` the σ of its logarithm) per band family,
    broadcast to every reflector of the family, to multiply the structure factors by.

    Trained on two materials per lattice, a network learns their band strengths: the blind
    rock-salt carbides and Si, cF like Ni and Al but with {111} and {200} weighted
    otherwise, are called cF on 5-41 % of their frames by the model shipped on 2026-12-05.
    Random strengths per family take that cue away and leave the one that defines a
    lattice, the bands' geometry. A family is the reflectors of equal |g| and |F| (every
    Laue equivalent, with the rare accidental coincidence such as cubic {333} and {511},
    which then share a factor), so the master pattern keeps its symmetry; systematic
    absences stay absent.
    """
    g = np.linalg.norm(np.asarray(hkl, dtype=float) @ np.asarray(reciprocal_basis).T, axis=1)
    magnitude = np.abs(factors)
    scale = max(float(magnitude.max(initial=0.0)), 1e-30)
    keys = np.column_stack([np.round(g * 1e4), np.round(magnitude / scale * 1e4)])
    _, family = np.unique(keys, axis=0, return_inverse=True)
    rng = np.random.default_rng(seed)
    return np.exp(rng.normal(0.0, spread, family.max(initial=-1) + 1))[family.ravel()]


EDGE_SIGMA_DEG = 1.44
"""Width (σ, degrees on the sphere) of the blur whose difference sharpens band edges: about
a band's half width at 20 kV, 8 Lambert pixels at ``half_size=400``."""


def dynamical_contrast(master: MasterPattern, clip_quantile: float, edge_gain: float) -> MasterPattern:
    """``master`` re-rendered with the contrast dynamical (real) patterns have and kinematical
    ones lack: intensities above the ``clip_quantile`` quantile clipped, then band edges
    raised by ``edge_gain`` times the difference from a blur of σ ``EDGE_SIGMA_DEG``.

    Why: kinematical bands add up where they cross, so their zone axes are bright blobs and
    their bands soft, while dynamical patterns show sharp bands and subdued zone axes; the
    shipped network, trained on kinematical patterns only, classes none of 200 frames from
    kikuchipy's dynamical (EMsoft) Ni master pattern cF. Over 60 random orientations at the
    demo geometry, the mean Pearson r between high-passed frames of that dynamical pattern and
    the catalogue's kinematical Ni one rises from 0.58 to 0.67 with the 95th-percentile clip
    alone and to 0.72-0.74 with edge gains of 2-4 and clips at the 95th-99th percentile.
    This is a rendering, not a simulation: it gives training a spread of band profiles to
    learn the lattice through, not dynamical intensities. Laue symmetry is kept (the blur is
    isotropic up to the Lambert distortion).
    """
    check_number("clip_quantile", clip_quantile, 0.5, 1.0)
    check_number("edge_gain", edge_gain, 0.0, 10.0)
    hemispheres = master.hemispheres.astype(np.float32)
    hemispheres = np.minimum(hemispheres, np.float32(np.quantile(hemispheres, clip_quantile)))
    if edge_gain:
        mean_pixel_deg = 72.0 / (master.hemispheres.shape[-1] // 2)  # 0.18° at half_size 400 (module docstring)
        sigma = EDGE_SIGMA_DEG / mean_pixel_deg
        blurred = gaussian_filter(hemispheres, (0, sigma, sigma), mode="nearest")
        hemispheres = hemispheres + np.float32(edge_gain) * (hemispheres - blurred)
    hemispheres -= hemispheres.min()
    source = f"{master.source}, dynamical contrast (clip {clip_quantile:g}, edge gain {edge_gain:g})"
    return MasterPattern(hemispheres, master.phase, master.voltage_kv, source=source)


def master_pattern_cache_key(
    phase: str | Phase,
    voltage_kv: float = DEFAULT_VOLTAGE_KV,
    *,
    simulation: str = "kinematical",
    half_size: int = DEFAULT_HALF_SIZE,
    min_dspacing: float = DEFAULT_MIN_DSPACING,
    min_relative_intensity: float = DEFAULT_MIN_RELATIVE_INTENSITY,
    band_jitter: float = 0.0,
    band_jitter_seed: int = 0,
) -> str:
    """The hash that names the cache file of ``simulated_master_pattern`` with the same
    arguments; exposed so tools can tell whether two requests share a cache entry."""
    _check_voltage(voltage_kv)
    check_choice("simulation", simulation, SIMULATIONS)
    _check_simulation_settings(half_size, min_dspacing, min_relative_intensity, band_jitter)
    phase = _resolve_phase(phase)
    if simulation == "dynamical":
        return _key(_dynamical_settings(phase, voltage_kv, half_size, min_dspacing))
    return _key(_settings(phase, voltage_kv, half_size, min_dspacing, min_relative_intensity,
                          band_jitter, band_jitter_seed))


MasterRequest = tuple[str | Phase, float, dict]
"""A master pattern to simulate: phase, voltage (kV) and ``simulated_master_pattern``'s
keyword arguments."""


def fill_master_pattern_cache(requests: Sequence[MasterRequest], workers: int | None = None,
                              progress: bool = True) -> int:
    """Simulate into the cache, on ``workers`` processes (default: one per core), the
    ``requests`` that are not cached yet; returns how many it simulated. Each simulation runs
    numba on one thread to stay deterministic (``_one_numba_thread``), so a training set's
    hundreds of master patterns (five voltages of every material) would otherwise keep all
    cores but one idle. Should the workers die (a script without the ``__main__`` guard that
    spawned processes need, or memory), the rest is simulated here, with a warning."""
    files = {_request_file(*request): request for request in requests}
    missing = {path: request for path, request in files.items() if not path.is_file()}
    workers = min(workers or os.cpu_count() or 1, len(missing))
    with tqdm(total=len(missing), desc="master patterns", unit="pattern", disable=not progress or not missing) as bar:
        if workers > 1:
            try:
                _simulate_in_pool(list(missing.values()), workers, bar)
            except BrokenProcessPool as error:
                warnings.warn(f"master patterns: the worker processes stopped ({error}); simulating the rest "
                              "in this process", RuntimeWarning, stacklevel=2)
        for path, request in missing.items():
            if not path.is_file():
                _simulate_into_cache(request)
                bar.update()
    return len(missing)


def _simulate_in_pool(requests: list[MasterRequest], workers: int, bar: tqdm) -> None:
    # spawn, not fork: the parent may hold torch's and numba's threads, which a fork copies mid-state
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_one_blas_thread) as pool:
        for done in as_completed([pool.submit(_simulate_into_cache, request) for request in requests]):
            done.result()
            bar.update()


def _one_blas_thread() -> None:
    """The pool already runs one worker per core: each worker's BLAS (the Bloch-wave eigen-
    solves) spinning threads of its own on the same cores made a dynamical master pattern
    several times slower, not faster."""
    threadpool_limits(1, user_api="blas")


def _simulate_into_cache(request: MasterRequest) -> None:
    phase, voltage_kv, settings = request
    simulated_master_pattern(phase, voltage_kv, **settings)


def _request_file(phase: str | Phase, voltage_kv: float, settings: dict) -> Path:
    """The cache file ``simulated_master_pattern(phase, voltage_kv, **settings)`` reads."""
    settings = dict(settings)
    cache_dir = settings.pop("cache_dir", None)
    phase = _resolve_phase(phase)
    return _cache_file(phase, master_pattern_cache_key(phase, voltage_kv, **settings), cache_dir)


def _cache_file(phase: Phase, key: str, cache_dir: str | Path | None) -> Path:
    return master_pattern_cache_dir(cache_dir) / f"{_file_stem(phase.name)}-{key}.npz"


def master_pattern_cache_dir(cache_dir: str | Path | None = None) -> Path:
    """Where master patterns are cached: ``cache_dir`` if given, else
    ``$DIFFSTREAM_CACHE/master_patterns``, else ``~/.cache/diffstream/master_patterns``."""
    if cache_dir is not None:
        return Path(cache_dir)
    root = os.environ.get("DIFFSTREAM_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "diffstream") / "master_patterns"


def load_emsoft_master_pattern(path: str | Path, voltage_kv: float = DEFAULT_VOLTAGE_KV) -> MasterPattern:
    """A dynamical master pattern from an EMsoft ``EMEBSDmaster`` HDF5 file, at the file's
    energy nearest ``voltage_kv``; kikuchipy silently takes the nearest one, so a file
    without an energy near the request is refused rather than used at the wrong voltage."""
    _check_voltage(voltage_kv)
    path = Path(path)
    try:
        with h5py.File(path, "r") as file:
            energies = np.asarray(file["EMData/EBSDmaster/EkeVs"][()], dtype=np.float64).ravel()
    except (OSError, KeyError) as error:
        raise PhysicsInputError(
            f"path: {path} is not a readable EMsoft EBSD master pattern file ({error})"
        ) from None
    nearest = float(energies[np.abs(energies - voltage_kv).argmin()])
    if abs(nearest - voltage_kv) > EMSOFT_VOLTAGE_TOLERANCE_KV:
        raise PhysicsInputError(
            f"voltage: {voltage_kv:g} kV is not in {path.name}, which holds {_kv_list(energies)} kV"
        )
    signal = kikuchipy.load(path, projection="lambert", hemisphere="both", energy=nearest)
    return MasterPattern(signal.data, signal.phase, nearest, source=str(path))


def _resolve_phase(phase: str | Phase) -> Phase:
    """The full cell (a new Phase) of a catalogue phase, by name, or of an orix ``Phase``;
    the same expansion whichever way the crystal is given, so that equal crystals share a
    cache key."""
    if isinstance(phase, str):
        phase = get_phase_entry(phase).phase()
    elif phase.space_group is None:
        raise PhysicsInputError(f"phase: {phase.name!r} has no space group, needed for structure factors")
    return full_cell_phase(phase)


def _check_voltage(voltage_kv: float) -> None:
    check_number("voltage", voltage_kv, *VOLTAGE_RANGE_KV, "kV (the EBSD range)")


def _check_simulation_settings(half_size: int, min_dspacing: float,
                               min_relative_intensity: float = DEFAULT_MIN_RELATIVE_INTENSITY,
                               band_jitter: float = 0.0) -> None:
    check_integer("half_size", half_size, 16, 2000)
    check_number("min_dspacing", min_dspacing, 0.2, 5.0, "Å")
    check_number("min_relative_intensity", min_relative_intensity, 0.0, 1.0)
    check_number("band_jitter", band_jitter, 0.0, 2.0, "(σ of the log factor)")
    if min_relative_intensity >= 1.0:
        raise PhysicsInputError(f"min_relative_intensity: must be below 1, got {min_relative_intensity!r}")


def _settings(phase: Phase, voltage_kv: float, half_size: int, min_dspacing: float,
              min_relative_intensity: float, band_jitter: float = 0.0, band_jitter_seed: int = 0) -> dict:
    """Everything the result depends on, as plain JSON: the full structure of ``phase``
    (expanded, so an asymmetric unit and its full cell share a key), every setting, and the
    versions of the libraries that compute it. ``band_jitter`` enters only when set, so the
    keys of simulated master patterns did not change when it was added."""
    settings = _crystal_settings(phase, voltage_kv, half_size, min_dspacing)
    settings.update({
        "min_relative_intensity": _num(min_relative_intensity),
        "scaling": "linear",
        "scattering_params": "lobato",
        "projection": "lambert",
        "kikuchipy": kikuchipy.__version__,
        "diffsims": diffsims.__version__,
    })
    if band_jitter:
        settings["band_jitter"] = [_num(band_jitter), int(band_jitter_seed)]
    return settings


def _dynamical_settings(phase: Phase, voltage_kv: float, half_size: int, min_dspacing: float) -> dict:
    """As :func:`_settings`, for :func:`dynamical_master_pattern`: the crystal and the Bloch-wave
    model's constants, which change its result."""
    settings = _crystal_settings(phase, voltage_kv, half_size, min_dspacing)
    settings.update(simulation="bloch-wave", beams=DEFAULT_BEAMS, depth_nm=_num(DEFAULT_DEPTH_NM),
                    absorption=_num(DEFAULT_ABSORPTION), min_relative_potential=_num(MIN_RELATIVE_POTENTIAL),
                    projection="lambert")
    return settings


def _crystal_settings(phase: Phase, voltage_kv: float, half_size: int, min_dspacing: float) -> dict:
    """The full structure of ``phase`` (expanded, so an asymmetric unit and its full cell share
    a key) and the settings every simulation shares, as plain JSON."""
    structure = phase.structure
    atoms = sorted(
        [atom.element, [_fractional(v) for v in atom.xyz], _num(atom.occupancy), _num(atom.Uisoequiv)]
        for atom in structure
    )
    return {
        "format": _CACHE_FORMAT,
        "space_group": int(phase.space_group.number),
        "lattice": [_num(v) for v in structure.lattice.abcABG()],
        "atoms": atoms,
        "voltage_kv": _num(voltage_kv),
        "half_size": int(half_size),
        "min_dspacing": _num(min_dspacing),
    }


def _num(value: float) -> str:
    """A float as text precise to 1e-8 with -0 folded, so equal structures hash equally."""
    text = f"{float(value):.8f}"
    return "0.00000000" if text == "-0.00000000" else text


def _fractional(value: float) -> str:
    """A fractional coordinate wrapped into [0, 1), so 1.0 - 1e-12 and 0.0 hash equally."""
    return _num(round(float(value) % 1.0, 8) % 1.0)


def _key(settings: dict) -> str:
    text = json.dumps(settings, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _file_stem(name: str | None) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name or "phase")[:40]


def _simulate(reflectors: ReciprocalLatticeVector, half_size: int) -> np.ndarray:
    """Both hemispheres in the square Lambert projection. kikuchipy simulates in the
    stereographic projection and re-samples with a cubic spline, which overshoots below
    zero beside sharp band edges in small master patterns; intensities are clipped at 0."""
    simulator = KikuchiPatternSimulator(reflectors)
    with _one_numba_thread(), _without_progress_bars():
        stereographic = simulator.calculate_master_pattern(
            half_size=half_size, hemisphere="both", scaling="linear"
        )
    lambert = stereographic.as_lambert(show_progressbar=False)
    return np.maximum(np.asarray(lambert.data, dtype=np.float32), 0.0)


@contextlib.contextmanager
def _one_numba_thread() -> Iterator[None]:
    """kikuchipy's band summation runs a numba ``prange`` over reflectors that adds into a
    shared pixel array: with several threads, concurrent additions are lost and the master
    pattern changes from run to run. One thread makes it deterministic (the setting is
    thread-local in numba, so other threads are unaffected)."""
    previous = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


_PROGRESS_BAR = re.compile(r"\d+%\|")


@contextlib.contextmanager
def _without_progress_bars() -> Iterator[None]:
    """kikuchipy draws a progress bar for each hemisphere it simulates; a training set
    simulates hundreds, whose bars would bury the one over them all
    (``fill_master_pattern_cache``). Anything else written meanwhile (warnings) still shows."""
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            yield
    finally:
        rest = [line for line in re.split(r"[\r\n]", captured.getvalue())
                if line.strip() and not _PROGRESS_BAR.search(line)]
        if rest:
            sys.stderr.write("\n".join(rest) + "\n")


def _read_cache(path: Path, settings: dict) -> np.ndarray | None:
    """The cached hemispheres, or None when absent, unreadable or made with other settings
    (a hash collision or a hand-edited file is recomputed, never trusted)."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            if json.loads(str(stored["settings"])) != settings:
                return None
            return np.asarray(stored["hemispheres"], dtype=np.float32)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError):
        return None


def _write_cache(path: Path, data: np.ndarray, settings: dict) -> None:
    """Write to a temporary file beside the target, flush it to disk, then rename it into
    place: the rename is atomic, so a reader (or a process killed mid-write) never sees a
    partial cache file, only the old state or the complete new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as file:
            np.savez(file, hemispheres=data, settings=np.array(json.dumps(settings, sort_keys=True)))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _kv_list(energies: np.ndarray) -> str:
    return ", ".join(f"{e:g}" for e in energies)
