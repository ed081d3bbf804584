"""Grad-CAM heat maps (Selvaraju et al.), as paper 1 Fig. 5 shows them: which parts of a
pattern drive a network's class decision.

For class c the gradient of its logit with respect to the last convolutional feature map A
(K channels) is averaged over the map's positions to give one weight per channel; the map
is ReLU(Σ_k w_k A_k), upsampled to the frame and scaled to [0, 1]. The feature map is the
output of the backbone's ``features`` (compact, paper2-cnn, densenet121) or ``layer4``
(resnet50) block; the logits are the first ``num_classes`` numbers the backbone returns
(``models.network``). The pre-softmax logit is used, as in the Grad-CAM paper: the softmax
would mix in the other classes' gradients.

Two sources of the network:

- a training checkpoint (``--checkpoint best.pt``): the ``DiffractionNetwork`` itself;
- the ``torch.export`` program shipped beside a model's ONNX file (``NAME.pt2``): unflattened
  (``torch.export.unflatten``), it keeps the module tree, so the same two blocks are found
  by name under ``network.backbone``. It is checked like the torch engine checks it before
  loading (no pickle, no native code), so no checkpoint is needed for a shipped model.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from diffstream.engines.model_card import read_card

from .evaluation import EvaluatedModel
from .training import load_checkpoint, model_from_checkpoint

FEATURE_LAYERS = ("features", "layer4")
"""Names, under the backbone, of the block whose output is the last convolutional feature map."""
BATCH = 64
"""Frames per forward/backward pass: bounds memory for big networks and long frame lists."""


class GradCamError(ValueError):
    """A network or model file Grad-CAM cannot be computed for (the message says why)."""


class GradCam:
    """Grad-CAM over ``module``, which holds the backbone at ``backbone_path`` (a dotted module
    name) and returns its outputs from frames of dtype ``input_dtype``."""

    def __init__(self, module: nn.Module, backbone_path: str, num_classes: int,
                 input_dtype: torch.dtype | None = None) -> None:
        modules = dict(module.named_modules())
        if backbone_path not in modules:
            raise GradCamError(f"Grad-CAM: the network has no {backbone_path!r} module")
        layer = next((f"{backbone_path}.{name}" for name in FEATURE_LAYERS
                      if f"{backbone_path}.{name}" in modules), None)
        if layer is None:
            raise GradCamError(f"Grad-CAM needs a convolutional feature map ({' or '.join(FEATURE_LAYERS)} "
                               "under the backbone); this network has none")
        self.module = module.eval()
        self.num_classes = int(num_classes)
        self.input_dtype = input_dtype
        self._captured: dict[str, torch.Tensor] = {}
        # The hooks hand tensors over through ``_captured``: one forward pass at a time.
        self._lock = threading.Lock()
        modules[layer].register_forward_hook(self._capture_features)
        modules[backbone_path].register_forward_hook(self._capture_logits)

    def _capture_features(self, _module: nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        """Replace the feature map by a leaf that requires grad: the gradient is wanted with
        respect to it only, whether or not the weights require grad (they do not in a program)."""
        leaf = output.detach().requires_grad_(True)
        self._captured["features"] = leaf
        return leaf

    def _capture_logits(self, _module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
        self._captured["logits"] = output[:, : self.num_classes]

    def __call__(self, frames: np.ndarray, target: int | np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(maps, logits) for frames (N, H, W): ``maps`` (N, H, W) float32 in [0, 1], for class
        ``target`` (one index for all frames, one per frame, or None: each frame's predicted
        class); ``logits`` (N, num_classes) the network's class logits."""
        frames = np.asarray(frames)
        if frames.ndim != 3:
            raise GradCamError(f"Grad-CAM: frames must be (N, H, W), got shape {frames.shape}")
        targets = None if target is None else np.broadcast_to(np.asarray(target, dtype=np.int64), (len(frames),))
        if targets is not None and ((targets < 0) | (targets >= self.num_classes)).any():
            raise GradCamError(f"Grad-CAM: target class must be in 0..{self.num_classes - 1}")
        maps, logits = [], []
        for first in range(0, len(frames), BATCH):
            chunk = frames[first:first + BATCH]
            chosen = None if targets is None else targets[first:first + BATCH]
            chunk_maps, chunk_logits = self._batch(chunk, chosen)
            maps.append(chunk_maps)
            logits.append(chunk_logits)
        shape = (0, *frames.shape[1:])
        return (np.concatenate(maps) if maps else np.zeros(shape, np.float32),
                np.concatenate(logits) if logits else np.zeros((0, self.num_classes), np.float32))

    def _batch(self, frames: np.ndarray, targets: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        x = torch.from_numpy(np.ascontiguousarray(frames))
        if self.input_dtype is not None:
            x = x.to(self.input_dtype)
        with self._lock, torch.enable_grad():
            self.module(x)
            features, logits = self._captured.pop("features"), self._captured.pop("logits")
            chosen = logits.argmax(dim=1) if targets is None else torch.from_numpy(targets.copy())
            score = logits.gather(1, chosen[:, None]).sum()
            (gradient,) = torch.autograd.grad(score, features)
        with torch.no_grad():
            weights = gradient.mean(dim=(2, 3), keepdim=True)
            cam = torch.relu((weights * features).sum(dim=1, keepdim=True))
            cam = F.interpolate(cam, size=frames.shape[1:], mode="bilinear", align_corners=False)[:, 0]
            peak = cam.flatten(1).max(dim=1).values.clamp_min(torch.finfo(cam.dtype).tiny)
            cam = (cam / peak[:, None, None]).clamp(0, 1)
        return cam.numpy().astype(np.float32), logits.detach().numpy().astype(np.float32)


def gradcam_from_checkpoint(path: str | Path) -> GradCam:
    """Grad-CAM of a training checkpoint's network."""
    checkpoint = load_checkpoint(path)
    network = model_from_checkpoint(checkpoint)
    return GradCam(network, "backbone", network.num_classes)


def gradcam_from_program(onnx_path: str | Path) -> GradCam:
    """Grad-CAM of the ``torch.export`` program beside ``onnx_path`` (``NAME.pt2``), with the
    class count and input dtype of the ONNX file's card."""
    from diffstream.engines.base import EngineError
    from diffstream.engines.torch_engine import check_program_archive

    onnx_path = Path(onnx_path)
    program = onnx_path.with_suffix(".pt2")
    if not program.is_file():
        raise GradCamError(f"Grad-CAM: no {program.name} beside {onnx_path.name}; give --checkpoint")
    card = read_card(onnx_path)
    try:
        check_program_archive(program)
    except EngineError as error:
        raise GradCamError(str(error)) from None
    module = torch.export.unflatten(torch.export.load(str(program)))
    return GradCam(module, "network.backbone", len(card.classes), getattr(torch, card.input_dtype))


FIGURE_FRAMES_PER_CLASS = 2
FIGURE_COLUMNS = 8


def gradcam_figure(gradcam: GradCam, model: EvaluatedModel, data_seed: int, path: Path) -> Path:
    """Paper 1 Fig. 5 style: ``FIGURE_FRAMES_PER_CLASS`` fresh test frames of each class (data
    seed ``data_seed``, as scored), each with its Grad-CAM for the predicted class over it and
    the true → predicted class in its title (red where they differ)."""
    import dataclasses

    import matplotlib.pyplot as plt

    from .datasets import load_split

    data = dataclasses.replace(model.config.data, seed=data_seed, test_patterns_per_phase=FIGURE_FRAMES_PER_CLASS)
    shard = load_split(data, "test", progress=False)
    classes = model.card.class_names
    rows = np.concatenate([np.flatnonzero(shard.usable & (shard.lattice == c))[:FIGURE_FRAMES_PER_CLASS]
                           for c in range(len(classes))])
    frames = shard.frames[rows]
    maps, logits = gradcam(frames)
    predicted = logits.argmax(axis=1)
    n_rows = -(-len(rows) // FIGURE_COLUMNS)
    fig, axes = plt.subplots(n_rows, FIGURE_COLUMNS, figsize=(1.6 * FIGURE_COLUMNS, 1.75 * n_rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, frame, heat, true, guess in zip(axes.ravel(), frames, maps, shard.lattice[rows], predicted):
        ax.imshow(frame, cmap="gray")
        ax.imshow(heat, cmap="jet", alpha=0.4, vmin=0, vmax=1)
        ax.set_title(f"{classes[true]} → {classes[guess]}", fontsize=8, color="black" if true == guess else "red")
    fig.suptitle(f"{model.card.name}: Grad-CAM of the predicted class (true → predicted)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
