"""Checkpoint → ONNX model file with its card (``engines/model_card.py``), and the numbers
the card reports, measured on the exported file itself.

The graph takes raw detector frames, ``frames`` (N, H, W) uint8 with a dynamic batch axis,
and does its own preprocessing (cast, resize if needed, background removal, normalisation),
so every backend computes the same thing from the same bytes (DESIGN.md). Its outputs follow the
card's contract exactly: ``class_probabilities`` (softmax), ``rotation_matrix`` (orix's
``Rotation.to_matrix()`` convention) and ``confidence`` (sigmoid of the usable logit).

The exporter is torch's TorchScript-based one (``dynamo=False``): the torch.export-based
default needs the onnxscript package, which diffstream does not depend on, and the
TorchScript exporter covers every operator these networks use.

Beside the ONNX goes the same wrapper as a ``torch.export`` program (``NAME.pt2``), which the
torch backend (``engines/torch_engine.py``) runs on machines with PyTorch but no TensorRT.
The card stays in the ONNX only: one file is the model's description, the other a second
compilation of the same weights.
"""
from __future__ import annotations

import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from diffstream.engines.availability import cpu_model
from diffstream.engines.model_card import OUTPUTS, ModelCard, ModelClass, write_card

from .config import Config
from .datasets import ORDERED_SUPERSTRUCTURES, Shard, class_names, class_point_groups, load_split, score
from .datasets.store import resolve_materials
from .models import DiffractionNetwork
from .models.network import rotation_output_meaning
from .models.preprocess import PREPROCESSORS
from .physics.catalogue import get_phase_entry
from .training import config_from_checkpoint, load_checkpoint, model_from_checkpoint
from .view_ensemble import ViewEnsemble

OPSET = 18
BENCH_BATCH = 256
#: Largest batch the torch program's dynamic batch dimension admits (far above any live batch).
PROGRAM_MAX_BATCH = 65536

OUTPUT_MEANINGS = {
    "class_probabilities": "softmax over the 14 Bravais lattices (Pearson symbols, card.classes order)",
    "confidence": "sigmoid of the usable-pattern logit: probability that the frame holds a Kikuchi pattern",
}


class ExportError(ValueError):
    """A checkpoint that cannot be exported as asked (the message says why)."""


class ExportWrapper(nn.Module):
    """The network with its heads turned into the contract's outputs."""

    def __init__(self, network: DiffractionNetwork) -> None:
        super().__init__()
        self.network = network

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.network(frames)
        return torch.softmax(out.logits, dim=1), out.rotation, torch.sigmoid(out.usable_logit)


def export_network(network: DiffractionNetwork, frame_shape: tuple[int, int], card: ModelCard,
                   out: str | Path, views: int = 1, operators: np.ndarray | None = None) -> Path:
    """Write ``network`` as ONNX with ``card`` in its metadata; atomic (temporary + rename).
    With ``views`` other than 1 the graph runs it on that many symmetric views of each 4D-STEM
    frame and combines their answers under the Laue group ``operators`` (``view_ensemble``,
    which checks the count)."""
    out = Path(out)
    wrapper = ExportWrapper(network.eval()).eval()
    if views != 1:
        wrapper = ViewEnsemble(wrapper, views, operators).eval()
    example = torch.zeros((2, *frame_shape), dtype=torch.uint8)
    temporary = out.with_name(f".{out.name}.part")
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            wrapper, (example,), str(temporary), input_names=["frames"], output_names=list(OUTPUTS),
            dynamic_axes={"frames": {0: "N"}, **{name: {0: "N"} for name in OUTPUTS}},
            opset_version=OPSET, dynamo=False,
        )
    model = onnx.load(str(temporary))
    onnx.checker.check_model(model)
    write_card(model, card)
    onnx.save(model, str(temporary))
    os.replace(temporary, out)
    return out


def export_program(network: DiffractionNetwork, frame_shape: tuple[int, int], out: str | Path) -> Path:
    """Write ``network`` as a ``torch.export`` program (``.pt2``) with a dynamic batch axis: uint8
    frames (N, H, W) in, the contract's three outputs out in :data:`OUTPUTS` order; atomic.

    Weights are saved as raw tensor payloads (torch.export's default), which is what lets the
    torch backend refuse any archive that would need unpickling (``engines/torch_engine.py``).
    """
    out = Path(out)
    wrapper = ExportWrapper(network.eval()).eval()
    example = torch.zeros((2, *frame_shape), dtype=torch.uint8)
    batch = torch.export.Dim("N", min=1, max=PROGRAM_MAX_BATCH)
    with torch.no_grad():
        program = torch.export.export(wrapper, (example,), dynamic_shapes={"frames": {0: batch}})
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent) as folder:
        temporary = Path(folder) / out.name  # the archive's inner folder is named after the file
        torch.export.save(program, str(temporary))
        os.replace(temporary, out)
    return out


def preprocessing_text(checkpoint: dict, input_dtype: str) -> str:
    """The card's account of the preprocessing inside the graph, read off the layer the
    checkpoint's network is built with, so that the words follow the graph."""
    options = checkpoint["model"]["options"]
    layer = PREPROCESSORS[options.get("preprocess", "background")](options["input_size"])
    return f"inside the graph: cast {input_dtype} frames to float32; {layer.describe()}"


def output_meanings(meanings: dict[str, str], checkpoint: dict) -> dict[str, str]:
    """The card's output texts, in contract order: ``meanings`` plus ``rotation_matrix``'s,
    which says how the checkpoint's rotation head makes the matrix."""
    rotation = checkpoint["model"]["options"].get("rotation", "6d")
    texts = {**meanings, "rotation_matrix": rotation_output_meaning(rotation)}
    return {name: texts[name] for name in OUTPUTS}


def build_card(config: Config, checkpoint: dict, metrics: dict) -> ModelCard:
    """The card of an EBSD model trained with ``config``: the classes with their point groups
    (``class_point_groups``), ``orientation`` on the lattices of the phases whose orientation
    was trained."""
    oriented = {get_phase_entry(name).bravais_lattice for name in checkpoint["orientation_phases"]}
    names = class_names(config.data)
    if list(names) != list(checkpoint["classes"]):
        raise ValueError(f"checkpoint classes {checkpoint['classes']} differ from its config's {list(names)}")
    classes = tuple(ModelClass(name=c, point_group=group, orientation=c in oriented)
                    for c, group in zip(names, class_point_groups(config.data)))
    training, blind = resolve_materials(config.data)
    return ModelCard(
        name=config.name,
        kind="ebsd",
        task=("lattice", "orientation", "confidence"),
        input_shape=tuple(config.data.frame_shape),
        input_dtype="uint8",
        classes=classes,
        outputs=output_meanings(OUTPUT_MEANINGS, checkpoint),
        preprocessing=preprocessing_text(checkpoint, "uint8"),
        training=training_record(config, checkpoint, {
            "source": "kinematical master patterns (diffstream.trainer.physics) projected with the numpy "
                      "projector, detector model cameras around the 'fast' preset plus high_res-like ones",
            "training_materials": list(training),
            "blind_materials": list(blind),
            "orientation_phases": checkpoint["orientation_phases"],
            "patterns_per_lattice": config.data.patterns_per_lattice,
            "unusable_fraction": config.data.unusable_fraction,
            "band_jitter": config.data.band_jitter,
            "axial_jitter": config.data.axial_jitter,
            "dynamical_contrast": config.data.dynamical_contrast,
            "geometry": {"frame_shape": list(config.data.frame_shape),
                         "pattern_centre_bruker": list(config.data.pattern_centre),
                         "pc_jitter": config.data.pc_jitter, "sample_tilt": config.data.sample_tilt,
                         "detector_tilt": config.data.detector_tilt, "voltage_kv": config.data.voltage_kv,
                         "train_voltages_kv": list(config.data.train_voltages_kv) or [config.data.voltage_kv]},
        }),
        metrics=metrics,
    )


def training_record(config: Config, checkpoint: dict, data: dict) -> dict:
    """The card's ``training`` entry: how to rebuild the model (config, seeds, data) and how far it trained."""
    state = checkpoint["state"]
    return {
        "config": config.name,
        "config_text": config.source,
        "quick": config.quick,
        "architecture": checkpoint["model"],
        "seed": {"data": config.data.seed, "train": config.train.seed},
        "data": data,
        "epochs_run": state["epoch"],
        "best_epoch": state["best_metrics"].get("epoch"),
        "history": state.get("history"),
        "exporter": f"torch {torch.__version__} TorchScript ONNX exporter, opset {OPSET}",
    }

def export_checkpoint(checkpoint_path: str | Path, out: str | Path, evaluate: bool = False,
                      views: int = 1) -> ModelCard:
    """``diffstream export``: the checkpoint's network and card to ``out``, and the torch program
    to ``out`` with suffix ``.pt2``; with ``evaluate`` the ONNX is then scored on the test, blind
    and demo splits and timed, and rewritten with those numbers in its card. ``views`` > 1
    (4D-STEM only) runs the network on the frame's symmetric views (``view_ensemble``)."""
    checkpoint = load_checkpoint(checkpoint_path)
    config = config_from_checkpoint(checkpoint)
    if config.data.kind == "4dstem":
        from .sped_export import export_sped_checkpoint

        return export_sped_checkpoint(checkpoint_path, out, evaluate=evaluate, views=views)
    if views != 1:
        raise ExportError(f"views: {checkpoint_path} is an EBSD checkpoint; a Kikuchi pattern turned by a quarter "
                          "turn is no other orientation's pattern (the sample and detector are tilted), so it takes "
                          "views 1 only")
    network = model_from_checkpoint(checkpoint)
    best = checkpoint["state"]["best_metrics"]
    metrics = {"validation": {k: best.get(k) for k in ("epoch", "val_loss", "val_lattice_accuracy",
                                                        "val_median_disorientation_deg", "val_usable_accuracy")}}
    card = build_card(config, checkpoint, metrics)
    export_network(network, tuple(config.data.frame_shape), card, out)
    export_program(network, tuple(config.data.frame_shape), Path(out).with_suffix(".pt2"))
    if evaluate:
        metrics.update(evaluate_onnx(out, config, tuple(checkpoint["orientation_phases"])))
        card = build_card(config, checkpoint, metrics)
        model = onnx.load(str(out))
        write_card(model, card)
        onnx.save(model, str(out))
    return card


def onnx_session(path: str | Path, threads: int | None = None):
    """A CPU ONNX Runtime session set up as the live engine sets it up (one op at a time,
    fanned over ``threads`` cores)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def run_onnx(session, frames: np.ndarray, batch: int = BENCH_BATCH) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The three outputs for all ``frames``, in batches."""
    parts = [session.run(list(OUTPUTS), {"frames": frames[i : i + batch]}) for i in range(0, len(frames), batch)]
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(len(OUTPUTS)))


def measure_ort_rate(path: str | Path, batch: int = BENCH_BATCH, threads: int | None = None,
                     seconds: float = 5.0, frame_shape: tuple[int, int] = (60, 60)) -> float:
    """Frames per second of the ONNX file under ONNX Runtime on this CPU: random uint8 frames
    at ``batch``, after three warm-up runs, for about ``seconds``."""
    session = onnx_session(path, threads)
    frames = np.random.default_rng(0).integers(0, 256, (batch, *frame_shape), dtype=np.uint8)
    for _ in range(3):
        session.run(None, {"frames": frames})
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        session.run(None, {"frames": frames})
        runs += 1
    return batch * runs / (time.perf_counter() - start)


def evaluate_onnx(path: str | Path, config: Config, orientation_phases: tuple[str, ...]) -> dict:
    """Scores of the exported file on fresh frames: ``test`` (training materials), ``blind``
    (materials never trained on; for lattice labels also without the ordered superstructures,
    whose patterns are nearly their disordered parents'), ``demo`` (Ni, Fe, Ti on the ``fast`` camera at
    the demo geometry), and the ONNX Runtime rate (timed for 5 s; 0.5 s for a quick run)."""
    session = onnx_session(path)
    classes = class_names(config.data)
    results: dict = {}
    for split in ("test", "blind", "demo"):
        shard = load_split(config.data, split)
        outputs = run_onnx(session, shard.frames)
        result = score(shard, *outputs, orientation_phases=orientation_phases, classes=classes)
        if split == "blind" and config.data.labels == "lattice":
            keep = ~np.isin(shard.phase, ORDERED_SUPERSTRUCTURES)
            result["lattice_accuracy_without_ordered_superstructures"] = score(
                _subset(shard, keep), outputs[0][keep])["lattice_accuracy"]
        results[split] = result
    threads = os.cpu_count() or 1
    results["onnxruntime_cpu"] = {
        "frames_per_second": round(measure_ort_rate(path, seconds=0.5 if config.quick else 5.0,
                                                    frame_shape=tuple(config.data.frame_shape))),
        "batch": BENCH_BATCH, "threads": threads, "cpu": cpu_model(), "onnxruntime": _ort_version(),
    }
    return results


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def _subset(shard: Shard, keep: np.ndarray) -> Shard:
    return Shard(**{key: value[keep] for key, value in shard.arrays().items()})
