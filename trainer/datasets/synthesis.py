"""One shard of labelled EBSD frames, made from master patterns with the numpy projector.

Everything a frame depends on is drawn from one generator seeded by (split seed, shard
index), so a shard is the same array on every machine and in any order of generation, and
shards can be made in parallel or resumed.
"""
from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass

import numpy as np

from diffstream.trainer.physics.detector_model import Detector
from diffstream.trainer.physics.ebsd_projection import project_patterns
from diffstream.trainer.physics.geometry import EBSDGeometry
from diffstream.trainer.physics.master_pattern import MasterPattern
from diffstream.trainer.physics.sampling import uniform_quaternions

from .cameras import demo_camera, empty_fields, noise_frames, random_camera

CAMERA_BLOCK = 64
"""Frames per drawn camera: one camera's settings and bad pixels hold over a block, as they
hold over a scan, and new cameras come often enough to cover the range. A block holds
frames of every kind in random order (see ``synthesize_shard``)."""

NO_PHASE = ""
UNUSABLE_LABEL = -1


@dataclass(frozen=True)
class ShardPlan:
    """What one shard holds: ``counts[i]`` usable frames of ``phases[i]``, ``unusable`` frames
    with no pattern, on ``geometry`` with pattern centres jittered by up to ``pc_jitter``.
    ``cameras`` is "varied" (``random_camera``) or "demo" (the ``fast`` preset)."""

    phases: tuple[str, ...]
    counts: tuple[int, ...]
    unusable: int
    geometry: EBSDGeometry
    pc_jitter: float
    cameras: str
    high_res_fraction: float
    seed: tuple[int, ...]
    classes: tuple[int, ...]
    """Class index of each of ``phases`` (its lattice, or ordered/disordered)."""
    voltages: tuple[float, ...]
    """Beam voltages (kV) of the master patterns; with several, each frame draws one, so
    band widths vary as between microscopes and between materials of one lattice."""
    dose: float | None = None
    """Electrons per pixel for every camera instead of the drawn dose, the gain raised to
    keep the mean level (the dose study of ``evaluation.evaluate_dose``); None: as drawn."""
    simulations: tuple[str, ...] = ("kinematical",)
    """How the master patterns were simulated (``physics.master_pattern.SIMULATIONS``); with
    several, each frame draws one, so that one network learns kinematical and dynamical bands."""


MasterSet = dict[tuple[str, float, str], MasterPattern]
"""The master patterns frames are projected from, by (phase, voltage in kV, simulation)."""


@dataclass(frozen=True)
class Shard:
    """Frames and labels. ``frames`` (N, H, W) uint8 exactly as a camera streams them;
    ``lattice`` (N,) int8 class index (−1 for unusable); ``quaternions`` (N, 4) float64, the
    (w, x, y, z) rotations given to the projector; ``phase`` (N,) names ("" for unusable);
    ``usable`` (N,) bool; ``pc`` (N, 3) float64 the pattern centre of each frame."""

    frames: np.ndarray
    lattice: np.ndarray
    quaternions: np.ndarray
    phase: np.ndarray
    usable: np.ndarray
    pc: np.ndarray

    def __len__(self) -> int:
        return len(self.frames)

    def arrays(self) -> dict[str, np.ndarray]:
        return {name: getattr(self, name) for name in ("frames", "lattice", "quaternions", "phase", "usable", "pc")}


def synthesize_shard(plan: ShardPlan, masters: MasterSet) -> Shard:
    """Make the frames of ``plan`` from ``masters``, one per (phase, voltage, simulation) of the plan.

    The clean patterns of all phases and the empty scenes are shuffled together before the
    cameras image them in blocks: a camera (its settings and its fixed hot and dead pixels)
    then says nothing about the label. Blocks of one phase per camera let a network learn
    the cameras' bad-pixel fingerprints instead of the patterns (it did: 82 % on training
    frames, 12 % on fresh ones after one epoch)."""
    rng = np.random.default_rng(list(plan.seed))
    n_usable = sum(plan.counts)
    n_empty = plan.unusable - plan.unusable // 4
    n_noise = plan.unusable // 4
    phase = np.concatenate([np.full(c, name, dtype="U16") for name, c in zip(plan.phases, plan.counts)]
                           + [np.full(plan.unusable, NO_PHASE, dtype="U16")])
    quaternions = np.tile([1.0, 0.0, 0.0, 0.0], (len(phase), 1))
    quaternions[:n_usable] = uniform_quaternions(n_usable, rng)
    centre = plan.geometry.pc_array()[0]
    pc = np.tile(centre, (len(phase), 1))
    pc[:n_usable] += rng.uniform(-plan.pc_jitter, plan.pc_jitter, (n_usable, 3))
    voltage = _draw(rng, len(plan.voltages), n_usable)
    simulation = _draw(rng, len(plan.simulations), n_usable)
    clean = np.empty((n_usable + n_empty, *plan.geometry.shape), dtype=np.float32)
    start = 0
    for name, count in zip(plan.phases, plan.counts):
        rows = np.arange(start, start + count)
        for (v, kv), (s, kind) in itertools.product(enumerate(plan.voltages), enumerate(plan.simulations)):
            drawn = rows[(voltage[rows] == v) & (simulation[rows] == s)]
            if len(drawn):
                clean[drawn] = project_patterns(masters[name, kv, kind], quaternions[drawn],
                                                plan.geometry.with_pc(pc[drawn]))
        start += count
    clean[n_usable:] = empty_fields(n_empty, plan.geometry.shape, rng)
    order = rng.permutation(len(clean))
    frames = np.empty((len(phase), *plan.geometry.shape), dtype=np.uint8)
    for block in range(0, len(order), CAMERA_BLOCK):
        rows = order[block : block + CAMERA_BLOCK]
        params = demo_camera() if plan.cameras == "demo" else random_camera(rng, plan.high_res_fraction)
        if plan.dose is not None:
            params = dataclasses.replace(params, dose=plan.dose, gain=params.gain * params.dose / plan.dose)
        frames[rows] = Detector(params, seed=int(rng.integers(2**31))).acquire(clean[rows], rng=rng)
    frames[n_usable + n_empty :] = noise_frames(n_noise, plan.geometry.shape, rng)
    labels = dict(zip(plan.phases, plan.classes))
    return Shard(
        frames=frames,
        lattice=np.array([labels.get(p, UNUSABLE_LABEL) for p in phase], dtype=np.int8),
        quaternions=quaternions,
        phase=phase,
        usable=phase != NO_PHASE,
        pc=pc,
    )


def _draw(rng: np.random.Generator, choices: int, n: int) -> np.ndarray:
    """Which of ``choices`` each of ``n`` frames takes, drawn only when there is a choice, so
    that a shard of one voltage and one simulation keeps its random stream (and the frames
    cached before voltages and simulations could vary)."""
    return rng.integers(choices, size=n) if choices > 1 else np.zeros(n, int)

