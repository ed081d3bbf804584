"""``diffstream replay`` of the vendor pattern files its help names beyond recordings, h5ebsd
and .hspy: Merlin .mib and NanoMegas .blo (4D-STEM, read through rosettasciio) and NORDIF .dat
and Oxford .ebsp (EBSD, read by kikuchipy).

Each file is made small in the test's folder, by the library's own writer where one exists
and byte by byte as the library's reader parses it where none does, then served over a real
loopback socket and recorded: the scan_start must carry the file's scan and frame shapes, a
protocol dtype and the geometry the file holds, and every frame must arrive with the file's
pixels at its scan index.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_record_replay import scans_in, serve_and_record

from conftest import run_diffstream, start_server
from diffstream.live.replay import open_source

SCAN = (3, 4)
"""Rows and columns of every file's scan: not square, so that a transposed scan shows."""


def distinct_frames(frame_shape: tuple[int, int], dtype: str, high: int, seed: int) -> np.ndarray:
    """Random frames of the scan, (rows, cols, h, w), with values up to ``high``: each frame
    differs from the others and from its own flips and transposes."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, high, SCAN + frame_shape, endpoint=True).astype(dtype)


def replay_and_record(path: Path, tmp_path: Path) -> dict:
    """The one scan a replay of ``path`` sends, as received over a loopback socket and recorded."""
    serve_and_record(open_source(path), tmp_path / "stream.h5")
    (scan,) = scans_in(tmp_path / "stream.h5")
    return scan


def assert_streamed(scan: dict, kind: str, dtype: str, frames: np.ndarray) -> None:
    """The scan_start names ``kind``, the scan's shapes and ``dtype``, and frame ``i`` holds
    ``frames`` at row-major scan index ``i``."""
    header = scan["header"]
    assert (header["kind"], header["scan_shape"], header["frame_shape"], header["dtype"]) == (
        kind, list(SCAN), list(frames.shape[2:]), dtype)
    assert scan["complete"] and scan["frames_sent"] == frames.shape[0] * frames.shape[1]
    np.testing.assert_array_equal(scan["index"], np.arange(scan["frames_sent"]))
    assert scan["frames"].dtype == np.dtype(dtype)
    np.testing.assert_array_equal(scan["frames"], frames.reshape(-1, *frames.shape[2:]))


# --- Merlin .mib (Quantum Detectors); rosettasciio reads it but has no writer ---------------------

MIB_DEPTHS = {"U08": (">u1", 6), "U16": (">u2", 12), "U32": (">u4", 24)}
"""Merlin's pixel type in the frame header: big-endian dtype and the counter depth in bits."""


def mib_header(number: int, frame_shape: tuple[int, int], pixel_type: str, time: np.datetime64) -> bytes:
    """A single-chip Merlin frame header, 384 bytes of comma-separated fields as rsciio's
    ``MIBProperties.parse_file`` reads them: [2] header size, [4] width, [5] height, [6] pixel
    type, [7] chip layout, and from the end the timestamp, exposure in ns and counter depth."""
    height, width = frame_shape
    fields = ["MQ1", f"{number:06d}", "00384", "01", f"{width:04d}", f"{height:04d}", pixel_type, "   1x1", "01",
              str(time).replace("T", " ")[:26], "0.001000", "0", "0", "0", "MQ1A", f"{time}Z", "1000000ns",
              str(MIB_DEPTHS[pixel_type][1]), ""]
    return ",".join(fields).encode().ljust(384, b"\0")


def write_mib(path: Path, frames: np.ndarray, pixel_type: str, hdr: bool) -> None:
    """``frames`` as a Merlin .mib, frame by frame in scan order, their pixel rows stored
    bottom-up (rsciio flips them back) and big-endian. Frames are 1 ms apart with a 5 ms
    flyback before each scan row, which is how rsciio finds the scan rows where no .hdr
    file names them; with ``hdr`` the .hdr file Merlin writes beside it names them."""
    rows, cols = frames.shape[:2]
    start = np.datetime64("2024-05-07T16:51:10.000000000")
    with path.open("wb") as file:
        for i, frame in enumerate(frames.reshape(-1, *frames.shape[2:])):
            row, col = divmod(i, cols)
            time = start + np.timedelta64(row * (cols + 5) + col, "ms")
            file.write(mib_header(i + 1, frame.shape, pixel_type, time))
            file.write(frame[::-1].astype(MIB_DEPTHS[pixel_type][0]).tobytes())
    if hdr:
        path.with_suffix(".hdr").write_text(
            f"HDR\nFrames in Acquisition (Number):\t{rows * cols}\nFrames per Trigger (Number):\t{cols}\n"
            f"Counter Depth (number):\t{MIB_DEPTHS[pixel_type][1]}\nEnd\t")


@pytest.mark.parametrize(("pixel_type", "hdr", "wire"), [("U08", False, "uint8"), ("U16", True, "uint16"),
                                                         ("U32", True, "float32")])
def test_merlin_mib_replays_every_frame_in_a_protocol_dtype(tmp_path, pixel_type, hdr, wire) -> None:
    high = (1 << MIB_DEPTHS[pixel_type][1]) - 1  # a 12-bit count needs both bytes, a 24-bit one more than 16 bits
    frames = distinct_frames((24, 32), "uint32", high, seed=1)
    write_mib(tmp_path / "scan.mib", frames, pixel_type, hdr)
    scan = replay_and_record(tmp_path / "scan.mib", tmp_path)
    assert_streamed(scan, "4dstem", wire, frames)
    assert scan["header"]["geometry"] == {}  # a .mib holds no beam energy nor calibration


# --- NanoMegas .blo, written by rosettasciio through HyperSpy ------------------------------------

def write_blo(path: Path, frames: np.ndarray) -> None:
    """``frames`` (square, uint8, as .blo frames are) saved by HyperSpy as a .blo: 5 nm scan
    steps, 0.01 cm per frame pixel, and a header that records 200 kV and a camera length."""
    import hyperspy.api as hs

    signal = hs.signals.Signal2D(frames)
    for axis, units, scale in zip(signal.axes_manager._axes, ("nm", "nm", "cm", "cm"), (5.0, 5.0, 0.01, 0.01)):
        axis.units, axis.scale = units, scale
    signal.original_metadata.add_dictionary(
        {"blockfile_header": {"Beam_energy": 200_000, "Camera_length": 1200, "Note": "test scan"}})
    signal.save(path)


def test_nanomegas_blo_replays_with_its_beam_energy_and_camera_length(tmp_path) -> None:
    frames = distinct_frames((32, 32), "uint8", 255, seed=2)
    write_blo(tmp_path / "scan.blo", frames)
    scan = replay_and_record(tmp_path / "scan.blo", tmp_path)
    assert_streamed(scan, "4dstem", "uint8", frames)
    # beam energy and camera length as rosettasciio maps the header's (V to kV, and × 1e-4); the
    # frames' cm per pixel on the screen is no reciprocal-space calibration, so none is sent
    assert scan["header"]["geometry"] == {"voltage_kv": 200.0, "camera_length_mm": pytest.approx(0.12)}


# --- NORDIF .dat, written by kikuchipy, beside the Setting.txt NORDIF writes ---------------------

def write_nordif_settings(folder: Path, frame_shape: tuple[int, int]) -> None:
    """kikuchipy's sample Setting.txt with this scan's size, pattern size and geometry: 15 kV,
    sample tilt 69°, detector elevation 10° and azimuth 2°. kikuchipy reads the scan and pattern
    shapes of a .dat file from this file, as NORDIF's software writes one beside every scan."""
    import kikuchipy.data

    sample = Path(kikuchipy.data.__file__).parent / "nordif" / "Setting.txt"
    text = sample.read_bytes().decode("latin-1")
    height, width = frame_shape
    for old, new in (("Number of samples\t3x3", f"Number of samples\t{SCAN[0]}x{SCAN[1]}"),
                     ("Resolution\t60x60", f"Resolution\t{width}x{height}"),
                     ("Accelerating voltage\t20", "Accelerating voltage\t15"), ("Tilt angle\t70", "Tilt angle\t69"),
                     ("Elevation\t0", "Elevation\t10"), ("Azimuthal\t0", "Azimuthal\t2")):
        assert old in text
        text = text.replace(old, new)
    (folder / "Setting.txt").write_bytes(text.encode("latin-1"))


@pytest.mark.filterwarnings("ignore:Could not read static background pattern:UserWarning")
def test_nordif_dat_replays_with_the_geometry_of_its_setting_file(tmp_path) -> None:
    from kikuchipy.signals import EBSD

    frames = distinct_frames((24, 32), "uint8", 255, seed=3)
    EBSD(frames).save(tmp_path / "Pattern.dat")
    write_nordif_settings(tmp_path, (24, 32))
    scan = replay_and_record(tmp_path / "Pattern.dat", tmp_path)
    assert_streamed(scan, "ebsd", "uint8", frames)
    assert scan["header"]["geometry"] == {
        "pc": [0.5, 0.5, 0.5], "pc_convention": "bruker", "sample_tilt": 69.0, "detector_tilt": -10.0,
        "azimuthal": 2.0, "twist": 0.0, "binning": 1, "px_size_um": 1.0, "voltage_kv": 15.0}


# --- Oxford .ebsp; kikuchipy reads it but has no writer ------------------------------------------

def write_ebsp(path: Path, frames: np.ndarray, step_um: float, seed: int) -> None:
    """``frames`` as an Oxford .ebsp file of version 2, as kikuchipy's ``OxfordBinaryFileReader``
    parses it: the version as -2 (int64), the file position of each scan point's pattern
    (int64, row-major), then the patterns in acquisition order, which is not the scan's: each
    behind its header (int32: compressed, rows, columns, bytes) and before its footer (bool and
    float64 for the beam's x, then y, in µm), from which kikuchipy finds the scan's shape."""
    rows, cols, height, width = frames.shape
    n = rows * cols
    pixels = frames.reshape(n, height * width)
    record = 16 + pixels.itemsize * height * width + 18
    order = np.random.default_rng(seed).permutation(n)  # order[k]: the scan point acquired k-th
    starts = np.empty(n, np.int64)
    starts[order] = 8 + 8 * n + record * np.arange(n)
    with path.open("wb") as file:
        file.write(np.int64(-2).tobytes() + starts.tobytes())
        for point in order:
            row, col = divmod(int(point), cols)
            file.write(np.array([0, height, width, pixels.itemsize * height * width], "<i4").tobytes())
            file.write(pixels[point].astype(pixels.dtype.newbyteorder("<")).tobytes())
            for beam in (col * step_um, row * step_um):
                file.write(np.bool_(True).tobytes() + np.float64(beam).tobytes())


@pytest.mark.parametrize(("dtype", "high"), [("uint8", 255), ("uint16", 4095)])
def test_oxford_ebsp_replays_its_patterns_in_scan_order(tmp_path, dtype, high) -> None:
    # kikuchipy counts the patterns of an .ebsp assuming each holds 1600 pixels or more
    frames = distinct_frames((40, 48), dtype, high, seed=4)
    write_ebsp(tmp_path / "scan.ebsp", frames, step_um=1.5, seed=4)
    scan = replay_and_record(tmp_path / "scan.ebsp", tmp_path)
    assert_streamed(scan, "ebsd", dtype, frames)
    assert scan["header"]["geometry"] == {  # an .ebsp holds no geometry: kikuchipy's default detector
        "pc": [0.5, 0.5, 0.5], "pc_convention": "bruker", "sample_tilt": 70.0, "detector_tilt": 0.0,
        "azimuthal": 0.0, "twist": 0.0, "binning": 1, "px_size_um": 1.0}


# --- the command a user runs -----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["scan.mib", "scan.blo"])
def test_replay_command_serves_4dstem_files(tmp_path, name) -> None:
    frames = distinct_frames((32, 32), "uint8", 255, seed=5)
    if name.endswith(".mib"):
        write_mib(tmp_path / name, frames, "U08", hdr=True)
    else:
        write_blo(tmp_path / name, frames)
    server, endpoint = start_server("replay", str(tmp_path / name), "--rate", "0")
    out = tmp_path / "stream.h5"
    result = run_diffstream("record", "--connect", endpoint, "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert server.wait(30) == 0, server.stderr.read()
    (scan,) = scans_in(out)
    assert_streamed(scan, "4dstem", "uint8", frames)

