"""The training loop: data from the cached splits, Adam, a three-part loss, validation each
epoch, early stopping and resumable checkpoints.

Loss = cross-entropy on the lattice (usable frames only: a frame with no pattern has no
lattice) + ``orientation_weight`` × the symmetry-aware rotation loss (usable frames of the
phases whose orientation is trained; the others have no operator row and are masked: for a
``rotation = "grid"`` network the divergence of its bins from the label's bump,
``orientation_grid.grid_loss``), or paper 2's Huber loss on normalised Euler angles
(``orientation_loss = "euler-huber"``) +
``usable_weight`` × binary cross-entropy of the usable logit (every frame). Paper 2's
stopping rule (validation R² on Euler angles, every ``r2_every`` epochs) may end a run
besides early stopping on the validation loss.

Checkpoints (``last.pt`` after every epoch, ``best.pt`` at the best validation loss) hold
the model, optimiser, scheduler, epoch, best metric, history and the config text, which is
all ``export`` needs and all a resumed run needs.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from orix.quaternion import Rotation
from torch import nn
from tqdm import tqdm

from .augment import epoch_turns, turn_about_beam
from .config import Config, parse_config
from .datasets import LATTICES, Shard, class_names, load_split, paper2_scores, score
from .datasets.lattices import class_index
from .datasets.store import resolve_materials
from .models import DiffractionNetwork, NetworkOutputs, build_model
from .orientation import EULER_RANGES, indexed_euler, operator_table, quaternions_to_matrices, symmetry_aware_loss
from .orientation_grid import GridHeads
from .physics.catalogue import get_phase_entry

CHECKPOINT_FORMAT = 1
EVAL_BATCH = 512


class TrainingError(RuntimeError):
    """A run that cannot start or resume as asked (the message says why)."""


@dataclass(frozen=True)
class OrientationTask:
    """The phases whose orientation is trained and their Laue operators, padded into one
    table: row i of ``operators`` belongs to ``phases[i]``."""

    phases: tuple[str, ...]
    point_groups: tuple[str, ...]
    operators: np.ndarray

    @classmethod
    def for_phases(cls, phases: tuple[str, ...]) -> OrientationTask:
        names = tuple(get_phase_entry(p).name for p in phases)
        groups = tuple(get_phase_entry(p).point_group for p in names)
        table = operator_table(groups) if names else np.tile(np.eye(3), (1, 1, 1, 1))
        return cls(names, groups, table)

    def rows(self, phase_names: np.ndarray) -> np.ndarray:
        """Operator row per frame, −1 where the phase has no orientation training."""
        rows = np.full(len(phase_names), -1, dtype=np.int64)
        for i, name in enumerate(self.phases):
            rows[phase_names == name] = i
        return rows

    def indexed_euler(self, shard: Shard) -> np.ndarray:
        """(N, 3) Bunge angles (radians) of each frame's label in its phase's Euler fundamental
        region, as an indexing program would report it (zeros for frames without orientation
        training): paper 2's regression target."""
        euler = np.zeros((len(shard.phase), 3))
        for name, group in zip(self.phases, self.point_groups):
            rows = shard.phase == name
            euler[rows] = indexed_euler(shard.quaternions[rows], group)
        return euler


@dataclass
class Batchable:
    """A split as the loop consumes it: frames stay uint8 until they reach the device."""

    frames: torch.Tensor
    lattice: torch.Tensor
    rotation: torch.Tensor
    operator_row: torch.Tensor
    usable: torch.Tensor
    euler: torch.Tensor
    """Normalised Bunge angles of the label in its Euler fundamental region, paper 2's
    regression target."""

    @classmethod
    def from_shard(cls, shard: Shard, task: OrientationTask) -> Batchable:
        return cls(
            frames=torch.from_numpy(shard.frames),
            lattice=torch.from_numpy(shard.lattice.astype(np.int64)),
            rotation=torch.from_numpy(quaternions_to_matrices(shard.quaternions).astype(np.float32)),
            operator_row=torch.from_numpy(task.rows(shard.phase)),
            usable=torch.from_numpy(shard.usable.astype(np.float32)),
            euler=torch.from_numpy((task.indexed_euler(shard) / np.array(EULER_RANGES)).astype(np.float32)),
        )

    def __len__(self) -> int:
        return len(self.frames)

    def batch(self, index: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name)[index].to(device, non_blocking=True)
                for name in ("frames", "lattice", "rotation", "operator_row", "usable", "euler")}


class MultiTaskLoss(nn.Module):
    """The three-part loss of the module docstring; returns the total and its parts."""

    def __init__(self, operators: np.ndarray, orientation_weight: float, usable_weight: float,
                 class_weights: np.ndarray | None = None, orientation_loss: str = "symmetry-aware",
                 grid: GridHeads | None = None) -> None:
        super().__init__()
        self.orientation_loss = orientation_loss
        self.grid = grid
        self.register_buffer("operators", torch.tensor(operators, dtype=torch.float32))
        self.register_buffer("class_weights", None if class_weights is None else
                             torch.tensor(class_weights, dtype=torch.float32))
        self.orientation_weight = orientation_weight
        self.usable_weight = usable_weight

    def forward(self, out: NetworkOutputs, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, float]]:
        usable = batch["usable"] > 0.5
        lattice = torch.where(usable, batch["lattice"], torch.full_like(batch["lattice"], -100))
        if usable.any():
            ce = nn.functional.cross_entropy(out.logits, lattice, weight=self.class_weights, ignore_index=-100)
        else:
            ce = out.logits.sum() * 0
        rows = batch["operator_row"]
        oriented = usable & (rows >= 0)
        if oriented.any() and self.orientation_loss == "euler-huber":
            if out.euler is None:
                raise TrainingError("train.orientation_loss euler-huber needs a network with rotation = 'euler'")
            rot = nn.functional.huber_loss(out.euler[oriented], batch["euler"][oriented])
        elif oriented.any():
            ops, target = self.operators[rows[oriented]], batch["rotation"][oriented]
            rot = (self.grid.loss(out.rotation_logits[oriented], target, ops, rows[oriented]) if self.grid is not None
                   else symmetry_aware_loss(out.rotation[oriented], target, ops)).mean()
        else:
            rot = out.rotation.sum() * 0
        bce = nn.functional.binary_cross_entropy_with_logits(out.usable_logit, batch["usable"])
        total = ce + self.orientation_weight * rot + self.usable_weight * bce
        return total, {"lattice": float(ce.detach()), "orientation": float(rot.detach()), "usable": float(bce.detach())}


def train(config: Config, out_dir: str | Path, device: str = "cpu", resume: bool = False,
          progress: bool = True) -> dict:
    """Train ``config`` into ``out_dir``; returns the summary of the best epoch.

    ``resume`` continues from ``out_dir/last.pt`` (which must come from the same config);
    without it an existing checkpoint is an error rather than silently overwritten."""
    out_dir = Path(out_dir)
    last = out_dir / "last.pt"
    if last.exists() and not resume:
        raise TrainingError(f"{last} exists: pass --resume to continue it, or choose another --out")
    if config.train.threads:
        torch.set_num_threads(config.train.threads)
    torch.manual_seed(config.train.seed)
    dev = torch.device(device)
    training, _ = resolve_materials(config.data)
    task = OrientationTask.for_phases(tuple(p for p in config.data.orientation_phases if p in training))
    train_data = Batchable.from_shard(load_split(config.data, "train", progress), task)
    val_shard = load_split(config.data, "val", progress)
    val_data = Batchable.from_shard(val_shard, task)

    classes = class_names(config.data)
    model = _build(config, task).to(dev)
    loss_fn = MultiTaskLoss(task.operators, config.train.orientation_weight, config.train.usable_weight,
                            class_weight_vector(config.train.class_weights, classes),
                            config.train.orientation_loss, model.grid).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.learning_rate,
                                 weight_decay=config.train.weight_decay)
    steps_per_epoch = math.ceil(len(train_data) / config.train.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _schedule(config.train.lr_schedule, config.train.epochs * steps_per_epoch))
    state = {"epoch": 0, "best_val_loss": math.inf, "stopping_reference": math.inf, "stale_epochs": 0,
             "history": [], "best_metrics": {}}
    if resume and last.exists():
        state = _restore(last, config, model, optimizer, scheduler)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    while state["epoch"] < config.train.epochs:
        epoch = state["epoch"]
        train_loss = _run_epoch(model, loss_fn, optimizer, scheduler, train_data, config, epoch, dev, progress)
        val_loss, val_parts, outputs = evaluate_loss(model, loss_fn, val_data, dev)
        metrics = score(val_shard, *outputs, orientation_phases=task.phases, classes=classes)
        is_best = _track_best(state, val_loss, config.train.early_stopping_min_delta)
        entry = {"epoch": epoch + 1, "train_loss": round(train_loss, 5), "val_loss": round(val_loss, 5),
                 "val_parts": {k: round(v, 5) for k, v in val_parts.items()},
                 "val_lattice_accuracy": metrics["lattice_accuracy"],
                 "val_median_disorientation_deg": metrics.get("median_disorientation_deg", {}),
                 "val_usable_accuracy": metrics.get("usable_accuracy"),
                 "lr": optimizer.param_groups[0]["lr"], "seconds": round(time.monotonic() - started, 1)}
        stop_by_r2 = bool(config.train.stop_val_r2) and (epoch + 1) % config.train.r2_every == 0
        if stop_by_r2:
            entry["val_euler_r2"] = euler_r2(val_data, outputs[1])
            stop_by_r2 = entry["val_euler_r2"] >= config.train.stop_val_r2
        state["history"].append(entry)
        state["epoch"] = epoch + 1
        if progress:
            tqdm.write(f"epoch {entry['epoch']}: train {train_loss:.4f}  val {val_loss:.4f}  "
                       f"acc {metrics['lattice_accuracy']:.4f}  dis {entry['val_median_disorientation_deg']}")
        if is_best:
            state["best_metrics"] = {**entry, "val": metrics}
            _save(out_dir / "best.pt", config, model, optimizer, scheduler, state, task)
        _save(last, config, model, optimizer, scheduler, state, task)
        if state["stale_epochs"] > config.train.early_stopping_patience or stop_by_r2:
            break
        if config.train.time_limit_minutes and time.monotonic() - started > 60 * config.train.time_limit_minutes:
            break
    return state["best_metrics"]


def class_weight_vector(weights: dict[str, float], classes: tuple[str, ...] = LATTICES) -> np.ndarray | None:
    """The config's per-class weights in class order (None when all are 1)."""
    unknown = set(weights) - set(classes)
    if unknown:
        raise TrainingError(f"train.class_weights: unknown classes {', '.join(sorted(unknown))}")
    if not weights:
        return None
    return np.array([float(weights.get(name, 1.0)) for name in classes])


def _build(config: Config, task: OrientationTask) -> DiffractionNetwork:
    """The config's network; grid rotation heads get the orientation task's point groups and
    each phase's class from the data (so the checkpoint's options hold them)."""
    options = dict(config.model.options)
    for key in ("grid_point_group", "grid_classes"):
        if key in options:
            raise TrainingError(f"model.{key} comes from data.orientation_phases; leave it out of the config")
    if options.get("rotation") == "grid":
        if not task.phases:
            raise TrainingError("model.rotation = 'grid' needs data.orientation_phases")
        options["grid_point_group"] = list(task.point_groups)
        options["grid_classes"] = [_phase_class(config, phase) for phase in task.phases]
    return build_model(config.model.architecture, len(class_names(config.data)), config.model.input_size,
                       **options)


def _phase_class(config: Config, phase: str) -> int:
    """The class index a dataset gives ``phase``'s frames: its lattice (or ordering) for EBSD,
    the phase itself for 4D-STEM."""
    if config.data.kind == "4dstem":
        return class_names(config.data).index(phase)
    return class_index(phase, config.data.labels)


def euler_r2(data: Batchable, rotations: np.ndarray) -> float:
    """Paper 2's R² on Bunge Euler angles (degrees) of the oriented frames: the network's
    rotations as Euler angles against the labels' as indexed (the regression targets the
    split already holds), no symmetry (paper 2's stopping score)."""
    rows = np.flatnonzero(((data.usable > 0.5) & (data.operator_row >= 0)).numpy())
    predicted = Rotation.from_matrix(rotations[rows].astype(np.float64)).to_euler(degrees=True)
    target = np.degrees(data.euler.numpy()[rows].astype(np.float64) * np.array(EULER_RANGES))
    return paper2_scores(predicted, target)["r2"]


def _track_best(state: dict, val_loss: float, min_delta: float) -> bool:
    """Record an epoch's validation loss; True when it is the lowest so far (the epoch to keep
    as ``best.pt``). As Keras keeps its ModelCheckpoint and EarlyStopping apart, any
    improvement makes a new best, while only one of more than ``min_delta`` over the
    stopping reference resets the patience count: a loss that keeps falling in steps below
    ``min_delta`` stops the run but is still kept."""
    reference = state.setdefault("stopping_reference", state["best_val_loss"])
    if val_loss < reference - min_delta:
        state["stopping_reference"] = val_loss
        state["stale_epochs"] = 0
    else:
        state["stale_epochs"] += 1
    if val_loss < state["best_val_loss"]:
        state["best_val_loss"] = val_loss
        return True
    return False


def _schedule(kind: str, total_steps: int):
    """Learning-rate factor per optimiser step: cosine from 1 down to 0.01, constant, or
    paper 2's 0.995^((step + 1)/500)."""
    if kind == "constant":
        return lambda step: 1.0
    if kind == "paper2":
        return lambda step: 0.995 ** ((step + 1) / 500)
    return lambda step: 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))


def _run_epoch(model: nn.Module, loss_fn: MultiTaskLoss, optimizer: torch.optim.Optimizer,
               scheduler: torch.optim.lr_scheduler.LRScheduler, data: Batchable, config: Config, epoch: int,
               device: torch.device, progress: bool) -> float:
    """One pass over the training split in an order fixed by (seed, epoch), so a resumed run
    sees the batches an uninterrupted one would."""
    model.train()
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(config.train.seed * 100_003 + epoch))
    batches = order.split(config.train.batch_size)
    total, count = 0.0, 0
    bar = tqdm(batches, desc=f"epoch {epoch + 1}/{config.train.epochs}", unit="batch", disable=not progress,
               mininterval=5.0)
    turns = epoch_turns(config.train.seed, epoch) if config.train.quarter_turns else None
    for index in bar:
        batch = data.batch(index, device)
        if turns is not None:
            views = torch.randint(0, 8 if config.train.mirrors else 4, (len(index),), generator=turns)
            batch = turn_about_beam(batch, views)
        loss, _ = loss_fn(model(batch["frames"]), batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        total += loss.item() * len(index)
        count += len(index)
        bar.set_postfix(loss=f"{total / count:.4f}", refresh=False)
    return total / max(count, 1)


@torch.no_grad()
def evaluate_loss(model: nn.Module, loss_fn: MultiTaskLoss, data: Batchable,
                  device: torch.device) -> tuple[float, dict[str, float], tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Mean validation loss, its parts, and the outputs (probabilities, rotations, confidence)."""
    model.eval()
    total, parts, n = 0.0, {}, 0
    probs, rots, confs = [], [], []
    for index in torch.arange(len(data)).split(EVAL_BATCH):
        batch = data.batch(index, device)
        out = model(batch["frames"])
        loss, loss_parts = loss_fn(out, batch)
        total += float(loss) * len(index)
        for key, value in loss_parts.items():
            parts[key] = parts.get(key, 0.0) + value * len(index)
        n += len(index)
        probs.append(torch.softmax(out.logits, 1).cpu().numpy())
        rots.append(out.rotation.cpu().numpy())
        confs.append(torch.sigmoid(out.usable_logit).cpu().numpy())
    outputs = (np.concatenate(probs), np.concatenate(rots), np.concatenate(confs))
    return total / n, {k: v / n for k, v in parts.items()}, outputs


def _save(path: Path, config: Config, model: DiffractionNetwork, optimizer: torch.optim.Optimizer,
          scheduler: torch.optim.lr_scheduler.LRScheduler, state: dict, task: OrientationTask) -> None:
    """Write atomically (a kill mid-save must not destroy the previous checkpoint)."""
    payload = {
        "format": CHECKPOINT_FORMAT,
        "config_text": config.source,
        "quick": config.quick,
        "model": {"architecture": model.name, "num_classes": model.num_classes, "options": model.options},
        "classes": list(class_names(config.data)),
        "orientation_phases": dict(zip(task.phases, task.point_groups)),
        "state_dict": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "state": state,
    }
    temporary = path.with_name(f".{path.name}.part")
    torch.save(payload, temporary)
    temporary.replace(path)


def _restore(path: Path, config: Config, model: nn.Module, optimizer: torch.optim.Optimizer,
             scheduler: torch.optim.lr_scheduler.LRScheduler) -> dict:
    checkpoint = load_checkpoint(path)
    if checkpoint["config_text"] != config.source or checkpoint["quick"] != config.quick:
        raise TrainingError(f"{path} was made with another config; resume needs the same one")
    model.load_state_dict(checkpoint["state_dict"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    scheduler.load_state_dict(checkpoint["scheduler"])
    return checkpoint["state"]


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint's contents (on the CPU); refuses files that are not diffstream checkpoints.

    Loaded weights-only: a checkpoint is tensors, numbers, strings and containers, so torch's
    restricted unpickler reads it, and a file from elsewhere cannot run code when opened.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises pickle and zip errors of several types
        raise TrainingError(f"{path} is not a readable checkpoint ({type(error).__name__})") from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{path} is not a diffstream checkpoint (format {CHECKPOINT_FORMAT})")
    return checkpoint


def model_from_checkpoint(checkpoint: dict) -> DiffractionNetwork:
    """The trained network of a checkpoint, in eval mode."""
    spec = checkpoint["model"]
    model = build_model(spec["architecture"], spec["num_classes"], **spec["options"])
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def config_from_checkpoint(checkpoint: dict) -> Config:
    """The config a checkpoint was trained with (its quick overrides applied)."""
    import tomllib

    return parse_config(tomllib.loads(checkpoint["config_text"]), checkpoint["config_text"],
                        quick=checkpoint["quick"], origin="checkpoint config")
