"""``diffstream dataset import``: a tiny synthetic experiment (kikuchipy h5ebsd patterns, an
.ang written by orix from the same orientations with a CI column and a phase the catalogue
does not know) becomes train/val/test shards; the counts after filtering, the labels, the
orientations and the split's determinism are checked, bad input is a one-line error, and
a config with ``data.source = "folder"`` trains on the result."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import kikuchipy as kp
import numpy as np
import pytest
from orix import io
from orix.crystal_map import CrystalMap, Phase, PhaseList

from conftest import run_diffstream
from diffstream.trainer.config import ConfigError, load_config
from diffstream.trainer.datasets import LATTICES, LabelledDataError, import_labelled, load_split, read_split
from diffstream.trainer.evaluation import evaluate_model
from diffstream.trainer.export import export_checkpoint
from diffstream.trainer.physics.ebsd_patterns import simulate_ebsd_patterns, write_h5ebsd
from diffstream.trainer.physics.master_pattern import kinematical_master_pattern
from diffstream.trainer.training import train

N = 40
CI_MIN = 0.3


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, CrystalMap]:
    """40 Ni patterns in a kikuchipy h5ebsd file and their .ang: CI rising from 0 to 1, the
    last quarter of the points labelled with a phase unknown to the catalogue."""
    folder = tmp_path_factory.mktemp("experiment")
    master = kinematical_master_pattern("Ni", 20.0, half_size=32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the file is written without kikuchipy complaining about its axes
        patterns = write_h5ebsd(simulate_ebsd_patterns("Ni", N, 60, seed=4, master=master), folder / "p.h5")
    rotations = kp.load(patterns).xmap.rotations
    phase_id = np.where(np.arange(N) < 3 * N // 4, 0, 1)
    xmap = CrystalMap(rotations=rotations, phase_id=phase_id, x=np.arange(N, dtype=float),
                      phase_list=PhaseList([Phase("Ni", point_group="m-3m"), Phase("Mystery", point_group="6/mmm")]),
                      prop={"ci": np.linspace(0.0, 1.0, N), "iq": np.full(N, 100.0)})
    io.save(folder / "o.ang", xmap)
    return patterns, folder / "o.ang", xmap


def _all(folder: Path) -> dict[str, np.ndarray]:
    parts = [read_split(folder / split) for split in ("train", "val", "test")]
    return {key: np.concatenate([p.arrays()[key] for p in parts]) for key in parts[0].arrays()}


def test_import_filters_labels_and_splits(experiment: tuple[Path, Path, CrystalMap], tmp_path: Path) -> None:
    patterns, ang, xmap = experiment
    summary = import_labelled(patterns, ang, tmp_path / "a", minimum={"ci": CI_MIN}, phases={"Mystery": "hP"})
    kept = np.flatnonzero(np.linspace(0.0, 1.0, N) >= CI_MIN)
    assert summary["kept"] == len(kept) and summary["points"] == N
    assert summary["splits"] == {"train": round(0.6 * len(kept)), "val": round(0.2 * len(kept)),
                                 "test": len(kept) - round(0.6 * len(kept)) - round(0.2 * len(kept))}
    assert summary["per_phase"] == {"Ni": int((kept < 30).sum()), "Mystery": int((kept >= 30).sum())}
    stored = _all(tmp_path / "a")
    frames = np.asarray(kp.load(patterns).data)
    # every stored frame is one of the kept points', with that point's labels and orientation
    point = np.array([int(np.flatnonzero((frames == f).all(axis=(1, 2)))[0]) for f in stored["frames"]])
    assert sorted(point.tolist()) == kept.tolist()
    assert (stored["lattice"] == np.where(point < 30, LATTICES.index("cF"), LATTICES.index("hP"))).all()
    assert (stored["phase"] == np.where(point < 30, "Ni", "Mystery")).all() and stored["usable"].all()
    truth = xmap.rotations.data[point]
    assert np.abs(np.abs((stored["quaternions"] * truth).sum(axis=1)) - 1).max() < 1e-6
    assert np.allclose(stored["pc"], [0.5, 0.3, 0.6])

    again = import_labelled(patterns, ang, tmp_path / "b", minimum={"ci": CI_MIN}, phases={"Mystery": "hP"})
    assert again["splits"] == summary["splits"]
    for split in ("train", "val", "test"):
        assert np.array_equal(read_split(tmp_path / "a" / split).frames, read_split(tmp_path / "b" / split).frames)
    import_labelled(patterns, ang, tmp_path / "c", minimum={"ci": CI_MIN}, phases={"Mystery": "hP"}, seed=1)
    assert not np.array_equal(read_split(tmp_path / "a" / "train").frames, read_split(tmp_path / "c" / "train").frames)
    both = import_labelled(patterns, ang, tmp_path / "d", minimum={"ci": CI_MIN}, maximum={"ci": 0.6},
                           phases={"mystery": "hP"})
    assert both["kept"] == int(((np.linspace(0, 1, N) >= CI_MIN) & (np.linspace(0, 1, N) <= 0.6)).sum())


def test_import_errors(experiment: tuple[Path, Path, CrystalMap], tmp_path: Path) -> None:
    patterns, ang, xmap = experiment
    other = tmp_path / "short.ang"
    io.save(other, xmap[:N - 4])
    with pytest.raises(LabelledDataError, match=rf"{patterns}.*{other}.*same scan"):
        import_labelled(patterns, other, tmp_path / "x", phases={"Mystery": "hP"})
    with pytest.raises(LabelledDataError, match="'Mystery' is not in the catalogue.*--phase Mystery=CLASS"):
        import_labelled(patterns, ang, tmp_path / "x")
    with pytest.raises(LabelledDataError, match="no property 'MAD'.*ci, detector_signal, fit, iq"):
        import_labelled(patterns, ang, tmp_path / "x", minimum={"MAD": 1.0}, phases={"Mystery": "hP"})
    with pytest.raises(LabelledDataError, match="must be a Bravais lattice"):
        import_labelled(patterns, ang, tmp_path / "x", phases={"Mystery": "hex"})
    for bound, kept in ((2.0, 0), (0.93, 3)):  # 3 points split 2/1/0: the test split would be empty
        with pytest.raises(LabelledDataError, match=f"{kept} of 40 points pass.*one each"):
            import_labelled(patterns, ang, tmp_path / "x", minimum={"ci": bound}, phases={"Mystery": "hP"})


def test_cli(experiment: tuple[Path, Path, CrystalMap], tmp_path: Path) -> None:
    patterns, ang, _ = experiment
    done = run_diffstream("dataset", "import", str(patterns), str(ang), "--out", str(tmp_path / "cli"),
                          "--min", f"ci={CI_MIN}", "--phase", "Mystery=hP", "--seed", "3")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["seed"] == 3 and summary["kept"] == int((np.linspace(0, 1, N) >= CI_MIN).sum())
    assert json.loads((tmp_path / "cli" / "import.json").read_text()) == summary
    for argv, message in (([str(patterns), str(ang), "--min", "ci"], "--min: expected NAME=VALUE"),
                          ([str(patterns), str(ang), "--min", "ci=high"], "is not a number"),
                          ([str(patterns), str(tmp_path / "none.ang")], "none.ang: no such file"),
                          ([str(ang), str(ang)], "not a recording, nor a pattern file")):
        done = run_diffstream("dataset", "import", *argv, "--out", str(tmp_path / "bad"))
        assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith("diffstream: error: ") and message in done.stderr


def test_train_on_imported_folder(experiment: tuple[Path, Path, CrystalMap], tmp_path: Path) -> None:
    patterns, ang, _ = experiment
    import_labelled(patterns, ang, tmp_path / "data", phases={"Mystery": "hP"})
    config = tmp_path / "own.toml"
    config.write_text(f"""
name = "own"
[model]
architecture = "compact"
widths = [4, 8, 8, 8]
[data]
source = "folder"
folder = "{tmp_path / 'data'}"
materials = ["Ni"]
blind = []
orientation_phases = ["Ni"]
[train]
epochs = 2
batch_size = 8
""")
    best = train(load_config(config), tmp_path / "run", progress=False)
    assert (tmp_path / "run" / "best.pt").is_file() and best["epoch"] in (1, 2)
    assert len(load_split(load_config(config).data, "val")) == round(0.2 * N)
    export_checkpoint(tmp_path / "run" / "best.pt", tmp_path / "own.onnx")
    scores = evaluate_model(tmp_path / "own.onnx")
    test = read_split(tmp_path / "data" / "test")
    assert scores["data_folder"] == str(tmp_path / "data") and scores["frames"] == len(test) == round(0.2 * N)
    assert set(scores["materials"]) == set(test.phase) and set(scores["disorientation_deg"]) <= {"Ni"}
    text = config.read_text()
    with pytest.raises(ConfigError, match="holds no imported 'blind' split"):
        load_split(load_config(config).data, "blind")
    config.write_text(text.replace("[data]", "[data]\nframe_shape = [40, 40]"))
    with pytest.raises(ConfigError, match="60×60 frames, the config's frame_shape is 40×40"):
        load_split(load_config(config).data, "train")
    config.write_text(text.replace(f'folder = "{tmp_path / "data"}"', ""))
    with pytest.raises(ConfigError, match='source = "folder" needs folder'):
        load_config(config)
