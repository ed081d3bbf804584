"""Colouring scan-grid maps the way microscopists read them: categorical phase colours and
orix's inverse-pole-figure (IPF) colours, with points that hold no result left black."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from orix.crystal_map import CrystalMap
from orix.plot import IPFColorKeyTSL
from orix.quaternion import Orientation
from orix.vector import Vector3d

DIRECTIONS = {"x": Vector3d.xvector(), "y": Vector3d.yvector(), "z": Vector3d.zvector()}


def phase_rgb(xmap: CrystalMap) -> np.ndarray:
    """(rows, cols, 3) float RGB of each point's phase colour; unindexed points black."""
    rgb = np.zeros((xmap.size, 3))
    for phase_id, phase in xmap.phases_in_data:
        rgb[xmap.phase_id == phase_id] = phase.color_rgb
    return rgb.reshape(*xmap.shape, 3)


def ipf_rgb(xmap: CrystalMap, direction: str = "z") -> np.ndarray:
    """(rows, cols, 3) float IPF colours along sample ``direction`` (x, y or z), each phase
    keyed by its own point group; unindexed points black."""
    rgb = np.zeros((xmap.size, 3))
    for phase_id, phase in xmap.phases_in_data:
        mask = xmap.phase_id == phase_id
        key = IPFColorKeyTSL(phase.point_group, direction=DIRECTIONS[direction])
        orientations = Orientation(xmap.rotations[mask], symmetry=phase.point_group)
        rgb[mask] = key.orientation2color(orientations)
    return rgb.reshape(*xmap.shape, 3)


def save_overview_png(xmap: CrystalMap, path: str | Path, title: str = "") -> Path:
    """Phase map with a legend of names and area fractions beside the IPF-Z map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    fig, (ax_phase, ax_ipf) = plt.subplots(1, 2, figsize=(10, 5.4))
    ax_phase.imshow(phase_rgb(xmap), interpolation="nearest")
    ax_phase.set_title("phase")
    handles = [
        Patch(color=phase.color_rgb, label=f"{phase.name} {np.mean(xmap.phase_id == pid):.0%}")
        for pid, phase in xmap.phases_in_data
    ]
    ax_phase.legend(handles=handles, loc="upper left", bbox_to_anchor=(0, -0.02), ncol=4, fontsize=8, frameon=False)
    ax_ipf.imshow(ipf_rgb(xmap, "z"), interpolation="nearest")
    ax_ipf.set_title("IPF-Z")
    for ax in (ax_phase, ax_ipf):
        ax.set_axis_off()
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
