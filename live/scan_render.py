"""Turning a synthetic specimen into the frames a detector would deliver while scanning it.

A renderer draws the frame of each scan point from the specimen's truth (phase and
orientation): EBSD through the phase's master pattern, the projection onto the detector and
the ``fast`` camera model (8-bit counts); 4D-STEM through the SPED spot renderer with
Poisson noise, delivered as raw uint16 counts (no log: scaling is the network's
preprocessing, and a counting detector sends integers). Points with no pattern (phase id
-1) get background-only frames: the camera's backscatter dome with its noise for EBSD, the
diffuse halo with its noise (no spots, no direct beam) for 4D-STEM.

The physics is far slower than the wire (a few thousand frames/s on two cores against the
tens of thousands the server sends), so frames are rendered before they are streamed:
:func:`render_scan` renders a whole scan up front, and :func:`render_ahead` keeps a bounded
buffer of chunks rendered ahead by worker processes for scans too large to hold;
:class:`SimulatedSource` picks one and serves the result to :mod:`.detector_sim`. Noise is
drawn per chunk from (seed, chunk), so both give the same frames.

Nothing here imports torch: the server runs on machines that have none.
"""
from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import math
import multiprocessing
import os
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

import numpy as np
from tqdm import tqdm

from diffstream.trainer.physics.catalogue import get_phase_entry
from diffstream.trainer.physics.detector_model import Detector, preset
from diffstream.trainer.physics.ebsd_projection import project_patterns
from diffstream.trainer.physics.geometry import EBSDGeometry
from diffstream.trainer.physics.master_pattern import (
    DEFAULT_VOLTAGE_KV,
    SIMULATION_HALF_SIZES,
    MasterPattern,
    simulated_master_pattern,
)
from diffstream.trainer.physics.specimen import Specimen
from diffstream.trainer.physics.sped import RenderSettings, SpotPatterns, render_patterns, simulate_spots
from diffstream.trainer.physics.sped_geometry import PAPER2_GEOMETRY, ReflectionTable, SpedGeometry

from .detector_sim import Chunk, Scan, array_scan, scan_template

DEFAULT_EBSD_GEOMETRY = EBSDGeometry(shape=(60, 60), pc=(0.5, 0.5, 0.5), sample_tilt=70.0, tilt=0.0)
"""The simulator's EBSD detector: 60×60 pixels, pattern centre (0.5, 0.5, 0.5) in Bruker's
convention, sample tilted 70°, detector untilted. Public because the shipped model is
trained for exactly this geometry (with the pattern centre jittered about it)."""

DEFAULT_SPED_GEOMETRY = PAPER2_GEOMETRY
"""The simulator's 4D-STEM detector: paper 2's 128×128 frames at 300 kV, 0.6° precession."""

SPED_PIXEL_SIZE_UM = 55.0
"""Pixel pitch the simulated 4D-STEM camera reports (a Medipix3 / MerlinEM pixel), so that
its header can state a camera length as a real camera's does; the physics uses only the
calibration in Å⁻¹ per pixel."""

CHUNK_FRAMES = 256
"""Frames rendered per task, and the unit noise is seeded by: large enough that per-call
overheads vanish, small enough that a stop request is honoured within a fraction of a second."""

RENDER_UP_FRONT_BYTES = 512 << 20
"""Scans whose frames fit in this many bytes (149,000 frames of 60×60 uint8) are rendered
whole before streaming starts; larger ones stream from a buffer this large kept filled by
worker processes (see :func:`render_ahead`)."""

SPED_SATURATION = np.iinfo(np.uint16).max


class FrameRenderer(Protocol):
    """Draws detector frames for specimen points; built once per scan, picklable so that
    worker processes can hold a copy."""

    kind: str
    phase_names: Sequence[str]
    """In the order of the specimen's phase ids."""
    frame_shape: tuple[int, int]
    dtype: np.dtype
    seed: int

    def geometry_header(self) -> dict[str, Any]:
        """The ``geometry`` map of the scan_start message."""

    def render(self, quaternions: np.ndarray, phase_id: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Frames (k, h, w) of ``dtype`` for k points: orientations (k, 4) and phase ids (k,)."""


@dataclasses.dataclass(eq=False)
class EBSDRenderer:
    """EBSD frames: master pattern → projection on ``geometry`` → camera model ``detector``.

    ``masters`` maps each phase name to its master pattern, in the order of the specimen's
    phase ids; :meth:`for_phases` computes kinematical or Bloch-wave ones (cached on disk),
    and a caller may hand in others (e.g. EMsoft ones, or coarse ones for tests).
    """

    masters: Mapping[str, MasterPattern]
    geometry: EBSDGeometry = DEFAULT_EBSD_GEOMETRY
    detector: str = "fast"
    seed: int = 0
    kind = "ebsd"

    def __post_init__(self) -> None:
        self.masters = dict(self.masters)
        self._phases = list(self.masters.values())
        self._camera = Detector(preset(self.detector), seed=self.seed)
        self.frame_shape = self._camera.output_shape(self.geometry.shape)
        self.dtype = self._camera.params.dtype

    @classmethod
    def for_phases(cls, phase_names: Sequence[str], *, frame_size: int = DEFAULT_EBSD_GEOMETRY.rows,
                   voltage_kv: float = DEFAULT_VOLTAGE_KV, simulation: str = "kinematical",
                   master_half_size: int | None = None, seed: int = 0) -> EBSDRenderer:
        """Master patterns of catalogue phases by ``simulation`` ("kinematical", what the
        shipped model is trained on, or "dynamical": Bloch waves, the band profiles a real
        camera records) at ``master_half_size`` (default: ``SIMULATION_HALF_SIZES``, the
        frames ``evaluate --patterns`` scores too), on the default geometry, resized."""
        half_size = SIMULATION_HALF_SIZES[simulation] if master_half_size is None else master_half_size
        masters = {name: simulated_master_pattern(name, voltage_kv, simulation=simulation, half_size=half_size)
                   for name in phase_names}
        geometry = dataclasses.replace(DEFAULT_EBSD_GEOMETRY, shape=(frame_size, frame_size))
        return cls(masters, geometry=geometry, seed=seed)

    def geometry_header(self) -> dict[str, Any]:
        voltages = {master.voltage_kv for master in self._phases}
        return ebsd_geometry_header(self.geometry, voltages.pop() if len(voltages) == 1 else None)

    @property
    def phase_names(self) -> list[str]:
        return list(self.masters)

    def render(self, quaternions: np.ndarray, phase_id: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        clean = np.ones((len(phase_id), *self.geometry.shape), dtype=np.float32)  # flat: background only
        for index in np.unique(phase_id[phase_id >= 0]):
            members = phase_id == index
            clean[members] = project_patterns(self._phases[index], quaternions[members], self.geometry)
        return self._camera.acquire(clean, rng=rng)


@dataclasses.dataclass(eq=False)
class SpedRenderer:
    """4D-STEM frames: kinematic spots of each phase on ``geometry``, Poisson counts as uint16."""

    phase_names: Sequence[str]
    geometry: SpedGeometry = DEFAULT_SPED_GEOMETRY
    settings: RenderSettings = RenderSettings(poisson=True)
    seed: int = 0
    kind = "4dstem"
    dtype = np.dtype(np.uint16)

    def __post_init__(self) -> None:
        reach = self.geometry.reciprocal_reach
        self._tables = [ReflectionTable.from_phase(get_phase_entry(name).full_phase(), reach)
                        for name in self.phase_names]
        self.frame_shape = self.geometry.shape

    @classmethod
    def for_phases(cls, phase_names: Sequence[str], *, frame_size: int = DEFAULT_SPED_GEOMETRY.shape[0],
                   seed: int = 0) -> SpedRenderer:
        """The default detector resized, keeping its reach in reciprocal space (as
        ``diffstream simulate patterns --kind 4dstem`` does)."""
        scale = DEFAULT_SPED_GEOMETRY.shape[0] / frame_size
        geometry = dataclasses.replace(DEFAULT_SPED_GEOMETRY, shape=(frame_size, frame_size),
                                       calibration=DEFAULT_SPED_GEOMETRY.calibration * scale)
        return cls(phase_names, geometry=geometry, seed=seed)

    def geometry_header(self) -> dict[str, Any]:
        return sped_geometry_header(self.geometry, SPED_PIXEL_SIZE_UM)

    def render(self, quaternions: np.ndarray, phase_id: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        counts = np.empty((len(phase_id), *self.geometry.shape), dtype=np.float32)
        for index in np.unique(phase_id):
            members = phase_id == index
            spots = (_no_spots(int(members.sum())) if index < 0
                     else simulate_spots(self._tables[index], quaternions[members], self.geometry))
            counts[members] = render_patterns(spots, self.geometry, self.settings, rng=rng)
        return np.clip(np.rint(counts), 0, SPED_SATURATION).astype(self.dtype)


def make_renderer(kind: str, phase_names: Sequence[str], *, frame_size: int | None = None,
                  seed: int = 0, simulation: str = "kinematical") -> FrameRenderer:
    """The default renderer of ``kind`` ("ebsd" or "4dstem") for catalogue phases, EBSD
    frames from master patterns by ``simulation`` (``EBSDRenderer.for_phases``)."""
    options = {} if frame_size is None else {"frame_size": frame_size}
    if kind == "ebsd":
        return EBSDRenderer.for_phases(phase_names, seed=seed, simulation=simulation, **options)
    if simulation != "kinematical":
        raise ValueError(f"simulation: {simulation!r} master patterns are for EBSD frames, not {kind}")
    return SpedRenderer.for_phases(phase_names, seed=seed, **options)


def ebsd_geometry_header(geometry: EBSDGeometry, voltage_kv: float | None = None) -> dict[str, Any]:
    """The scan_start ``geometry`` of an EBSD detector: pattern centre in Bruker's convention
    (the mean, where the geometry holds one per pattern), tilts and angles in degrees."""
    header = {
        "pc": [float(v) for v in geometry.pc_array().mean(axis=0)],
        "pc_convention": "bruker",
        "sample_tilt": float(geometry.sample_tilt),
        "detector_tilt": float(geometry.tilt),
        "azimuthal": float(geometry.azimuthal),
        "twist": float(geometry.twist),
        "binning": int(geometry.binning),
        "px_size_um": float(geometry.px_size),
    }
    if voltage_kv is not None:
        header["voltage_kv"] = float(voltage_kv)
    return header


def sped_geometry_header(geometry: SpedGeometry, pixel_size_um: float) -> dict[str, Any]:
    """The scan_start ``geometry`` of a 4D-STEM detector: voltage, calibration (Å⁻¹ per
    pixel), the camera length it means on pixels of ``pixel_size_um``, precession, probe
    convergence and the direct-beam position (x, y) in pixels."""
    return {
        "voltage_kv": float(geometry.voltage_kv),
        "calibration": float(geometry.calibration),
        "camera_length_mm": float(geometry.camera_length_mm(pixel_size_um)),
        "pixel_size_um": float(pixel_size_um),
        "precession_deg": float(geometry.precession_deg),
        "semi_convergence_mrad": float(geometry.semi_convergence_mrad),
        "direct_beam_px": [float(v) for v in geometry.centre],
    }


def render_chunk(renderer: FrameRenderer, specimen: Specimen, first: int) -> np.ndarray:
    """Frames of scan indices [first, first + CHUNK_FRAMES), with noise drawn from
    (renderer seed, chunk number) so that any executor renders the same frames."""
    stop = min(first + CHUNK_FRAMES, specimen.phase_id.size)
    quaternions = specimen.quaternions.reshape(-1, 4)[first:stop]
    phase_id = specimen.phase_id.reshape(-1)[first:stop]
    return renderer.render(quaternions, phase_id, np.random.default_rng((renderer.seed, first // CHUNK_FRAMES)))


def fits_up_front(renderer: FrameRenderer, specimen: Specimen) -> bool:
    """Whether the whole scan's frames fit the up-front budget (:data:`RENDER_UP_FRONT_BYTES`)."""
    frame_nbytes = math.prod(renderer.frame_shape) * renderer.dtype.itemsize
    return specimen.phase_id.size * frame_nbytes <= RENDER_UP_FRONT_BYTES


def render_scan(renderer: FrameRenderer, specimen: Specimen, stop: threading.Event | None = None
                ) -> np.ndarray | None:
    """Every frame of the scan (n, h, w) in raster order, rendered in this process (the
    projector is already multi-threaded), with a progress bar on stderr once it takes more
    than a second. None when ``stop`` was set before the end."""
    n = specimen.phase_id.size
    frames = np.empty((n, *renderer.frame_shape), dtype=renderer.dtype)
    with _progress(n, f"rendering {renderer.kind} frames") as bar:
        for first in range(0, n, CHUNK_FRAMES):
            if stop is not None and stop.is_set():
                return None
            chunk = render_chunk(renderer, specimen, first)
            frames[first:first + len(chunk)] = chunk
            bar.update(len(chunk))
    return frames


def render_ahead(renderer: FrameRenderer, specimen: Specimen, stop: threading.Event, *,
                 buffer_bytes: int | None = None, workers: int | None = None) -> Iterator[Chunk]:
    """(scan indices, frames) chunks of the scan in raster order, rendered by ``workers``
    spawned processes (default: one per core but one, which the sender needs) that keep at
    most ``buffer_bytes`` (default :data:`RENDER_UP_FRONT_BYTES`) of frames rendered or in
    flight.

    The first chunk is yielded only once the buffer is full, so streaming starts with a
    lead of ``buffer_bytes``; should the stream then outrun the physics, it waits for each
    next chunk. Ends early, shutting the workers down, when ``stop`` is set.
    """
    n = specimen.phase_id.size
    chunk_nbytes = CHUNK_FRAMES * math.prod(renderer.frame_shape) * renderer.dtype.itemsize
    depth = max(1, (buffer_bytes or RENDER_UP_FRONT_BYTES) // chunk_nbytes)
    firsts = iter(range(0, n, CHUNK_FRAMES))
    workers = workers or max(1, (os.cpu_count() or 2) - 1)
    executor = concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker, initargs=(renderer, specimen),
    )
    try:
        pending = collections.deque((first, executor.submit(_render_in_worker, first))
                                    for first in _take(firsts, depth))
        with _progress(min(n, depth * CHUNK_FRAMES), f"rendering {renderer.kind} frames ahead") as bar:
            for _, future in pending:
                if not _wait(future, stop):
                    return
                bar.update(CHUNK_FRAMES)
        while pending:
            first, future = pending.popleft()
            if not _wait(future, stop):
                return
            for following in _take(firsts, 1):
                pending.append((following, executor.submit(_render_in_worker, following)))
            frames = future.result()
            yield range(first, first + len(frames)), frames
    finally:
        executor.shutdown(wait=False, cancel_futures=True)


class SimulatedSource:
    """A synthetic specimen seen through a renderer. A scan that fits
    :data:`RENDER_UP_FRONT_BYTES` is rendered here, before anything is sent,
    and every loop resends the same frames; a larger one is rendered ahead by worker
    processes while it streams, anew for each loop. ``stop`` ends rendering early
    (``stopped`` then says so)."""

    def __init__(self, specimen: Specimen, renderer: FrameRenderer, stop: threading.Event) -> None:
        if list(renderer.phase_names) != list(specimen.spec.phase_names):
            raise ValueError(f"renderer phases {list(renderer.phase_names)} are not the specimen's "
                             f"{list(specimen.spec.phase_names)}")
        self.specimen = specimen
        self.renderer = renderer
        self.start = scan_template(renderer.kind, specimen.spec.scan_shape, renderer.frame_shape,
                                   renderer.dtype.name, renderer.geometry_header())
        self.up_front = fits_up_front(renderer, specimen)
        self.frames = render_scan(renderer, specimen, stop) if self.up_front else None
        self.stopped = stop.is_set()

    def scans(self) -> Iterator[Scan]:
        if self.stopped:
            return
        if self.up_front:
            yield array_scan(self.start, self.frames)
        else:
            yield Scan(self.start, lambda stop: render_ahead(self.renderer, self.specimen, stop))


_worker_state: tuple[FrameRenderer, Specimen] | None = None


def _init_worker(renderer: FrameRenderer, specimen: Specimen) -> None:
    """Each worker gets its own renderer and the specimen once; one numba thread each,
    since the workers already share out the cores."""
    import numba

    global _worker_state
    numba.set_num_threads(1)
    _worker_state = (renderer, specimen)


def _render_in_worker(first: int) -> np.ndarray:
    renderer, specimen = _worker_state
    return render_chunk(renderer, specimen, first)


def _take(iterator: Iterator[int], count: int) -> list[int]:
    return [value for _, value in zip(range(count), iterator)]


def _wait(future: concurrent.futures.Future, stop: threading.Event) -> bool:
    """Wait for ``future`` in short slices so that ``stop`` is noticed; False if stopped."""
    while not stop.is_set():
        try:
            future.result(timeout=0.1)
            return True
        except concurrent.futures.TimeoutError:
            continue
    return False


def _progress(total: int, description: str) -> tqdm:
    """A progress bar on stderr that appears only when the work lasts over a second."""
    return tqdm(total=total, desc=description, unit="frame", delay=1.0, file=sys.stderr, leave=False)


def _no_spots(n: int) -> SpotPatterns:
    """n patterns without a single spot: rendering them leaves the diffuse background."""
    return SpotPatterns(
        n_patterns=n, pattern_index=np.zeros(0, dtype=np.int64), xy=np.zeros((0, 2)), intensity=np.zeros(0),
        hkl=np.zeros((0, 3), dtype=np.int64), excitation_error=np.zeros(0),
    )
