"""Training configurations: TOML files under ``trainer/configs/`` read into typed, checked
dataclasses.

A run is reproducible from its config alone (data, model, optimiser, seeds), so the config
is copied into every checkpoint and model card. A ``[quick]`` table holds overrides
(``[quick.data]``, ``[quick.train]``) for a tiny smoke-test run of the same recipe:
``diffstream train --quick`` must finish in under a minute on a laptop CPU.
"""
from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from .physics.master_pattern import SIMULATIONS
from .physics.specimen import ComponentTexture

MIXED_SIMULATION = "mixed"
"""``DataConfig.master_simulation`` for frames from every kind of master pattern."""

PAPER1_TRAINING = "paper1-training"
"""``data.materials`` keyword: two training materials per Bravais lattice (see
``datasets.lattices.TRAINING_MATERIALS``)."""
BLIND_REST = "rest"
"""``data.blind`` keyword: every catalogue material not trained on."""


DATA_KINDS = ("ebsd", "4dstem")
DATA_SOURCES = ("simulated", "folder")
LABELS = ("lattice", "ordering")


class ConfigError(ValueError):
    """A config file that cannot be used; the message names the file and the field."""


@dataclass(frozen=True)
class ModelConfig:
    architecture: str = "compact"
    input_size: tuple[int, int] | None = None
    """None: the architecture's default (``models.DEFAULT_INPUT_SIZES``)."""
    options: dict[str, Any] = field(default_factory=dict)
    """Passed to the backbone, e.g. ``widths`` of ``compact``."""


@dataclass(frozen=True)
class DataConfig:
    kind: str = "ebsd"
    """"ebsd" (Kikuchi patterns, Bravais-lattice classes) or "4dstem" (SPED spot patterns,
    one class per material, the splits of ``patterns``: see ``datasets.store``)."""
    labels: str = "lattice"
    """EBSD classes: "lattice" (the 14 Bravais lattices) or "ordering" (ordered vs disordered,
    paper 1's point-group study: ``datasets.lattices.POINT_GROUP_PAIRS``)."""
    materials: tuple[str, ...] | str = PAPER1_TRAINING
    blind: tuple[str, ...] | str = BLIND_REST
    random_structures_per_lattice: int = 0
    """Random structures of each Bravais lattice added to ``materials`` (``random-<lattice>-<k>``,
    :mod:`~diffstream.trainer.physics.random_structures`), so that a lattice is learnt from
    more than two materials; EBSD lattice labels only. Their share of a lattice's patterns
    follows ``material_weights`` like any material's."""
    orientation_phases: tuple[str, ...] = ("Ni", "Fe", "Ti")
    """Phases whose orientation is trained (and marked ``orientation`` in the card)."""
    patterns_per_lattice: int = 4096
    """Training patterns per Bravais lattice, shared by its materials (class balance)."""
    material_weights: dict[str, float] = field(default_factory=dict)
    """Relative share of a material within its lattice's patterns (default 1 each): e.g. the
    demo phases at 2 get two thirds of their lattice's frames; every lattice keeps its total."""
    val_patterns_per_lattice: int = 256
    test_patterns_per_phase: int = 256
    """Fresh patterns per material for the final test, the blind test and the demo test."""
    unusable_fraction: float = 0.08
    """Share of frames with no pattern (background, noise), which train the confidence to 0."""
    frame_shape: tuple[int, int] = (60, 60)
    pattern_centre: tuple[float, float, float] = (0.5, 0.5, 0.5)
    """Bruker (x*, y*, z*) of the demo geometry; training jitters around it."""
    pc_jitter: float = 0.04
    sample_tilt: float = 70.0
    detector_tilt: float = 0.0
    voltage_kv: float = 20.0
    train_voltages_kv: tuple[float, ...] = ()
    """EBSD only: beam voltages (kV) the training and validation frames are spread over, each
    frame drawing one; test, blind and demo frames stay at ``voltage_kv``. A network trained at
    one voltage learns its materials' exact band widths (``ebsd-lattice`` trained at 20 kV
    only was right on 96 % of Ta frames at 20 kV and 24 % at 10 kV); () trains at
    ``voltage_kv`` only."""
    band_jitter: float = 0.0
    """EBSD only: above 0, the training and validation master patterns at every voltage of
    ``train_voltages_kv`` but ``voltage_kv`` have each band family's strength scaled by a
    log-normal factor (this the σ of its logarithm, drawn anew per material and voltage:
    ``physics.master_pattern.band_family_scales``), so that a lattice is learnt from band
    geometry, not from two materials' band strengths; at ``voltage_kv``, where test, blind and
    demo frames are made, training sees each material as simulated."""
    axial_jitter: float = 0.0
    """EBSD only: above 0, the training and validation master patterns at every voltage of
    ``train_voltages_kv`` but ``voltage_kv`` come from each material's cell with its free
    axes (c; b and c below tetragonal) scaled by factors within
    [1/(1 + axial_jitter), 1 + axial_jitter], one cell per material and voltage, stratified
    over the voltages (``physics.axial_ratios.rescaled_series``), so that a lattice is
    learnt over a range of axial ratios, not at its two materials' exact ones
    (``diffstream evaluate --axial-sweep``)."""
    dynamical_contrast: bool = False
    """EBSD only: the training and validation master patterns at every voltage of
    ``train_voltages_kv`` but ``voltage_kv`` are re-rendered with zone axes clipped (at a
    random 93rd-100th percentile) and band edges sharpened (a random gain of 1-5), drawn per
    material and voltage (``physics.master_pattern.dynamical_contrast``), so that the network
    meets band profiles closer to real, dynamical patterns than the kinematical ones alone."""
    high_res_fraction: float = 0.2
    """Share of training frames from a high-dose, low-contrast camera instead of the fast one."""
    master_half_size: int = 400
    """Lambert half size of the master patterns (400: the physics default)."""
    master_simulation: str = "kinematical"
    """EBSD only: how every split's master patterns are simulated, "kinematical" (bands summed
    from structure factors, seconds each), "dynamical" (many-beam Bloch waves,
    ``physics.bloch_wave``: the sharp band edges and dark zone axes of real patterns, which a
    network trained on kinematical ones does not recognise; tens of seconds each at
    ``master_half_size = 100``) or "mixed" (both, each frame drawing one: a network trained
    on one kind fails on the other, and the demo streams kinematical frames where a camera
    records dynamical ones)."""
    shard_size: int = 4096
    seed: int = 0
    patterns: int = 0
    """4D-STEM only: labelled frames in all, split 60/20/20 into train, val and test (paper 2)."""
    dose: tuple[float, float] = (2e4, 5e5)
    """4D-STEM only: electrons per pattern, drawn log-uniformly per camera block."""
    source: str = "simulated"
    """"simulated" (generated from this section) or "folder": the train, val and test splits
    a user imported from an experiment (``diffstream dataset import``) under ``folder``."""
    folder: str = ""
    """The imported dataset's folder when ``source = "folder"`` (relative to the working folder)."""
    orientation_centre: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """4D-STEM only, with ``orientation_spread``: Bunge Euler angles (degrees) that the
    orientations scatter about."""
    orientation_spread: float = 0.0
    """4D-STEM only: above 0, orientations are drawn about ``orientation_centre`` with this mean
    misorientation angle in degrees (``physics.specimen.ComponentTexture``) instead of
    uniformly on SO(3), to study one region of orientation space (such as a boundary of the
    Euler fundamental region) within a CPU budget."""

    def simulations(self) -> tuple[str, ...]:
        """The kinds of master pattern (``physics.master_pattern.SIMULATIONS``) the frames
        are projected from, each frame drawing one: both for ``master_simulation = "mixed"``."""
        return SIMULATIONS if self.master_simulation == MIXED_SIMULATION else (self.master_simulation,)

    def texture(self) -> ComponentTexture | None:
        """The orientation distribution of the patterns: None for uniform on SO(3)."""
        if self.orientation_spread > 0:
            return ComponentTexture(euler=tuple(self.orientation_centre), spread=self.orientation_spread)
        return None


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    lr_schedule: str = "cosine"
    """"cosine" (decays to 1 % over ``epochs``), "constant" (paper 1's Keras Adam) or "paper2"
    (lr0·0.995^((i+1)/500), i the optimiser step, as Keras' ExponentialDecay with 500 decay
    steps; paper 2's text calls i the epoch, at which the decay would be under 1 % in 1,000
    epochs)."""
    early_stopping_patience: int = 3
    early_stopping_min_delta: float = 0.001
    orientation_loss: str = "symmetry-aware"
    """"symmetry-aware" (min over the Laue group, on the 6D head) or "euler-huber" (paper 2:
    Huber loss on the normalised Euler angles, for ``rotation = "euler"`` networks)."""
    stop_val_r2: float = 0.0
    """Paper 2's stopping rule: stop once the validation R² on Euler angles reaches this,
    checked every ``r2_every`` epochs (0: off)."""
    r2_every: int = 10
    quarter_turns: bool = False
    """Turn each training frame by a random multiple of 90° about the direct beam, its
    orientation label with it (``trainer/augment.py``): exact for simulated 4D-STEM frames
    only, and only with the symmetry-aware loss."""
    mirrors: bool = False
    """With ``quarter_turns``: also reverse the columns of half the turned frames, the label
    becoming M · R_x(180°), exact for the same frames (``trainer/augment.py``): eight
    orientations per simulated pattern instead of four."""
    orientation_weight: float = 1.0
    usable_weight: float = 0.5
    class_weights: dict[str, float] = field(default_factory=dict)
    """Cross-entropy weight per class name (default 1). A weight below 1 lowers a class's
    prior: where the network cannot tell it from another class, it reports the other."""
    time_limit_minutes: float = 0.0
    """Stop after the epoch that crosses this wall-clock budget (0: no limit)."""
    threads: int = 0
    """torch CPU threads (0: torch's default)."""
    seed: int = 0


@dataclass(frozen=True)
class Config:
    name: str
    description: str
    model: ModelConfig
    data: DataConfig
    train: TrainConfig
    source: str = ""
    """The TOML text this came from (stored in checkpoints and cards)."""
    quick: bool = False


_SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}


def packaged_config_dir() -> Path:
    """Where the shipped configs live (``trainer/configs``)."""
    return Path(str(resources.files("diffstream.trainer") / "configs"))


def resolve_config_path(spec: str | Path) -> Path:
    """A path to a TOML file, or the name of a shipped config (``ebsd-lattice``)."""
    path = Path(spec)
    if path.is_file():
        return path
    shipped = packaged_config_dir() / f"{spec}.toml"
    if shipped.is_file():
        return shipped
    names = ", ".join(sorted(p.stem for p in packaged_config_dir().glob("*.toml")))
    raise FileNotFoundError(f"config: no file {spec} and no shipped config of that name ({names})")


def load_config(spec: str | Path, quick: bool = False) -> Config:
    """Read and check a config; ``quick`` applies its ``[quick]`` overrides."""
    path = resolve_config_path(spec)
    text = path.read_text(encoding="utf-8")
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"config {path}: not valid TOML ({error})") from None
    return parse_config(raw, text, quick=quick, origin=str(path))


def parse_config(raw: dict, text: str = "", quick: bool = False, origin: str = "config") -> Config:
    """A ``Config`` from parsed TOML (exposed so checkpoints can be re-read from their text)."""
    unknown = set(raw) - {"name", "description", "quick", *_SECTIONS}
    if unknown:
        raise ConfigError(f"{origin}: unknown top-level keys {', '.join(sorted(unknown))}")
    if "name" not in raw:
        raise ConfigError(f"{origin}: missing 'name'")
    overrides = raw.get("quick", {}) if quick else {}
    sections = {
        key: _section(cls, {**raw.get(key, {}), **overrides.get(key, {})}, f"{origin} [{key}]")
        for key, cls in _SECTIONS.items()
    }
    train, data = sections["train"], sections["data"]
    if train.quarter_turns and not (data.kind == "4dstem" and data.source == "simulated"
                                    and train.orientation_loss == "symmetry-aware"):
        raise ConfigError(f"{origin} [train]: quarter_turns is exact only for simulated 4D-STEM frames "
                          f"(kind = \"4dstem\", source = \"simulated\") with orientation_loss = \"symmetry-aware\"")
    if train.quarter_turns and data.frame_shape[0] != data.frame_shape[1]:
        raise ConfigError(f"{origin} [train]: quarter_turns needs square frames, got frame_shape "
                          f"{list(data.frame_shape)}")
    if train.mirrors and not train.quarter_turns:
        raise ConfigError(f"{origin} [train]: mirrors come with the quarter turns; set quarter_turns = true too")
    if sections["model"].options.get("preprocess") == "log-unit-friedel" and data.kind != "4dstem":
        raise ConfigError(f"{origin} [model]: preprocess = \"log-unit-friedel\" is for 4D-STEM frames with the "
                          "direct beam at the centre (kind = \"4dstem\"); a Kikuchi pattern has no half-turn twin")
    return Config(name=str(raw["name"]), description=str(raw.get("description", "")), source=text,
                  quick=quick, **sections)


def _section(cls: type, values: dict, where: str) -> Any:
    names = {f.name: f for f in dataclasses.fields(cls)}
    if cls is ModelConfig:
        options = {k: v for k, v in values.items() if k not in names}
        values = {k: v for k, v in values.items() if k in names}
        values["options"] = {**values.get("options", {}), **options}
    unknown = set(values) - set(names)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {', '.join(sorted(unknown))}")
    converted = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
    try:
        section = cls(**converted)
    except TypeError as error:
        raise ConfigError(f"{where}: {error}") from None
    _check(section, where)
    return section


def _check(section: Any, where: str) -> None:
    positive = ("patterns_per_lattice", "val_patterns_per_lattice", "test_patterns_per_phase", "shard_size",
                "epochs", "batch_size", "r2_every")
    for name in positive:
        value = getattr(section, name, 1)
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{where}: {name} must be a positive integer, got {value!r}")
    fraction = getattr(section, "unusable_fraction", 0.0)
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"{where}: unusable_fraction must be in [0, 1), got {fraction!r}")
    schedule = getattr(section, "lr_schedule", "cosine")
    if schedule not in ("cosine", "constant", "paper2"):
        raise ConfigError(f"{where}: lr_schedule must be 'cosine', 'constant' or 'paper2', got {schedule!r}")
    loss = getattr(section, "orientation_loss", "symmetry-aware")
    if loss not in ("symmetry-aware", "euler-huber"):
        raise ConfigError(f"{where}: orientation_loss must be 'symmetry-aware' or 'euler-huber', got {loss!r}")
    labels = getattr(section, "labels", "lattice")
    if labels not in LABELS:
        raise ConfigError(f"{where}: labels must be one of {', '.join(LABELS)}, got {labels!r}")
    kind = getattr(section, "kind", "ebsd")
    if kind not in DATA_KINDS:
        raise ConfigError(f"{where}: kind must be one of {', '.join(DATA_KINDS)}, got {kind!r}")
    randoms = getattr(section, "random_structures_per_lattice", 0)
    if not isinstance(randoms, int) or randoms < 0:
        raise ConfigError(f"{where}: random_structures_per_lattice must be an integer ≥ 0, got {randoms!r}")
    if randoms and (kind != "ebsd" or section.labels != "lattice"):
        raise ConfigError(f"{where}: random_structures_per_lattice widens EBSD lattice training only "
                          f"(kind = \"ebsd\", labels = \"lattice\")")
    voltages = getattr(section, "train_voltages_kv", ())
    if voltages and (kind != "ebsd" or section.source != "simulated"):
        raise ConfigError(f"{where}: train_voltages_kv spreads simulated EBSD frames only (kind = \"ebsd\", "
                          f"source = \"simulated\")")
    if any(isinstance(kv, bool) or not isinstance(kv, (int, float)) for kv in voltages):
        raise ConfigError(f"{where}: train_voltages_kv must be a list of beam voltages in kV, got {list(voltages)!r}")
    jitter = getattr(section, "band_jitter", 0.0)
    if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or not 0.0 <= jitter <= 2.0:
        raise ConfigError(f"{where}: band_jitter must be a number in [0, 2] (σ of the log factor), got {jitter!r}")
    axial = getattr(section, "axial_jitter", 0.0)
    if isinstance(axial, bool) or not isinstance(axial, (int, float)) or not 0.0 <= axial <= 1.0:
        raise ConfigError(f"{where}: axial_jitter must be a number in [0, 1] (largest relative change of an "
                          f"axis), got {axial!r}")
    contrast = getattr(section, "dynamical_contrast", False)
    if not isinstance(contrast, bool):
        raise ConfigError(f"{where}: dynamical_contrast must be true or false, got {contrast!r}")
    for option, value in (("band_jitter", jitter), ("axial_jitter", axial), ("dynamical_contrast", contrast)):
        if value and not (kind == "ebsd" and section.source == "simulated" and set(voltages) - {section.voltage_kv}):
            raise ConfigError(f"{where}: {option} changes simulated EBSD training frames at the train_voltages_kv "
                              f"other than voltage_kv; set those (kind = \"ebsd\", source = \"simulated\")")
    simulation = getattr(section, "master_simulation", "kinematical")
    if simulation not in (*SIMULATIONS, MIXED_SIMULATION):
        raise ConfigError(f"{where}: master_simulation must be one of {', '.join(SIMULATIONS)}, "
                          f"{MIXED_SIMULATION}, got {simulation!r}")
    if simulation != "kinematical" and (jitter or contrast or kind != "ebsd"):
        raise ConfigError(f"{where}: master_simulation = \"{simulation}\" is for EBSD sets without band_jitter "
                          f"and dynamical_contrast, which re-render kinematical master patterns")
    source = getattr(section, "source", "simulated")
    if source not in DATA_SOURCES:
        raise ConfigError(f"{where}: source must be one of {', '.join(DATA_SOURCES)}, got {source!r}")
    if source == "folder" and not section.folder:
        raise ConfigError(f"{where}: source = \"folder\" needs folder, the path `diffstream dataset import` wrote")
    spread = getattr(section, "orientation_spread", 0.0)
    if not (isinstance(spread, (int, float)) and 0.0 <= spread <= 60.0):
        raise ConfigError(f"{where}: orientation_spread must be a number of degrees in [0, 60], got {spread!r}")
    if spread and kind != "4dstem":
        raise ConfigError(f"{where}: orientation_spread narrows 4D-STEM sets only (kind = \"4dstem\")")
    if spread and len(section.orientation_centre) != 3:
        raise ConfigError(f"{where}: orientation_centre must be three Bunge angles in degrees, "
                          f"got {section.orientation_centre!r}")
    if kind == "4dstem" and (not isinstance(section.patterns, int) or section.patterns < 5):
        raise ConfigError(f"{where}: a 4dstem set needs patterns, an integer of at least 5, got {section.patterns!r}")
