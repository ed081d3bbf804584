"""One shard of labelled 4D-STEM (SPED) frames: paper 2's task on simulated LiNiO2 patterns.

Frames are what the live 4D-STEM detector sends (``live/scan_render.py``'s ``SpedRenderer``):
kinematic precession spots on a diffuse halo, Poisson counts, raw uint16, no log. Paper 2's
log scaling and [0, 1] normalisation happen inside the network (``models.preprocess``), so
the exported model takes the detector's integers. The detector noise varies per block of
``CAMERA_BLOCK`` frames, as a session's settings do: dose (log-uniform over the config's
range), diffuse background share and width, and foil thickness, which sets the spots'
excitation (rel-rod) width. Frames without a pattern (the halo alone, or plain noise) train
the confidence to 0. Everything is drawn from one generator seeded by the shard's seed.
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np

from diffstream.trainer.physics.catalogue import get_phase_entry
from diffstream.trainer.physics.sampling import uniform_quaternions
from diffstream.trainer.physics.specimen import ComponentTexture, component_quaternions
from diffstream.trainer.physics.sped import RenderSettings, SpotPatterns, render_patterns, simulate_spots
from diffstream.trainer.physics.sped_geometry import PAPER2_GEOMETRY, ReflectionTable, SpedGeometry

from .cameras import noise_frames
from .synthesis import CAMERA_BLOCK, NO_PHASE, UNUSABLE_LABEL, Shard

UINT16_MAX = np.iinfo(np.uint16).max
THICKNESS_NM = (30.0, 100.0)
BACKGROUND_FRACTION = (0.05, 0.3)
BACKGROUND_WIDTH = (0.2, 0.5)


@dataclass(frozen=True)
class SpedShardPlan:
    """``counts[i]`` frames of ``phases[i]`` (class index i) and ``unusable`` frames with no
    pattern, on ``geometry``, at doses drawn from ``dose``."""

    phases: tuple[str, ...]
    counts: tuple[int, ...]
    unusable: int
    geometry: SpedGeometry
    dose: tuple[float, float]
    seed: tuple[int, ...]
    texture: ComponentTexture | None = None
    """Where the orientations are drawn from: uniform on SO(3) when None."""


def sped_geometry(frame_shape: tuple[int, int], voltage_kv: float) -> SpedGeometry:
    """Paper 2's detector resized to ``frame_shape``, keeping its reach in reciprocal space
    (as ``SpedRenderer.for_phases`` and ``diffstream simulate patterns --kind 4dstem`` do)."""
    scale = PAPER2_GEOMETRY.shape[0] / frame_shape[0]
    return dataclasses.replace(PAPER2_GEOMETRY, shape=tuple(frame_shape), voltage_kv=voltage_kv,
                               calibration=PAPER2_GEOMETRY.calibration * scale)


@functools.lru_cache(maxsize=16)
def _reflections(phase: str, geometry: SpedGeometry) -> ReflectionTable:
    return ReflectionTable.from_phase(get_phase_entry(phase).full_phase(), geometry.reciprocal_reach)


def empty_spots(n: int) -> SpotPatterns:
    """``n`` patterns without a spot: rendering them leaves the diffuse halo and its noise."""
    return SpotPatterns(n_patterns=n, pattern_index=np.zeros(0, dtype=np.int64), xy=np.zeros((0, 2)),
                        intensity=np.zeros(0), hkl=np.zeros((0, 3), dtype=np.int64), excitation_error=np.zeros(0))


def synthesize_sped_shard(plan: SpedShardPlan) -> Shard:
    """The frames of ``plan``; ``Shard.lattice`` holds the class (material) index, ``pc`` zeros."""
    rng = np.random.default_rng(list(plan.seed))
    n_usable = sum(plan.counts)
    n_noise = plan.unusable // 4
    n_rendered = n_usable + plan.unusable - n_noise
    phase = np.concatenate([np.full(c, name, dtype="U16") for name, c in zip(plan.phases, plan.counts)]
                           + [np.full(plan.unusable, NO_PHASE, dtype="U16")])
    labels = np.concatenate([np.full(c, i, dtype=np.int8) for i, c in enumerate(plan.counts)]
                            + [np.full(plan.unusable, UNUSABLE_LABEL, dtype=np.int8)])
    quaternions = np.tile([1.0, 0.0, 0.0, 0.0], (len(phase), 1))
    quaternions[:n_usable] = (uniform_quaternions(n_usable, rng) if plan.texture is None else
                              component_quaternions(plan.texture, n_usable, rng))
    frames = np.empty((len(phase), *plan.geometry.shape), dtype=np.uint16)
    order = rng.permutation(n_rendered)
    for block in range(0, n_rendered, CAMERA_BLOCK):
        rows = np.sort(order[block : block + CAMERA_BLOCK])
        settings = RenderSettings(
            dose=float(np.exp(rng.uniform(*np.log(plan.dose)))), poisson=True,
            background_fraction=rng.uniform(*BACKGROUND_FRACTION), background_width=rng.uniform(*BACKGROUND_WIDTH))
        thickness = rng.uniform(*THICKNESS_NM)
        for name in dict.fromkeys(phase[rows]):
            members = rows[phase[rows] == name]
            spots = (empty_spots(len(members)) if name == NO_PHASE else
                     simulate_spots(_reflections(str(name), plan.geometry), quaternions[members], plan.geometry,
                                    thickness_nm=thickness))
            counts = render_patterns(spots, plan.geometry, settings, rng=rng)
            frames[members] = np.clip(np.rint(counts), 0, UINT16_MAX).astype(np.uint16)
    frames[n_rendered:] = noise_frames(n_noise, plan.geometry.shape, rng)
    return Shard(frames=frames, lattice=labels, quaternions=quaternions, phase=phase, usable=phase != NO_PHASE,
                 pc=np.zeros((len(phase), 3)))
