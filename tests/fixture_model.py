"""A real, deterministic ONNX graph for plumbing tests: the "brightness fixture model".

It is not a diffraction model. It classifies a frame by its mean grey level (nearest of
``CENTRES``), reports an identity orientation, and calls a frame usable when its standard
deviation exceeds ``USABLE_STD``. Tests can therefore craft frames whose expected outputs
are known exactly, and run the whole live path without torch or a trained network.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from diffstream.engines.model_card import ModelCard, ModelClass, write_card

CLASSES = (
    ModelClass("cF", "m-3m", orientation=True),
    ModelClass("cI", "m-3m", orientation=True),
    ModelClass("hP", "6/mmm", orientation=True),
)
CENTRES = np.array([40.0, 120.0, 200.0], dtype=np.float32)
USABLE_STD = 5.0


def fixture_card(frame_shape: tuple[int, int] = (60, 60)) -> ModelCard:
    return ModelCard(
        name="fixture-brightness",
        kind="ebsd",
        task=("lattice", "orientation", "confidence"),
        input_shape=frame_shape,
        input_dtype="uint8",
        classes=CLASSES,
        outputs={
            "class_probabilities": "softmax of -(mean grey - centre)^2 / 400",
            "rotation_matrix": "identity",
            "confidence": "sigmoid(std - 5)",
        },
        preprocessing="cast to float32",
        training={"data": "none: a fixed graph for plumbing tests"},
    )


def build_fixture_model(path: str | Path, frame_shape: tuple[int, int] = (60, 60)) -> Path:
    """Write the fixture model to ``path`` and return it."""
    const = numpy_helper.from_array
    nodes = [
        helper.make_node("Cast", ["frames"], ["x"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["x", "axes_hw"], ["mean"], keepdims=0),
        helper.make_node("ReduceMean", ["x", "axes_hw"], ["mean_k"], keepdims=1),
        helper.make_node("Sub", ["x", "mean_k"], ["dev"]),
        helper.make_node("Mul", ["dev", "dev"], ["dev2"]),
        helper.make_node("ReduceMean", ["dev2", "axes_hw"], ["var"], keepdims=0),
        helper.make_node("Sqrt", ["var"], ["std"]),
        helper.make_node("Sub", ["std", "usable_std"], ["std_excess"]),
        helper.make_node("Sigmoid", ["std_excess"], ["confidence"]),
        helper.make_node("Unsqueeze", ["mean", "axis_1"], ["mean_col"]),
        helper.make_node("Sub", ["mean_col", "centres"], ["offset"]),
        helper.make_node("Mul", ["offset", "offset"], ["offset2"]),
        helper.make_node("Mul", ["offset2", "minus_inv_width"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["class_probabilities"], axis=1),
        helper.make_node("Shape", ["frames"], ["frames_shape"], start=0, end=1),
        helper.make_node("Concat", ["frames_shape", "three_three"], ["rotation_shape"], axis=0),
        helper.make_node("Expand", ["identity", "rotation_shape"], ["rotation_matrix"]),
    ]
    initializers = [
        const(np.array([1, 2], dtype=np.int64), "axes_hw"),
        const(np.array([1], dtype=np.int64), "axis_1"),
        const(np.array(USABLE_STD, dtype=np.float32), "usable_std"),
        const(CENTRES, "centres"),
        const(np.array(-1.0 / 400.0, dtype=np.float32), "minus_inv_width"),
        const(np.array([3, 3], dtype=np.int64), "three_three"),
        const(np.eye(3, dtype=np.float32), "identity"),
    ]
    graph = helper.make_graph(
        nodes,
        "fixture_brightness",
        [helper.make_tensor_value_info("frames", TensorProto.UINT8, ["N", "H", "W"])],
        [
            helper.make_tensor_value_info("class_probabilities", TensorProto.FLOAT, ["N", len(CLASSES)]),
            helper.make_tensor_value_info("rotation_matrix", TensorProto.FLOAT, ["N", 3, 3]),
            helper.make_tensor_value_info("confidence", TensorProto.FLOAT, ["N"]),
        ],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    write_card(model, fixture_card(frame_shape))
    path = Path(path)
    onnx.save(model, str(path))
    return path


def frame_of_class(k: int, shape: tuple[int, int] = (60, 60), seed: int = 0) -> np.ndarray:
    """A usable uint8 frame that the fixture model puts in class ``k``."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(-20, 21, size=shape)
    return np.clip(CENTRES[k] + noise, 0, 255).astype(np.uint8)
