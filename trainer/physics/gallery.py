"""A PNG contact sheet of patterns, the quickest way for a person to see a simulation is sane."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from orix.quaternion import Rotation

from .files import atomic_output

MAX_TILES = 16


def save_gallery(
    patterns: np.ndarray, rotations: Rotation, path: str | Path, title: str, *, log_scale: bool = False
) -> Path:
    """Save up to ``MAX_TILES`` patterns in a grid, each labelled with its Bunge Euler
    angles; ``log_scale`` shows spot patterns, whose dynamic range hides weak spots."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(MAX_TILES, len(patterns))
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    eulers = np.rad2deg(rotations[:n].to_euler())
    fig, axes = plt.subplots(rows, cols, figsize=(2.2 * cols, 2.4 * rows + 0.4), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i >= n:
            continue
        image = np.log1p(patterns[i].astype(np.float32)) if log_scale else patterns[i]
        ax.imshow(image, cmap="gray")
        ax.set_title("({:.0f}°, {:.0f}°, {:.0f}°)".format(*eulers[i]), fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return Path(path)
