"""The ONNX Runtime engine, the model registry and the card, on the brightness fixture model."""
from __future__ import annotations

import numpy as np
import pytest

from diffstream.engines import (
    EngineError,
    ModelCard,
    ModelCardError,
    ModelNotFoundError,
    create_engine,
    read_card,
    resolve_model,
)
from fixture_model import CENTRES, build_fixture_model, fixture_card, frame_of_class


@pytest.fixture(scope="module")
def fixture_path(tmp_path_factory):
    return build_fixture_model(tmp_path_factory.mktemp("model") / "fixture.onnx")


def test_card_round_trips_through_the_onnx_file(fixture_path):
    assert read_card(fixture_path) == fixture_card()


def test_card_json_round_trip_and_rejects_other_formats():
    card = fixture_card((32, 48))
    assert ModelCard.from_json(card.to_json()) == card
    with pytest.raises(ModelCardError):
        ModelCard.from_json('{"format": "something-else/1"}')
    with pytest.raises(ModelCardError):
        ModelCard.from_json("not json")


def test_engine_outputs_follow_the_contract(fixture_path):
    engine = create_engine(fixture_path, "onnxruntime")
    frames = np.stack([frame_of_class(k, seed=k) for k in (2, 0, 1, 1)])
    frames = np.concatenate([frames, np.full((1, 60, 60), 120, np.uint8)])  # flat: not usable
    out = engine.infer(frames)
    assert set(out) == {"class_probabilities", "rotation_matrix", "confidence"}
    assert out["class_probabilities"].shape == (5, len(CENTRES))
    np.testing.assert_allclose(out["class_probabilities"].sum(axis=1), 1.0, rtol=1e-5)
    assert out["class_probabilities"][:4].argmax(axis=1).tolist() == [2, 0, 1, 1]
    np.testing.assert_array_equal(out["rotation_matrix"], np.broadcast_to(np.eye(3), (5, 3, 3)))
    assert (out["confidence"][:4] > 0.99).all() and out["confidence"][4] < 0.01


def test_engine_accepts_other_frame_sizes_and_batch_sizes(fixture_path):
    engine = create_engine(fixture_path)
    for n, shape in ((1, (60, 60)), (7, (32, 40))):
        frames = np.stack([frame_of_class(1, shape, seed=i) for i in range(n)])
        assert engine.infer(frames)["class_probabilities"].argmax(axis=1).tolist() == [1] * n


def test_unknown_model_and_engine_and_non_onnx_files_give_clear_errors(fixture_path, tmp_path):
    with pytest.raises(ModelNotFoundError, match="no-such-model"):
        resolve_model("no-such-model")
    with pytest.raises(ModelNotFoundError, match="missing.onnx"):
        resolve_model(tmp_path / "missing.onnx")
    with pytest.raises(EngineError, match="unknown engine 'warp-drive'"):
        create_engine(fixture_path, "warp-drive")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00not an onnx file")
    with pytest.raises(ModelCardError, match="junk.onnx"):
        read_card(junk)


@pytest.mark.parametrize("n", [1, 2, 5, 9])
def test_a_batch_split_over_one_session_per_core_gives_the_single_sessions_outputs_in_order(fixture_path, n):
    from diffstream.engines.onnxruntime_engine import OnnxRuntimeEngine

    card = read_card(fixture_path)
    frames = np.stack([frame_of_class(i % len(CENTRES), seed=i) for i in range(n)])
    single = OnnxRuntimeEngine(fixture_path, card, providers=["CPUExecutionProvider"], threads=1).infer(frames)
    with OnnxRuntimeEngine(fixture_path, card, providers=["CPUExecutionProvider"], threads=4) as split:
        parallel = split.infer(frames)
    assert set(parallel) == set(single)
    for name, value in single.items():
        assert parallel[name].shape == value.shape
        np.testing.assert_array_equal(parallel[name], value)
    assert parallel["class_probabilities"].argmax(axis=1).tolist() == [i % len(CENTRES) for i in range(n)]


def test_calls_from_several_threads_at_once_each_get_their_own_batchs_outputs(fixture_path):
    from concurrent.futures import ThreadPoolExecutor

    from diffstream.engines.onnxruntime_engine import OnnxRuntimeEngine

    card = read_card(fixture_path)
    batches = [np.stack([frame_of_class((k + i) % len(CENTRES), seed=10 * k + i) for i in range(2 + k)])
               for k in range(6)]
    expected = [[(k + i) % len(CENTRES) for i in range(2 + k)] for k in range(6)]
    with OnnxRuntimeEngine(fixture_path, card, providers=["CPUExecutionProvider"], threads=3) as engine:
        assert engine.concurrency == 3

        def classes(k: int) -> list[int]:
            return engine.infer(batches[k % 6])["class_probabilities"].argmax(axis=1).tolist()

        with ThreadPoolExecutor(5) as callers:
            answers = list(callers.map(classes, range(60), timeout=60))
    assert answers == [expected[k % 6] for k in range(60)]


def test_a_call_while_another_runs_takes_one_session_and_runs_its_batch_whole(fixture_path):
    """The rule that lets the live pipeline keep every core busy with a batch of its own."""
    import threading

    from diffstream.engines.onnxruntime_engine import OnnxRuntimeEngine

    card = read_card(fixture_path)
    engine = OnnxRuntimeEngine(fixture_path, card, providers=["CPUExecutionProvider"], threads=2)
    run, first_running, let_go, run_sizes = engine._run, threading.Event(), threading.Event(), []

    def observed_run(session, frames):
        run_sizes.append(len(frames))
        if len(frames) == 1:  # the first call: hold its session until the second call is done
            first_running.set()
            let_go.wait(10)
        return run(session, frames)

    engine._run = observed_run
    first = threading.Thread(target=engine.infer, args=(frame_of_class(0)[None],))
    first.start()
    assert first_running.wait(10)
    six = np.stack([frame_of_class(i % len(CENTRES), seed=i) for i in range(6)])
    outputs = engine.infer(six)
    let_go.set()
    first.join(10)
    assert run_sizes == [1, 6]
    assert outputs["class_probabilities"].argmax(axis=1).tolist() == [i % len(CENTRES) for i in range(6)]
    assert engine.infer(six)["class_probabilities"].shape == (6, len(CENTRES))
    assert run_sizes[2:] == [3, 3]  # alone again: split over both sessions
    engine.close()
