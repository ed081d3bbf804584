"""``diffstream bench simulate``: patterns per second of each pattern-physics stage."""
from __future__ import annotations

import argparse
import json

from .bench import machine_record


def register(what: argparse._SubParsersAction) -> None:
    sim = what.add_parser(
        "simulate",
        help="pattern simulation rates (patterns/s)",
        description=(
            "Patterns per second of the EBSD projector (numpy, and torch on CPU and CUDA where "
            "present), the detector model and SPED rendering, best of 3 after a warm-up."
        ),
    )
    sim.add_argument("--n", type=int, default=4000, help="patterns per timed run (default 4000)")
    sim.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    sim.set_defaults(handler=_run_simulate)


def _simulate_rows(n: int) -> list[dict]:
    import numpy as np

    from diffstream.trainer.physics.catalogue import get_phase_entry
    from diffstream.trainer.physics.detector_model import Detector, preset
    from diffstream.trainer.physics.ebsd_projection import measure_projection_rate
    from diffstream.trainer.physics.sampling import random_rotations
    from diffstream.trainer.physics.sped import RenderSettings, render_patterns, simulate_spots
    from diffstream.trainer.physics.sped_geometry import ReflectionTable, SpedGeometry
    from diffstream.trainer.physics.timing import best_rate

    rows = []
    for size in (60, 128):
        rows.append({"stage": "EBSD projection", "backend": "numpy", "shape": [size, size],
                     "patterns_per_s": measure_projection_rate((size, size), n)})
    rows += _torch_rows(n)
    clean = np.random.default_rng(0).random((n, 60, 60), dtype=np.float32)
    detector = Detector(preset("fast"))
    rows.append({"stage": "detector model 'fast'", "backend": "numpy", "shape": [60, 60],
                 "patterns_per_s": best_rate(lambda: detector.acquire(clean), n)})
    geometry = SpedGeometry()
    table = ReflectionTable.from_phase(get_phase_entry("LiNiO2").full_phase(), geometry.reciprocal_reach)
    rotations = random_rotations(min(n, 1000), seed=0)
    settings = RenderSettings(poisson=True)
    rows.append({
        "stage": "SPED spots + render (LiNiO2)", "backend": "numpy", "shape": list(geometry.shape),
        "patterns_per_s": best_rate(
            lambda: render_patterns(simulate_spots(table, rotations, geometry), geometry, settings, rng=0),
            rotations.size),
    })
    return rows


def _torch_rows(n: int) -> list[dict]:
    try:
        import torch
    except ImportError:
        return []
    from diffstream.trainer.physics.ebsd_projection_torch import measure_torch_projection_rate

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for device in devices:
        for size in (60, 128):
            count = n * 50 if device == "cuda" else n
            rows.append({"stage": "EBSD projection", "backend": f"torch {device}", "shape": [size, size],
                         "patterns_per_s": measure_torch_projection_rate((size, size), count, device=device)})
    return rows


def _run_simulate(args: argparse.Namespace) -> int:
    rows = _simulate_rows(args.n)
    if args.json:
        record = {"command": "diffstream bench simulate", "machine": machine_record(), "results": rows}
        print(json.dumps(record, indent=2))
        return 0
    machine = machine_record()
    print(f"diffstream bench simulate: {machine['cpu_cores']} CPU cores ({machine['processor']}), "
          f"Python {machine['python']}, {args.n} patterns per run, best of 3")
    print(f"{'stage':<32} {'backend':<11} {'shape':>9} {'patterns/s':>12}")
    for row in rows:
        shape = "×".join(str(v) for v in row["shape"])
        print(f"{row['stage']:<32} {row['backend']:<11} {shape:>9} {row['patterns_per_s']:>12,.0f}")
    return 0
