"""The files a scan leaves behind, in the formats existing tools open.

:func:`write_scan_outputs` writes, from one snapshot of the map so that all files agree:

- ``map.h5``: orix HDF5 ``CrystalMap`` (``orix.io.load``), props ``confidence`` and ``received``;
- ``map.ang``: EDAX TSL .ang by orix's writer (read by orix, MTEX, OIM): one phase per model
  class named as in the card, one data row per scan point, the map's confidence as the CI
  column and CI = -1 on points without a result (how TSL readers mark not indexed);
  classes without orientation carry Euler angles (0, 0, 0) and the lattice constants are
  the placeholder cell of ``model_phase_list`` (a card has none);
- ``phase.png``: phase map with a legend (class → colour and share; not indexed black);
- ``ipf_z.png``: IPF-Z map with the TSL colour key of each phase's Laue group beside it;
- ``confidence.png``: confidence (usable × class probability) in viridis with a colour bar;
- ``summary.json``: the numbers below.

Each file is written to a temporary name beside its target and renamed into place, so an
interrupted run never leaves half a file. The .ang format cannot tell "not indexed" from
"not received"; the HDF5 file keeps the difference in ``received``.

``summary.json`` keys, always present in this order (null where unknown):

- ``scan_size``: ``{"rows", "cols", "points"}`` (written here);
- ``frames_received``, ``frames_rejected``, ``frames_dropped``: receiver counts (caller);
- ``rates``: frames per second per stage, by stage name, always with ``end_to_end_fps`` (caller);
- ``latency_ms``: ``{"p50", "p99", …}``, frame arrival to map placement (caller);
- ``engine``: the backend that ran, ``model``: the model's name, the card's unless given (caller);
- ``points_mapped``: scan points holding a result (written here);
- ``class_fractions``: class name or ``not_indexed`` → share of the received points (written here);
- ``accuracy_vs_truth``: share of all scan points classified as the ground truth says, with
  ``median_disorientation_deg`` over the correct points of oriented classes (written here
  when a truth is given).

Further keys the caller passes follow these unchanged; NaN and infinities become null so
the file stays strict JSON.
"""
from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import orix.io

from diffstream.engines.model_card import ModelCard
from diffstream.trainer.physics.files import atomic_output

from .map_assembler import MapAssembler, MapSnapshot
from .map_images import save_confidence_png, save_ipf_png, save_phase_png
from .truth import Truth, accuracy, orientation_error_deg

FILE_NAMES = {"h5": "map.h5", "ang": "map.ang", "phase": "phase.png", "ipf_z": "ipf_z.png",
              "confidence": "confidence.png", "summary": "summary.json"}
_CALLER_DEFAULTS: dict[str, Any] = {
    "frames_received": None,
    "frames_rejected": None,
    "frames_dropped": None,
    "rates": {"end_to_end_fps": None},
    "latency_ms": {"p50": None, "p99": None},
    "engine": None,
    "model": None,
}


def write_scan_outputs(out_dir: str | Path, assembler: MapAssembler, card: ModelCard, summary: Mapping[str, Any],
                       truth: Truth | None = None, step_size: float = 1.0) -> dict[str, Path]:
    """Write the six files into ``out_dir`` (created if needed) and return their paths by
    the keys of :data:`FILE_NAMES`. ``step_size`` is the scan step in µm.

    The summary goes first and the PNGs last, so a failure part way keeps the numbers and
    the data files. orix writes no .ang for a one-point scan (it raises ``ValueError``) and
    mislabels the grid of a single-column one in the .ang header (its rows are still right).
    """
    if assembler.class_names != tuple(card.class_names):
        raise ValueError(f"the map's classes {assembler.class_names} are not the card's {tuple(card.class_names)}")
    snapshot = assembler.snapshot()
    xmap = assembler.to_crystal_map(step_size, snapshot)
    rows, cols = snapshot.scan_shape
    title = f"{card.name}: {rows}×{cols} scan, {snapshot.n_received:,} points received"
    oriented = [index for index, model_class in enumerate(card.classes) if model_class.orientation]
    numbers = scan_summary(snapshot, card, summary, truth)
    writers: dict[str, Callable[[Path], object]] = {
        "summary": lambda path: path.write_text(json.dumps(numbers, indent=2) + "\n"),
        "h5": lambda path: orix.io.save(path, xmap, overwrite=True),
        "ang": lambda path: orix.io.save(path, xmap, overwrite=True, confidence_index_prop="confidence"),
        "phase": lambda path: save_phase_png(xmap, path, title),
        "ipf_z": lambda path: save_ipf_png(xmap, path, title, "z", oriented),
        "confidence": lambda path: save_confidence_png(xmap, path, title),
    }
    return write_files(out_dir, FILE_NAMES, writers)


def write_files(out_dir: str | Path, names: Mapping[str, str],
                writers: Mapping[str, Callable[[Path], object]]) -> dict[str, Path]:
    """Run each writer on a temporary file beside ``out_dir / names[key]`` and rename it into
    place, in the writers' order; return the paths by key."""
    paths = {}
    for key, write in writers.items():
        paths[key] = Path(out_dir) / names[key]
        with atomic_output(paths[key]) as temporary:
            write(temporary)
    return paths


def scan_summary(snapshot: MapSnapshot, card: ModelCard, summary: Mapping[str, Any],
                 truth: Truth | None = None) -> dict[str, Any]:
    """The contents of ``summary.json`` (see the module docstring), as plain JSON types."""
    rows, cols = snapshot.scan_shape
    numbers: dict[str, Any] = {"scan_size": {"rows": rows, "cols": cols, "points": rows * cols}}
    for key, default in _CALLER_DEFAULTS.items():
        given = summary.get(key)
        numbers[key] = {**default, **(given or {})} if isinstance(default, dict) else given
    numbers["model"] = numbers["model"] or card.name
    numbers["points_mapped"] = snapshot.n_received
    numbers["class_fractions"] = snapshot.class_fractions
    numbers["accuracy_vs_truth"] = None if truth is None else accuracy(truth, snapshot, card.class_names)
    numbers["median_disorientation_deg"] = None if truth is None else orientation_error_deg(truth, snapshot,
                                                                                            card.classes)
    numbers.update({key: value for key, value in summary.items() if key not in numbers})
    return _plain(numbers)


def _plain(value: Any) -> Any:
    """numpy scalars and arrays as Python numbers and lists; non-finite floats as None."""
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
