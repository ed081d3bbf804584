"""The EBSD projector of ``ebsd_projection`` in torch, for generating training patterns on
the fly on a GPU (or the CPU).

The whole batch is elementwise arithmetic over (N, rows, cols) plus four gathers from the
flattened master pattern (both hemispheres in one buffer, so choosing the hemisphere is
an index offset, not a branch): no Python loop over patterns, no host synchronisation, no
data-dependent shapes, so ``torch.compile`` fuses it into a few kernels. The master
pattern (2 × 801² float32 ≈ 5 MB by default) stays resident in a GPU's L2 cache.

This is the only module of ``diffstream.trainer.physics`` that imports torch.
"""
from __future__ import annotations

import numpy as np
import torch

from .ebsd_projection import FOUR_OVER_PI, benchmark_inputs, pattern_frames, synthetic_master_pattern
from .geometry import EBSDGeometry
from .master_pattern import MasterPattern
from .timing import best_rate


class TorchEBSDProjector(torch.nn.Module):
    """Projects one master pattern onto one detector for batches of orientations.

    The master pattern, pixel grid and detector rotation are buffers, so ``.to(device)``
    moves them; the geometry's pattern centre is the default, and ``forward`` takes an
    (N, 3) tensor to jitter it per pattern. For throughput wrap it in ``torch.compile`` and
    keep the batch size fixed (a new size recompiles); on 2 CPU cores compiling made it
    about ten times faster than eager.
    """

    def __init__(self, master: MasterPattern, geometry: EBSDGeometry,
                 device: torch.device | str | None = None) -> None:
        super().__init__()
        self.aspect = geometry.cols / geometry.rows
        self.lambert_size = master.size
        x, y = geometry.pixel_offsets()
        buffers = {
            "texture": master.hemispheres.reshape(-1),
            "detector_to_sample": geometry.detector_to_sample(),
            "pixel_x": x,
            "pixel_y": y,
            "pc": geometry.pc_array(),
        }
        for name, value in buffers.items():
            self.register_buffer(name, torch.tensor(np.asarray(value), dtype=torch.float32, device=device))

    def forward(self, quaternions: torch.Tensor, pc: torch.Tensor | None = None) -> torch.Tensor:
        """Patterns (N, rows, cols) float32 for quaternions (N, 4) (w, x, y, z), with the
        geometry's pattern centre or ``pc`` of shape (3,) or (N, 3), both on the
        projector's device."""
        pcs = self.pc if pc is None else pc.to(self.pc.dtype).reshape(-1, 3)
        frames = pattern_frames(
            quaternions.to(self.texture.dtype), pcs, self.detector_to_sample, self.aspect, xp=torch
        )
        f0, f1, f2 = (frames[:, i, :, None, None] for i in range(3))
        x, y = self.pixel_x, self.pixel_y[:, None]
        rays = f0 * x + f1 * y + f2
        return _sample_lambert(self.texture, self.lambert_size, rays[:, 0], rays[:, 1], rays[:, 2])


def _sample_lambert(texture: torch.Tensor, n: int, x: torch.Tensor, y: torch.Tensor,
                    z: torch.Tensor) -> torch.Tensor:
    """Bilinear read at the square Lambert position of each ray, from the hemisphere it
    hits; the tensor form of ``ebsd_projection._sample_lambert`` (same formulas)."""
    ax, ay, az = x.abs(), y.abs(), z.abs()
    r2 = x * x + y * y
    norm = torch.sqrt(r2 + z * z)
    u = torch.sqrt(r2 / (norm * (norm + az)))
    k = u * FOUR_OVER_PI * torch.atan2(torch.minimum(ax, ay), torch.maximum(ax, ay))
    x_major = ax >= ay
    half = 0.5 * (n - 1)
    row = half * (torch.copysign(torch.where(x_major, k, u), y) + 1.0)
    col = half * (torch.copysign(torch.where(x_major, u, k), x) + 1.0)
    i = row.floor().clamp(0, n - 2)
    j = col.floor().clamp(0, n - 2)
    di = row - i
    dj = col - j
    base = i.long() * n + j.long() + torch.where(z >= 0, 0, n * n)
    top = texture.take(base) * (1.0 - dj) + texture.take(base + 1) * dj
    bottom = texture.take(base + n) * (1.0 - dj) + texture.take(base + n + 1) * dj
    return top * (1.0 - di) + bottom * di


def measure_torch_projection_rate(shape: tuple[int, int] = (60, 60), n_patterns: int = 4000,
                                  batch_size: int = 1000, repeats: int = 3,
                                  device: str = "cpu", compile: bool = False) -> float:
    """Patterns per second of ``TorchEBSDProjector`` (best of ``repeats`` after a warm-up,
    synchronising CUDA so the clock sees the work); printed by benchmarks, never asserted."""
    geometry, quaternions = benchmark_inputs(shape, n_patterns)
    projector = TorchEBSDProjector(synthetic_master_pattern(), geometry, device=device)
    run_batch = torch.compile(projector) if compile else projector
    batches = torch.tensor(quaternions, dtype=torch.float32, device=device).split(batch_size)

    def run() -> None:
        with torch.inference_mode():
            for batch in batches:
                run_batch(batch)

    return best_rate(run, n_patterns, repeats, sync=lambda: _synchronize(device))


def _synchronize(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
