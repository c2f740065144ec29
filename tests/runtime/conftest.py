"""Tiny real models, built at test time (no downloads), and the frameworks' own answers.

- ``onnx_model``: x (batch, 4) float32 → MatMul → Add → Relu → Softmax → y (batch, 3),
  IR 13 / opset 17 (onnxruntime 1.31.1 refuses onnx's default IR 14), and
  ``onnx_reference``, the same math in numpy;
- ``paddle_model``: x (batch, 3, 8, 8) → Conv2D → ReLU → Linear → softmax, saved with
  ``paddle.jit.save``; built once per session because importing paddle takes seconds;
- ``runtime_config``: the RuntimeConfig an op's ``local_service_conf`` would give.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from pipeserve.pipeline import config

ONNX_W = np.random.default_rng(7).standard_normal((4, 3)).astype(np.float32)
ONNX_B = np.random.default_rng(8).standard_normal(3).astype(np.float32)


def _onnx_reference(x: np.ndarray) -> np.ndarray:
    a = np.maximum(x @ ONNX_W + ONNX_B, 0)
    e = np.exp(a - a.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.fixture(scope="session")
def onnx_reference() -> Callable[[np.ndarray], np.ndarray]:
    """What the ONNX graph of ``onnx_model`` computes, in numpy."""
    return _onnx_reference


@pytest.fixture(scope="session")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["m"]),
            helper.make_node("Add", ["m", "B"], ["a"]),
            helper.make_node("Relu", ["a"], ["r"]),
            helper.make_node("Softmax", ["r"], ["y"], axis=-1),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        initializer=[numpy_helper.from_array(ONNX_W, "W"), numpy_helper.from_array(ONNX_B, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 13
    onnx.checker.check_model(model)
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    onnx.save(model, str(path))
    return path


@dataclasses.dataclass
class PaddleModel:
    prefix: pathlib.Path
    """``paddle.jit.save`` prefix: ``<prefix>.json`` + ``<prefix>.pdiparams``."""
    eager: Callable[[np.ndarray], np.ndarray]
    """The same net run in dygraph: the answer the runtime must give."""


@pytest.fixture(scope="session")
def paddle_model(tmp_path_factory: pytest.TempPathFactory) -> PaddleModel:
    import paddle  # installed with make test (the paddle extra); a missing one is a failure
    from paddle.static import InputSpec

    class Tiny(paddle.nn.Layer):
        def __init__(self) -> None:
            super().__init__()
            self.conv = paddle.nn.Conv2D(3, 4, 3, padding=1)
            self.fc = paddle.nn.Linear(4 * 8 * 8, 5)

        def forward(self, x: Any) -> Any:
            y = paddle.nn.functional.relu(self.conv(x))
            return paddle.nn.functional.softmax(self.fc(paddle.flatten(y, 1)))

    paddle.seed(3)
    net = Tiny()
    net.eval()
    prefix = tmp_path_factory.mktemp("paddle") / "tiny"
    paddle.jit.save(net, str(prefix), input_spec=[InputSpec([None, 3, 8, 8], "float32", name="x")])

    def eager(x: np.ndarray) -> np.ndarray:
        with paddle.no_grad():
            result: np.ndarray = net(paddle.to_tensor(x)).numpy()
        return result

    return PaddleModel(prefix, eager)


@pytest.fixture
def runtime_config() -> Callable[..., config.RuntimeConfig]:
    """``runtime_config(runtime, model_config, device_type=0, precision="fp32", **options)``."""

    def make(
        runtime: str,
        model_config: str | pathlib.Path,
        device_type: int = 0,
        precision: str = "fp32",
        **options: Any,
    ) -> config.RuntimeConfig:
        device = config.DeviceType(device_type)
        devices = (0,) if device in (config.DeviceType.GPU, config.DeviceType.TENSORRT) else ()
        options = {"runtime": runtime, "model_config": str(model_config), **options}
        return config.RuntimeConfig(device_type=device, devices=devices, precision=precision, options=options)

    return make
