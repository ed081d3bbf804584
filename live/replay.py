"""Recordings and pattern files as frame sources: replayed as if a detector were scanning.

:func:`open_source` reads, in this order:

- a recording made by :class:`~.recorder.Recorder`: every scan with its scan_start exactly
  as recorded and its frames and indices in the recorded order. Each pass gets a new
  scan_id and the time of sending (frames are stamped when sent, as live), so a replayed
  recording matches the original in everything but scan_id and the ``t`` fields; the
  original times stay in the file;
- any pattern file kikuchipy reads (kikuchipy, EDAX, Oxford and Bruker h5ebsd, Oxford
  .ebsp, EDAX .up1/.up2, NORDIF .dat, ...) as one EBSD scan with the file's detector:
  pattern centre in Bruker's convention (the mean, where the file holds one per pattern),
  tilts, binning and the beam energy where recorded;
- any file HyperSpy reads through rosettasciio (.hspy, .zspy, Merlin .mib, .blo, ...) as one
  4D-STEM scan (or EBSD, if it holds a kikuchipy EBSD signal), with the beam energy, camera
  length, precession angle and reciprocal-space calibration its metadata and axes give.

Files are opened lazily and streamed a few MiB at a time, so their size does not matter.
Frames travel in a protocol dtype, little-endian whatever the file's byte order: uint8,
uint16 and float32 as they are, bool as uint8, anything else as float32 (exact for integers
up to 2**24).
"""
from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import msgpack
import numpy as np

from .detector_sim import Chunk, Scan, scan_template
from .protocol import DTYPES, ScanStart, decode
from .recorder import FORMAT

READ_BYTES = 8 << 20
"""Bytes of frames read from a file at a time."""

_RECIPROCAL_UNITS_PER_ANGSTROM = {"1/Å": 1.0, "1/A": 1.0, "Å⁻¹": 1.0, "1/angstrom": 1.0, "1/nm": 0.1}
"""Units of a calibrated diffraction axis and the factor to Å⁻¹."""


class UnreadableFileError(ValueError):
    """A file that exists but holds nothing replay can stream; the message names it."""


def open_source(path: str | Path) -> RecordingSource | SignalSource:
    """The frame source a file holds (see the module docstring); raises FileNotFoundError
    or :class:`UnreadableFileError` with a one-line message naming the path."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if is_recording(path):
        return RecordingSource(path)
    return SignalSource(_load_signal(path), path)


def is_recording(path: Path) -> bool:
    """Whether ``path`` is a :class:`~.recorder.Recorder` file (a damaged HDF5 file is not)."""
    if not h5py.is_hdf5(path):
        return False
    try:
        with h5py.File(path, "r") as file:
            return file.attrs.get("format") == FORMAT
    except OSError:  # truncated or otherwise damaged: left to the other readers, which say so
        return False


class RecordingSource:
    """Every scan of a recording, in the order recorded.

    Everything is checked when the file is opened, as a receiver checks the wire: each scan's
    scan_start must decode, and its frames, indices and times must agree with it, so a damaged
    or hand-edited recording is one clear error rather than a replay that sends bad frames.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            with h5py.File(path, "r") as file:
                scans = file.get("scans")
                if not isinstance(scans, h5py.Group) or not all(name.isdigit() for name in scans):
                    raise UnreadableFileError(f"{path}: a recording without a valid /scans group")
                self._scans = [(name, self._check(name, scans[name])) for name in sorted(scans, key=int)]
        except (OSError, KeyError) as error:  # h5py reports damage in the file as these
            raise UnreadableFileError(f"{path}: a damaged recording ({_first_line(error)})") from None

    def _check(self, name: str, group: object) -> ScanStart:
        """The scan_start of scan ``name``, after checking that its datasets fit it."""
        where = f"{self.path}: scan {name}"
        if not isinstance(group, h5py.Group) or not all(
                isinstance(group.get(key), h5py.Dataset) for key in ("frames", "index", "t_sent")):
            raise UnreadableFileError(f"{where} lacks its frames, index or t_sent")
        text = group.attrs.get("scan_start")
        try:
            start = decode([msgpack.packb(json.loads(text))])
        except (TypeError, ValueError, OverflowError) as error:  # json, msgpack (huge ints) and ProtocolError
            raise UnreadableFileError(f"{where} has an invalid scan_start ({_first_line(error)})") from None
        if not isinstance(start, ScanStart):
            raise UnreadableFileError(f"{where}: its scan_start attribute holds a {type(start).__name__}")
        frames, index = group["frames"], group["index"]
        n = frames.shape[0] if frames.ndim == 3 else -1
        if (frames.shape[1:] != start.frame_shape or frames.dtype != np.dtype(start.dtype)
                or index.shape != (n,) or group["t_sent"].shape != (n,) or index.dtype.kind not in "iu"):
            raise UnreadableFileError(
                f"{where}: frames {frames.dtype} {frames.shape} and index {index.dtype} {index.shape} do not fit "
                f"its scan_start ({start.frame_shape[0]}×{start.frame_shape[1]} {start.dtype} frames)")
        if n > 0:
            indices = index[()]
            low, high = int(indices.min()), int(indices.max())
            if low < 0 or high >= start.n_frames:
                raise UnreadableFileError(f"{where}: indices {low} to {high} outside its {start.n_frames}-point scan")
        return start

    def scans(self) -> Iterator[Scan]:
        for name, start in self._scans:
            yield Scan(start, lambda stop, name=name: self._chunks(name))

    def _chunks(self, name: str) -> Iterator[Chunk]:
        with h5py.File(self.path, "r") as file:
            group = file["scans"][name]
            frames, index = group["frames"], group["index"]
            step = max(1, READ_BYTES // max(1, frames.dtype.itemsize * int(np.prod(frames.shape[1:]))))
            for first in range(0, len(index), step):
                yield index[first:first + step], frames[first:first + step]


class SignalSource:
    """One scan from a HyperSpy or kikuchipy signal (lazy or not) with 0-2 navigation axes."""

    def __init__(self, signal: Any, path: Path) -> None:
        data = signal.data
        if signal.axes_manager.signal_dimension != 2 or data.ndim > 4:
            raise UnreadableFileError(
                f"{path}: holds {signal.axes_manager.navigation_dimension}-D navigation of "
                f"{signal.axes_manager.signal_dimension}-D signals; replay streams 2-D frames over at most 2 scan axes")
        self._data = data.reshape((1,) * (4 - data.ndim) + data.shape)
        self._dtype = wire_dtype(data.dtype)
        kind, geometry = _kind_and_geometry(signal, path)
        self.start = scan_template(kind, self._data.shape[:2], self._data.shape[2:], self._dtype.name, geometry)

    def scans(self) -> Iterator[Scan]:
        yield Scan(self.start, lambda stop: self._chunks())

    def _chunks(self) -> Iterator[Chunk]:
        rows, cols, h, w = self._data.shape
        step = max(1, READ_BYTES // (cols * h * w * self._dtype.itemsize))
        for row in range(0, rows, step):
            block = np.asarray(self._data[row:row + step]).reshape(-1, h, w)
            first = row * cols
            yield range(first, first + len(block)), np.ascontiguousarray(block, dtype=self._dtype)


def wire_dtype(dtype: np.dtype) -> np.dtype:
    """The protocol dtype frames of ``dtype`` travel in (see the module docstring), always
    little-endian as the protocol's payload is: files such as Merlin's .mib hold big-endian
    counts, which would otherwise go out byte-swapped."""
    dtype = np.dtype(dtype)
    name = dtype.name if dtype.name in DTYPES else "uint8" if dtype.kind == "b" else "float32"
    return np.dtype(name).newbyteorder("<")


def _load_signal(path: Path) -> Any:
    """kikuchipy's readers first (they know the EBSD detectors), then HyperSpy's."""
    import hyperspy.api as hs
    import kikuchipy

    with warnings.catch_warnings(), _quiet_loggers("hyperspy", "rsciio", "kikuchipy"):
        warnings.simplefilter("ignore")  # readers warn about axes names and metadata they skip
        try:
            signal = kikuchipy.load(path, lazy=True)
        except Exception:  # any failure means "not kikuchipy's"; HyperSpy tries next
            try:
                signal = hs.load(path, lazy=True)
            except Exception as error:  # readers raise anything on foreign files
                raise UnreadableFileError(
                    f"{path}: not a recording, nor a pattern file kikuchipy or rosettasciio reads "
                    f"({_first_line(error)})") from None
    if isinstance(signal, list):
        raise UnreadableFileError(f"{path}: holds {len(signal)} signals; replay streams files with one")
    return signal


def _kind_and_geometry(signal: Any, path: Path) -> tuple[str, dict[str, Any]]:
    from kikuchipy.signals import EBSD, EBSDMasterPattern

    from diffstream.trainer.physics.geometry import EBSDGeometry

    from .scan_render import ebsd_geometry_header

    if isinstance(signal, EBSDMasterPattern):
        raise UnreadableFileError(f"{path}: holds an EBSD master pattern, not patterns")
    if isinstance(signal, EBSD):
        voltage = signal.metadata.get_item("Acquisition_instrument.SEM.beam_energy")
        geometry = EBSDGeometry.from_kikuchipy(signal.detector)
        return "ebsd", ebsd_geometry_header(geometry, None if voltage is None else float(voltage))
    return "4dstem", _sped_geometry(signal)


def _sped_geometry(signal: Any) -> dict[str, Any]:
    """What the file says of the 4D-STEM geometry, under the simulator's header keys."""
    geometry: dict[str, Any] = {}
    for key, item in (("voltage_kv", "beam_energy"), ("camera_length_mm", "camera_length"),
                      ("precession_deg", "rocking_angle")):
        value = signal.metadata.get_item(f"Acquisition_instrument.TEM.{item}")
        if value is not None:
            geometry[key] = float(value)
    x_axis, y_axis = signal.axes_manager.signal_axes
    per_angstrom = _RECIPROCAL_UNITS_PER_ANGSTROM.get(str(x_axis.units))
    if per_angstrom is not None and x_axis.scale > 0:
        geometry["calibration"] = float(x_axis.scale * per_angstrom)
        geometry["direct_beam_px"] = [float(-axis.offset / axis.scale) for axis in (x_axis, y_axis)]
    return geometry


@contextlib.contextmanager
def _quiet_loggers(*names: str) -> Iterator[None]:
    """Silence the readers' own logging while they guess at a file, so a file nobody can
    read costs the user one line (ours), not a page of theirs."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _first_line(error: Exception) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0]
