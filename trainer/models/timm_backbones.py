"""The papers' architectures, built by timm from scratch (``pretrained=False``: diffstream
never downloads weights; ImageNet filters on three colour channels are no help for one-
channel diffraction patterns anyway, and the papers' own weights are not public).

timm's classifier is asked for ``num_classes + 7`` outputs, which ``network`` splits into
the class, rotation and usable heads.
"""
from __future__ import annotations

from torch import nn

TIMM_NAMES = {
    "resnet50": "resnet50",
    "xception": "legacy_xception",
    "densenet121": "densenet121",
    "swin_t": "swin_tiny_patch4_window7_224",
}
"""diffstream name → timm name. Paper 1's Xception is Chollet's original network, which timm
keeps as ``legacy_xception`` (its ``xception41/65/71`` are the later, deeper variants)."""


def timm_backbone(name: str, outputs: int, input_size: tuple[int, int], in_channels: int = 1) -> nn.Module:
    """A timm model mapping (N, in_channels, h, w) to (N, outputs). Swin needs its image size at
    construction (its attention windows and position bias depend on it); the convolutional
    networks take any size."""
    import timm

    kwargs = {"img_size": tuple(input_size)} if name == "swin_t" else {}
    return timm.create_model(TIMM_NAMES[name], pretrained=False, in_chans=in_channels, num_classes=outputs, **kwargs)
