"""ONNX models through onnxruntime, loaded as an op's ``local_service_conf`` asks.

Aspects covered:
- the model's inputs and outputs are read from the model;
- answers equal numpy's computation of the same graph;
- ``thread_num`` and ``ir_optim`` reach the session options; a directory holding one
  model loads it;
- a missing model names the op and the path; a file onnxruntime refuses names both;
- providers follow device_type and precision (TensorRT's fp16/int8 flags, CUDA's card);
  GPU on a machine whose onnxruntime has no CUDA is refused; the GPU path itself runs
  only where CUDA and a card are present.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import numpy as np
import pytest

from pipeserve import runtime
from pipeserve.pipeline import config, errors
from pipeserve.runtime import base, onnx_backend

ort = pytest.importorskip("onnxruntime")

HAS_CUDA = "CUDAExecutionProvider" in ort.get_available_providers() and os.path.exists("/dev/nvidia0")


def test_the_model_answers_as_numpy_computes_the_same_graph(
    onnx_model: pathlib.Path, runtime_config: Any, onnx_reference: Any
) -> None:
    model = runtime.load("clf", runtime_config("onnx", onnx_model, thread_num=1))
    x = np.random.default_rng(2).standard_normal((8, 4)).astype(np.float32)

    assert model is not None
    assert model.feed_specs == (base.TensorSpec("x", np.dtype("float32"), (-1, 4)),)
    assert model.fetch_names == ("y",)
    np.testing.assert_allclose(model.run({"x": x})["y"], onnx_reference(x), rtol=1e-6, atol=1e-7)


def test_thread_num_and_ir_optim_reach_the_session(onnx_model: pathlib.Path, runtime_config: Any) -> None:
    model = runtime.load("clf", runtime_config("onnx", onnx_model, thread_num=3, ir_optim=False))

    assert isinstance(model, onnx_backend.OnnxRuntime)
    options = model.session.get_session_options()
    assert options.intra_op_num_threads == 3
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    assert model.session.get_providers() == ["CPUExecutionProvider"]


def test_a_directory_holding_one_model_loads_it(onnx_model: pathlib.Path, runtime_config: Any) -> None:
    model = runtime.load("clf", runtime_config("onnx", onnx_model.parent))

    assert isinstance(model, onnx_backend.OnnxRuntime)
    assert model.path == str(onnx_model)


def test_no_runtime_configured_loads_nothing() -> None:
    assert runtime.load("clf", config.RuntimeConfig(options={"model_config": "x.onnx"})) is None


def test_a_missing_model_names_the_op_and_the_path(tmp_path: pathlib.Path, runtime_config: Any) -> None:
    missing = tmp_path / "missing.onnx"

    with pytest.raises(errors.ConfigError) as caught:
        runtime.load("clf", runtime_config("onnx", missing))

    assert str(caught.value) == f"op 'clf': local_service_conf.model_config: no model at '{missing}'"


def test_a_file_onnxruntime_refuses_names_the_op_and_the_path(tmp_path: pathlib.Path, runtime_config: Any) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")

    with pytest.raises(errors.ConfigError, match=f"^op 'clf': onnxruntime cannot load '{broken}': "):
        runtime.load("clf", runtime_config("onnx", broken))


def test_an_unknown_runtime_in_options_is_refused_naming_the_key(onnx_model: pathlib.Path) -> None:
    options = {"runtime": "tflite", "model_config": str(onnx_model)}

    with pytest.raises(errors.ConfigError) as caught:
        runtime.load("clf", config.RuntimeConfig(options=options))

    assert str(caught.value) == "op 'clf': local_service_conf.runtime: must be one of paddle, onnx, got 'tflite'"


ALL_PROVIDERS = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]


@pytest.mark.parametrize(
    "precision, fp16, int8", [("fp32", False, False), ("fp16", True, False), ("int8", False, True)]
)
def test_tensorrt_gets_the_precision_flags_then_cuda_then_cpu(
    runtime_config: Any, precision: str, fp16: bool, int8: bool
) -> None:
    chosen = onnx_backend._providers("clf", runtime_config("onnx", "m.onnx", 2, precision), ALL_PROVIDERS)

    assert chosen == [
        ("TensorrtExecutionProvider", {"device_id": 0, "trt_fp16_enable": fp16, "trt_int8_enable": int8}),
        ("CUDAExecutionProvider", {"device_id": 0}),
        "CPUExecutionProvider",
    ]


def test_a_process_worker_bound_to_a_card_uses_the_only_card_it_sees() -> None:
    bound = config.RuntimeConfig(
        device_type=config.DeviceType.GPU, devices=(2, 3), device_id=3, options={"model_config": "m.onnx"}
    )
    thread = config.RuntimeConfig(device_type=config.DeviceType.GPU, devices=(2, 3), options={"model_config": "m.onnx"})

    assert onnx_backend._providers("clf", bound, ALL_PROVIDERS)[0] == ("CUDAExecutionProvider", {"device_id": 0})
    assert onnx_backend._providers("clf", thread, ALL_PROVIDERS)[0] == ("CUDAExecutionProvider", {"device_id": 2})


def test_fp16_on_cpu_is_refused_naming_the_precision(onnx_model: pathlib.Path, runtime_config: Any) -> None:
    with pytest.raises(errors.ConfigError, match=r"^op 'clf': device_type 0 \(cpu\): precision fp16: onnxruntime runs"):
        runtime.load("clf", runtime_config("onnx", onnx_model, 0, "fp16"))


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="this onnxruntime has CUDA")
@pytest.mark.parametrize("device_type, provider", [(1, "CUDAExecutionProvider"), (2, "TensorrtExecutionProvider")])
def test_gpu_without_cuda_in_onnxruntime_is_refused_naming_the_provider(
    onnx_model: pathlib.Path, runtime_config: Any, device_type: int, provider: str
) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        runtime.load("clf", runtime_config("onnx", onnx_model, device_type))

    name = {1: "gpu", 2: "tensorrt"}[device_type]
    available = ", ".join(ort.get_available_providers())
    assert str(caught.value) == (
        f"op 'clf': device_type {device_type} ({name}) needs onnxruntime's {provider}, but this "
        f"onnxruntime offers only {available}; install onnxruntime-gpu and the CUDA libraries it needs"
    )


@pytest.mark.skipif(not HAS_CUDA, reason="needs onnxruntime-gpu and a CUDA card")
def test_the_model_runs_on_the_gpu(onnx_model: pathlib.Path, runtime_config: Any, onnx_reference: Any) -> None:
    model = runtime.load("clf", runtime_config("onnx", onnx_model, 1))
    x = np.random.default_rng(3).standard_normal((4, 4)).astype(np.float32)

    assert isinstance(model, onnx_backend.OnnxRuntime)
    assert model.session.get_providers()[0] == "CUDAExecutionProvider"
    np.testing.assert_allclose(model.run({"x": x})["y"], onnx_reference(x), rtol=1e-5, atol=1e-6)


def test_a_relative_missing_model_also_names_the_working_directory(
    tmp_path: pathlib.Path, runtime_config: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    with pytest.raises(errors.ConfigError) as caught:
        runtime.load("clf", runtime_config("onnx", "models/clf.onnx"))

    assert str(caught.value) == (
        f"op 'clf': local_service_conf.model_config: no model at '{tmp_path}/models/clf.onnx', "
        f"from 'models/clf.onnx' in '{tmp_path}'"
    )
