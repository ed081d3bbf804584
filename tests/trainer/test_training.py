"""Configs, and the whole path through the command handlers: ``train --quick`` makes a
checkpoint, ``export`` turns it into an ONNX file whose card reads back; resume rules."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from diffstream.engines.model_card import read_card
from diffstream.live.cli import UserError
from diffstream.live.commands import train as train_command
from diffstream.trainer.config import ConfigError, load_config, packaged_config_dir, parse_config
from diffstream.trainer.training import _track_best, load_checkpoint

CONFIG = Path(__file__).resolve().parents[2] / "trainer" / "configs" / "ebsd-lattice.toml"


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="diffstream")
    train_command.register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def _run(*argv: str) -> int:
    args = _parse(*argv)
    return args.handler(args)


@pytest.mark.parametrize("path", sorted(packaged_config_dir().glob("*.toml")), ids=lambda p: p.stem)
def test_shipped_configs_parse(path: Path) -> None:
    config = load_config(path)
    assert config.name == path.stem
    assert load_config(path, quick=True).quick


def test_paper1_recipe() -> None:
    config = load_config("paper1-resnet50")
    assert config.model.architecture == "resnet50"
    assert config.train.batch_size == 32 and config.train.early_stopping_min_delta == 0.001
    assert config.train.lr_schedule == "constant"


def test_quick_overrides_only_what_it_names() -> None:
    full, quick = load_config(CONFIG), load_config(CONFIG, quick=True)
    assert quick.train.epochs == 1 and quick.data.patterns_per_lattice < full.data.patterns_per_lattice
    assert quick.train.learning_rate == full.train.learning_rate


def test_config_errors_name_the_field() -> None:
    with pytest.raises(ConfigError, match="unknown keys bogus"):
        parse_config({"name": "x", "train": {"bogus": 1}})
    with pytest.raises(ConfigError, match="batch_size"):
        parse_config({"name": "x", "train": {"batch_size": 0}})
    with pytest.raises(ConfigError, match="missing 'name'"):
        parse_config({})
    with pytest.raises(ConfigError, match="train_voltages_kv spreads simulated EBSD"):
        parse_config({"name": "x", "data": {"kind": "4dstem", "patterns": 10, "train_voltages_kv": [15, 25]}})
    with pytest.raises(ConfigError, match="train_voltages_kv must be a list"):
        parse_config({"name": "x", "data": {"train_voltages_kv": ["20"]}})
    with pytest.raises(ConfigError, match="band_jitter changes simulated EBSD training frames"):
        parse_config({"name": "x", "data": {"band_jitter": 0.5, "train_voltages_kv": [20.0]}})
    with pytest.raises(ConfigError, match="dynamical_contrast changes simulated EBSD training frames"):
        parse_config({"name": "x", "data": {"dynamical_contrast": True}})
    with pytest.raises(ConfigError, match="dynamical_contrast must be true or false"):
        parse_config({"name": "x", "data": {"dynamical_contrast": 1, "train_voltages_kv": [15, 25]}})
    with pytest.raises(ConfigError, match="band_jitter must be a number in"):
        parse_config({"name": "x", "data": {"band_jitter": -1, "train_voltages_kv": [15, 25]}})
    with pytest.raises(ConfigError, match="master_simulation must be one of kinematical, dynamical, mixed"):
        parse_config({"name": "x", "data": {"master_simulation": "multislice"}})
    with pytest.raises(ConfigError, match="master_simulation = \"mixed\" is for EBSD sets without band_jitter"):
        parse_config({"name": "x", "data": {"master_simulation": "mixed", "dynamical_contrast": True,
                                            "train_voltages_kv": [15, 25]}})
    assert parse_config({"name": "x", "data": {"master_simulation": "mixed"}}).data.master_simulation == "mixed"
    with pytest.raises(ConfigError, match="master_simulation = \"dynamical\" is for EBSD sets without band_jitter"):
        parse_config({"name": "x", "data": {"master_simulation": "dynamical", "band_jitter": 0.5,
                                            "train_voltages_kv": [15, 25]}})
    with pytest.raises(ConfigError, match="axial_jitter changes simulated EBSD training frames"):
        parse_config({"name": "x", "data": {"axial_jitter": 0.2}})
    with pytest.raises(ConfigError, match=r"axial_jitter must be a number in \[0, 1\]"):
        parse_config({"name": "x", "data": {"axial_jitter": 1.5, "train_voltages_kv": [15, 25]}})


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("train") / "run"
    assert _run("train", "--config", str(CONFIG), "--quick", "--out", str(out)) == 0
    return out


def test_quick_training_writes_checkpoints(quick_run: Path, capsys: pytest.CaptureFixture) -> None:
    checkpoint = load_checkpoint(quick_run / "best.pt")
    assert checkpoint["state"]["epoch"] == 1 and checkpoint["quick"]
    assert checkpoint["orientation_phases"] == {"Ni": "m-3m", "Fe": "m-3m", "Ti": "6/mmm"}
    assert (quick_run / "last.pt").is_file()


def test_export_of_the_quick_checkpoint(quick_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "quick.onnx"
    assert _run("export", str(quick_run / "best.pt"), "--out", str(out), "--evaluate") == 0
    printed = json.loads(capsys.readouterr().out)
    card = read_card(out)
    assert printed["name"] == card.name == "ebsd-lattice"
    assert card.kind == "ebsd" and card.input_shape == (60, 60) and card.input_dtype == "uint8"
    oriented = {c.name for c in card.classes if c.orientation}
    assert oriented == {"cF", "cI", "hP"}
    assert {c.name: c.point_group for c in card.classes}["hR"] == "-3m"
    assert card.training["seed"] == {"data": 1, "train": 1}
    assert card.training["data"]["geometry"]["train_voltages_kv"] == [10.0, 15.0, 20.0, 25.0, 30.0]
    assert card.training["data"]["band_jitter"] == card.training["data"]["axial_jitter"] == 0.0
    assert set(card.metrics) >= {"validation", "test", "blind", "demo", "onnxruntime_cpu"}


def test_existing_run_needs_resume(quick_run: Path) -> None:
    with pytest.raises(UserError, match="--resume"):
        _run("train", "--config", str(CONFIG), "--quick", "--out", str(quick_run))
    assert _run("train", "--config", str(CONFIG), "--quick", "--out", str(quick_run), "--resume") == 0


def test_export_refuses_a_non_checkpoint(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.pt"
    bogus.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a readable checkpoint"):
        _run("export", str(bogus), "--out", str(tmp_path / "m.onnx"))
    with pytest.raises(UserError, match=r"\.onnx"):
        _run("export", str(bogus), "--out", str(tmp_path / "m.bin"))


def test_class_weights_follow_class_order() -> None:
    from diffstream.trainer.datasets import LATTICES
    from diffstream.trainer.training import TrainingError, class_weight_vector

    vector = class_weight_vector({"oI": 0.25})
    assert vector[LATTICES.index("oI")] == 0.25 and vector.sum() == len(LATTICES) - 0.75
    assert class_weight_vector({}) is None
    with pytest.raises(TrainingError, match="unknown classes xX"):
        class_weight_vector({"xX": 1.0})


def test_best_checkpoint_follows_any_improvement_and_patience_only_real_ones() -> None:
    """Keras' split: ModelCheckpoint keeps every new lowest loss; EarlyStopping counts an
    epoch as progress only when it beats its reference by more than min_delta."""
    state = {"best_val_loss": float("inf"), "stale_epochs": 0}
    kept, stale = [], []
    for loss in (1.0, 0.9995, 0.999, 0.9985, 0.997, 0.9975):
        kept.append(_track_best(state, loss, 0.001))
        stale.append(state["stale_epochs"])
    assert kept == [True, True, True, True, True, False]
    assert stale == [0, 1, 2, 0, 0, 1]  # 0.9985 beats the reference 1.0 by more than 0.001
    assert state["best_val_loss"] == 0.997 and state["stopping_reference"] == 0.997
