"""Networks for diffraction patterns: one interface (``DiffractionNetwork``: raw frames in;
class logits, rotation matrix and usable logit out) over diffstream's compact detector-rate
network and the papers' architectures, built by ``build_model(name, ...)``."""
from .network import DiffractionNetwork, NetworkOutputs, head_width
from .registry import DEFAULT_INPUT_SIZES, MODEL_NAMES, ModelSpecError, build_model

__all__ = [
    "DEFAULT_INPUT_SIZES",
    "MODEL_NAMES",
    "DiffractionNetwork",
    "ModelSpecError",
    "NetworkOutputs",
    "build_model",
    "head_width",
]
