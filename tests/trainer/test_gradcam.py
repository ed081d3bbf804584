"""Grad-CAM (``trainer/gradcam.py``): maps of the right shape and range that depend on the
class asked for; on the shipped model's .pt2 program the class logits match the ONNX file,
and hiding the most-weighted pixels costs the predicted class more than hiding the least;
the report figure; one-line errors."""
from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_diffstream
from diffstream.engines.registry import resolve_model
from diffstream.live.scan_render import make_renderer
from diffstream.trainer.config import load_config
from diffstream.trainer.evaluation import EVALUATION_SEED_OFFSET, load_for_evaluation
from diffstream.trainer.export import onnx_session, run_onnx
from diffstream.trainer.gradcam import GradCam, GradCamError, gradcam_figure, gradcam_from_program
from diffstream.trainer.models import build_model

OCCLUDED_FRACTION = 0.2
CONFIGS = Path(__file__).resolve().parents[2] / "trainer" / "configs"


@pytest.fixture(scope="module")
def shipped() -> GradCam:
    return gradcam_from_program(resolve_model("ebsd-lattice"))


@pytest.fixture(scope="module")
def patterns() -> np.ndarray:
    """Simulated 60×60 EBSD frames of two materials of different lattices (cF, hP)."""
    renderer = make_renderer("ebsd", ["Ni", "Ti"], frame_size=60, seed=5)
    rng = np.random.default_rng(5)
    quaternions = rng.normal(size=(24, 4))
    quaternions /= np.linalg.norm(quaternions, axis=1, keepdims=True)
    return renderer.render(quaternions, np.arange(24) % 2, rng)


@pytest.mark.parametrize("architecture", ["compact", "paper2-cnn"])
def test_maps_have_the_frame_shape_lie_in_unit_range_and_depend_on_the_class(architecture: str) -> None:
    torch.manual_seed(0)
    network = build_model(architecture, num_classes=4, input_size=(32, 32)).eval()
    gradcam = GradCam(network, "backbone", network.num_classes)
    frames = np.random.default_rng(0).integers(0, 256, size=(3, 40, 48), dtype=np.uint8)
    maps, logits = gradcam(frames)
    assert maps.shape == (3, 40, 48) and logits.shape == (3, 4)
    assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1
    with torch.no_grad():
        expected = network(torch.from_numpy(frames)).logits.numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)
    by_class = [gradcam(frames, target=c)[0] for c in range(4)]
    assert any(not np.allclose(by_class[0], other, atol=1e-3) for other in by_class[1:])
    np.testing.assert_array_equal(gradcam(frames, target=logits.argmax(axis=1))[0], maps)


def test_program_logits_match_the_onnx_model(shipped: GradCam, patterns: np.ndarray) -> None:
    _, logits = shipped(patterns)
    probabilities, _, _ = run_onnx(onnx_session(resolve_model("ebsd-lattice")), patterns)
    np.testing.assert_allclose(torch.softmax(torch.from_numpy(logits), dim=1).numpy(), probabilities, atol=1e-4)


def test_occluding_the_hottest_pixels_costs_more_than_the_coldest(shipped: GradCam, patterns: np.ndarray) -> None:
    maps, logits = shipped(patterns)
    predicted = logits.argmax(axis=1)
    rows = np.arange(len(patterns))

    def occluded_score(pick_hottest: bool) -> np.ndarray:
        frames = patterns.copy()
        count = int(OCCLUDED_FRACTION * maps[0].size)
        for frame, heat in zip(frames, maps):
            order = np.argsort(heat, axis=None)
            chosen = order[-count:] if pick_hottest else order[:count]
            frame.flat[chosen] = np.median(frame)
        return shipped(frames)[1][rows, predicted]

    original = logits[rows, predicted]
    drop_hot = original - occluded_score(True)
    drop_cold = original - occluded_score(False)
    assert drop_hot.mean() > drop_cold.mean()


def test_report_figure(shipped: GradCam, tmp_path: Path) -> None:
    """On the quick config's data (small master patterns, so the test stays short)."""
    quick = load_config(CONFIGS / "ebsd-lattice.toml", quick=True)
    model = dataclasses.replace(load_for_evaluation("ebsd-lattice"), config=quick)
    path = gradcam_figure(shipped, model, quick.data.seed + EVALUATION_SEED_OFFSET, tmp_path / "gradcam.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_requests_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(GradCamError, match="convolutional feature map"):
        GradCam(torch.nn.Sequential(torch.nn.Flatten()), "0", 2)
    network = build_model("compact", num_classes=2)
    with pytest.raises(GradCamError, match=r"\(N, H, W\)"):
        GradCam(network, "backbone", 2)(np.zeros((60, 60), np.uint8))
    with pytest.raises(GradCamError, match="target class"):
        GradCam(network, "backbone", 2)(np.zeros((1, 60, 60), np.uint8), target=2)
    lone = tmp_path / "lone.onnx"
    shutil.copy(resolve_model("ebsd-lattice"), lone)
    with pytest.raises(GradCamError, match="no lone.pt2"):
        gradcam_from_program(lone)


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"not a checkpoint")
    for argv, message in ((["--gradcam"], "--gradcam needs --report"),
                          (["--checkpoint", str(bogus)], "--checkpoint needs --gradcam"),
                          (["--report", str(tmp_path / "r"), "--gradcam", "--checkpoint", str(bogus), "--n", "1"],
                           "not a readable checkpoint")):
        done = run_diffstream("evaluate", "--model", "ebsd-lattice", *argv)
        assert done.returncode == 2, done.stderr
        assert done.stderr.count("\n") == 1 and done.stderr.startswith("diffstream: error: ")
        assert message in done.stderr
