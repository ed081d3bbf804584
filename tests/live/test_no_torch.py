"""The live path must run on a beamline PC with ONNX Runtime alone: none of it may import torch."""
from __future__ import annotations

import subprocess
import sys

LIVE_MODULES = (
    "diffstream.live.cli",
    "diffstream.live.pipeline",
    "diffstream.live.receiver",
    "diffstream.live.detector_sim",
    "diffstream.live.scan_render",
    "diffstream.live.recorder",
    "diffstream.live.replay",
    "diffstream.live.map_outputs",
    "diffstream.live.truth",
    "diffstream.live.live_bench",
    "diffstream.live.commands.live",
    "diffstream.live.commands.demo",
    "diffstream.live.commands.gui",
    "diffstream.engines.onnxruntime_engine",
    "diffstream.engines.registry",
    "diffstream.gui.map_window",
    "diffstream.gui.session",
)


def test_no_live_module_imports_torch():
    code = "import sys\n" + "".join(f"import {name}\n" for name in LIVE_MODULES) + (
        "loaded = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
        "print(','.join(loaded))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
