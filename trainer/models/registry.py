"""``build_model(name, ...)``: every architecture diffstream can train, by name.

| name | from | default input |
| --- | --- | --- |
| ``compact`` | diffstream's own detector-rate network (``compact.py``) | 60 × 60 |
| ``paper2-cnn`` | paper 2's baseline: 2 conv + 3 FC | 128 × 128 |
| ``resnet50``, ``xception`` | paper 1's two networks (timm) | 224 × 224, 299 × 299 (Keras' defaults) |
| ``densenet121``, ``swin_t`` | paper 2's two networks (timm) | 128 × 128 (paper 2's pattern size) |

Paper 1 does not state its input size; the Keras defaults are the likely choice with Keras'
applications. Frames of another size are resized inside the network (``PatternNormalise``), so any model
takes the detector's frames as they come.
"""
from __future__ import annotations

from torch import nn

from ..orientation_grid import GridHeads
from .compact import CompactBackbone
from .network import ROTATION_DIMS, ROTATIONS, DiffractionNetwork, head_width
from .paper_cnn import PaperCNN
from .preprocess import PREPROCESSORS
from .timm_backbones import TIMM_NAMES, timm_backbone

DEFAULT_INPUT_SIZES: dict[str, tuple[int, int]] = {
    "compact": (60, 60),
    "paper2-cnn": (128, 128),
    "resnet50": (224, 224),
    "xception": (299, 299),
    "densenet121": (128, 128),
    "swin_t": (128, 128),
}
MODEL_NAMES = tuple(DEFAULT_INPUT_SIZES)


class ModelSpecError(ValueError):
    """An architecture name or option that ``build_model`` cannot honour."""


def build_model(name: str, num_classes: int = 14, input_size: tuple[int, int] | None = None,
                **options: object) -> DiffractionNetwork:
    """A freshly initialised network ``name`` with ``num_classes`` class logits, a rotation and a
    usable head. ``options`` go to the backbone (e.g. ``widths`` for ``compact``), except
    ``preprocess`` (``preprocess.PREPROCESSORS``: "background" or "background-local" for EBSD,
    "log-unit" or "log-unit-friedel" for SPED), ``rotation`` (``network.ROTATIONS``: "6d", paper 2's "euler", or
    "grid" with ``grid_point_group``, a point group or one per orientation phase,
    ``grid_resolution`` in degrees and, when the phases span several Laue groups,
    ``grid_classes``, each phase's class index); they are kept on the
    network so that a checkpoint can rebuild it."""
    if name not in DEFAULT_INPUT_SIZES:
        raise ModelSpecError(f"model: unknown architecture {name!r}; known: {', '.join(MODEL_NAMES)}")
    size = tuple(int(n) for n in (input_size or DEFAULT_INPUT_SIZES[name]))
    preprocess = str(options.get("preprocess", "background"))
    if preprocess not in PREPROCESSORS:
        raise ModelSpecError(f"model: unknown preprocess {preprocess!r}; known: {', '.join(PREPROCESSORS)}")
    rotation = str(options.get("rotation", "6d"))
    if rotation not in ROTATIONS:
        raise ModelSpecError(f"model: unknown rotation {rotation!r}; known: {', '.join(ROTATIONS)}")
    grid = _grid_heads(rotation, options, num_classes)
    outputs = head_width(num_classes, grid.bins if grid else ROTATION_DIMS)
    backbone_options = {k: v for k, v in options.items() if k not in ("preprocess", "rotation", *GRID_OPTIONS)}
    channels = PREPROCESSORS[preprocess].channels
    backbone: nn.Module
    if name == "compact":
        backbone = CompactBackbone(outputs, input_size=size, in_channels=channels, **_tuples(backbone_options))
    elif name == "paper2-cnn":
        backbone = PaperCNN(outputs, size, in_channels=channels, **_tuples(backbone_options))
    else:
        if backbone_options:
            raise ModelSpecError(f"model: {name} takes no options, got {', '.join(backbone_options)}")
        backbone = timm_backbone(name, outputs, size, channels)
    return DiffractionNetwork(backbone, num_classes, size, name, {"input_size": list(size), **options},
                              preprocess=preprocess, rotation=rotation, grid=grid)


REQUIRED_GRID_OPTIONS = ("grid_point_group", "grid_resolution")
GRID_OPTIONS = (*REQUIRED_GRID_OPTIONS, "grid_classes")


def _grid_heads(rotation: str, options: dict, num_classes: int) -> GridHeads | None:
    """The grid heads of a ``rotation = "grid"`` network; its options are refused elsewhere."""
    given = [k for k in GRID_OPTIONS if k in options]
    if rotation != "grid":
        if given:
            raise ModelSpecError(f"model: {', '.join(given)} need rotation = 'grid'")
        return None
    if any(k not in options for k in REQUIRED_GRID_OPTIONS):
        raise ModelSpecError(f"model: rotation = 'grid' needs {' and '.join(REQUIRED_GRID_OPTIONS)}")
    resolution = options["grid_resolution"]
    if isinstance(resolution, bool) or not isinstance(resolution, (int, float)) or not 3.0 <= resolution <= 30.0:
        raise ModelSpecError(f"model: grid_resolution must be a number of degrees in [3, 30], got {resolution!r}")
    groups = options["grid_point_group"]
    groups = [groups] if isinstance(groups, str) else [str(g) for g in groups]
    classes = options.get("grid_classes", [0] * len(groups))
    if len(classes) != len(groups) or not all(isinstance(c, int) and 0 <= c < num_classes for c in classes):
        raise ModelSpecError(f"model: grid_classes must give a class index below {num_classes} for each of the "
                             f"{len(groups)} grid point groups, got {classes!r}")
    try:
        return GridHeads(groups, classes, num_classes, float(resolution))
    except ValueError as err:
        raise ModelSpecError(f"model: {err}") from None


def _tuples(options: dict) -> dict:
    """TOML and JSON give lists; the backbones' shape arguments are tuples."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}


__all__ = ["MODEL_NAMES", "TIMM_NAMES", "ModelSpecError", "build_model"]
