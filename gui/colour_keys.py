"""IPF colour key images for the live window, one per Laue group of the model's oriented classes.

A key depends only on the Laue group, so classes that share one share a key (as in the
``ipf_z.png`` file), and each key is computed once per process: about 0.1 s each.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from orix.crystal_map import Phase

from diffstream.engines.model_card import ModelClass
from diffstream.live.map_images import class_point_groups, ipf_key_rgba

from .colouring import to_uint8

KEY_SAMPLES = 120
"""Pixels per side of a key image: enough for a key shown at about 120 px."""


@dataclass(frozen=True)
class IpfKey:
    """One colour key: ``rgba`` is (KEY_SAMPLES, KEY_SAMPLES, 4) uint8 with row 0 at the top,
    transparent outside the fundamental sector; ``label`` names the classes it colours."""

    laue: str
    label: str
    rgba: np.ndarray


def ipf_keys(classes: Sequence[ModelClass]) -> list[IpfKey]:
    """The keys for the classes that carry orientations, in order of first appearance."""
    groups: dict[str, list[str]] = {}
    for model_class, point_group in zip(classes, class_point_groups(classes)):
        if model_class.orientation:
            groups.setdefault(point_group.laue.name, []).append(model_class.name)
    return [IpfKey(laue, f"{', '.join(names)} ({laue})", _key_image(laue)) for laue, names in groups.items()]


@lru_cache(maxsize=None)
def _key_image(laue: str) -> np.ndarray:
    """Cached by Laue group name, because orix symmetries are not hashable; read-only."""
    rgba, _ = ipf_key_rgba(Phase(point_group=laue).point_group, KEY_SAMPLES)
    image = np.ascontiguousarray(to_uint8(rgba)[::-1])
    image.flags.writeable = False
    return image
