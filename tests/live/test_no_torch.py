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
    "diffstream.live.scan_refinement",
    "diffstream.live.commands.refine",
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


def test_a_trainer_command_without_torch_names_the_extra():
    """A beamline install has no torch: `evaluate` must say which extra to add, in one line."""
    code = (
        "import sys\n"
        "class NoTorch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' or name.startswith('torch.'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, NoTorch())\n"
        "from diffstream.live.cli import main\n"
        "sys.exit(main(['evaluate', '--model', 'ebsd-lattice', '--blind', '--json']))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("diffstream: error: evaluate needs torch, which the 'trainer' extra installs")
