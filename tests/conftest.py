"""Shared test setup: master patterns and other caches go to a per-session temporary folder
so tests never read or pollute a user's ~/.cache."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache() -> None:
    with tempfile.TemporaryDirectory(prefix="diffstream-test-cache-") as folder:
        previous = os.environ.get("DIFFSTREAM_CACHE")
        os.environ["DIFFSTREAM_CACHE"] = folder
        yield
        if previous is None:
            os.environ.pop("DIFFSTREAM_CACHE", None)
        else:
            os.environ["DIFFSTREAM_CACHE"] = previous


def run_diffstream(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the installed ``diffstream`` console script, as a user would from the shell."""
    exe = Path(sys.executable).with_name("diffstream")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout)


def high_passed(frames: np.ndarray) -> np.ndarray:
    """EBSD frames as the network sees them: the smooth background gone, standardised, so
    that the mean product of two such stacks is their Pearson r."""
    frames = frames - np.stack([gaussian_filter(f, frames.shape[-1] / 8) for f in frames])
    frames = frames - frames.mean(axis=(1, 2), keepdims=True)
    return frames / frames.std(axis=(1, 2), keepdims=True)


def start_server(*args: str) -> tuple[subprocess.Popen, str]:
    """A ``diffstream`` server command (detector-sim, replay) on a free loopback port.

    Returns the process and the endpoint it reports having bound; its stderr stays open
    for the caller to read.
    """
    exe = Path(sys.executable).with_name("diffstream")
    process = subprocess.Popen([str(exe), *args, "--bind", "tcp://127.0.0.1:*"], stderr=subprocess.PIPE, text=True)
    lines = []
    for line in process.stderr:
        lines.append(line)
        found = re.search(r"bound (tcp://\S+)", line)
        if found:
            return process, found.group(1)
    process.wait(30)
    raise AssertionError("".join(lines))
