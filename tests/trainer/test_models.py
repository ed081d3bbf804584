"""Every architecture builds and runs; the compact network fits the detector-rate budget;
normalisation removes gain and offset; the Friedel channel is the odd part of the image."""
from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from diffstream.trainer.models import MODEL_NAMES, ModelSpecError, build_model
from diffstream.trainer.models.preprocess import FriedelPairs, LocalContrastNormalise, LogUnitScale, PatternNormalise

CHEAP_SIZES = {"compact": (60, 60), "paper2-cnn": (32, 32), "resnet50": (32, 32), "xception": (32, 32),
               "densenet121": (32, 32), "swin_t": (64, 64)}
"""Small inputs keep the timm networks' forward passes to a fraction of a second on a CPU."""


@pytest.mark.parametrize("preprocess", ["background", "log-unit-friedel"])
@pytest.mark.parametrize("name", MODEL_NAMES)
def test_each_architecture_builds_and_runs(name: str, preprocess: str) -> None:
    """The "log-unit-friedel" preprocessing gives the backbone two channels instead of one."""
    torch.manual_seed(0)
    model = build_model(name, num_classes=14, input_size=CHEAP_SIZES[name], preprocess=preprocess).eval()
    frames = torch.randint(0, 256, (2, 60, 60), dtype=torch.uint8)
    with torch.no_grad():
        out = model(frames)
    assert out.logits.shape == (2, 14)
    assert out.rotation.shape == (2, 3, 3)
    assert out.usable_logit.shape == (2,)
    assert torch.allclose(out.rotation @ out.rotation.transpose(1, 2), torch.eye(3).expand(2, 3, 3), atol=1e-5)


def test_compact_network_fits_the_detector_rate_budget() -> None:
    """About 10 MFLOP per 60×60 frame keeps ONNX Runtime above 3,000 frames/s on 2 cores."""
    model = build_model("compact").eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 60, 60, dtype=torch.uint8))
    assert counter.get_total_flops() < 10e6
    assert sum(p.numel() for p in model.parameters()) < 1_000_000


@pytest.mark.parametrize(("layer", "tolerance"), [(PatternNormalise, 1e-4), (LocalContrastNormalise, 1e-2)])
def test_normalisation_removes_gain_and_offset(layer: type[PatternNormalise], tolerance: float) -> None:
    """The local layer's floor of one count squared makes its gain invariance approximate."""
    frames = torch.rand(3, 60, 60) * 100
    normalise = layer((60, 60))
    assert torch.allclose(normalise(frames), normalise(frames * 2.5 + 7), atol=tolerance)
    assert torch.equal(normalise(torch.full((1, 60, 60), 9.0)), torch.zeros(1, 1, 60, 60))


def test_local_contrast_equalises_a_weak_and_a_strong_band() -> None:
    """Two vertical bands far apart, one five times the other's contrast: the local layer
    brings them within a factor of two of each other; the global one keeps the factor."""
    columns = torch.arange(60, dtype=torch.float32)
    profile = 5 * torch.exp(-0.5 * ((columns - 15) / 1.5) ** 2) + torch.exp(-0.5 * ((columns - 45) / 1.5) ** 2)
    frame = (100 + 20 * profile).expand(1, 60, 60)

    def ratio(layer: PatternNormalise) -> float:
        row = layer((60, 60))(frame)[0, 0, 30]
        return float(row[10:20].max() / row[40:50].max())
    assert ratio(PatternNormalise) > 4
    assert ratio(LocalContrastNormalise) < 2


def test_normalisation_resizes_to_the_network_input() -> None:
    assert PatternNormalise((32, 32))(torch.rand(2, 60, 60)).shape == (2, 1, 32, 32)


def test_friedel_channel_of_a_half_turned_frame_is_its_negative() -> None:
    """The second channel is odd under the half turn: the turned frame's first channel is
    the turned image, its second the same pixels with the sign changed."""
    frames = torch.rand(3, 64, 64) * 1000
    turned = torch.flip(frames, dims=(1, 2))
    layer = FriedelPairs((64, 64))
    pairs, turned_pairs = layer(frames), layer(turned)
    assert pairs.shape == (3, 2, 64, 64)
    assert torch.equal(pairs[:, :1], LogUnitScale((64, 64))(frames))
    assert torch.allclose(turned_pairs[:, 0], torch.flip(pairs[:, 0], dims=(1, 2)))
    assert torch.allclose(turned_pairs[:, 1], -pairs[:, 1], atol=1e-6)
    assert pairs[:, 1].abs().max() > 0.1


def test_unknown_architecture_is_refused() -> None:
    with pytest.raises(ModelSpecError, match="unknown architecture"):
        build_model("alexnet")
    with pytest.raises(ModelSpecError, match="takes no options"):
        build_model("resnet50", input_size=(32, 32), widths=[1])
