"""Paddle inference models through ``paddle.inference``, loaded as ``local_service_conf`` asks.

Aspects covered:
- the model loads from its ``paddle.jit.save`` prefix, its model file, or its directory;
- inputs are read from the model file (PIR ``.json`` and legacy ``.pdmodel``), outputs
  from the predictor;
- answers equal the same net run eagerly, on one thread and on several at once (each
  thread runs its own clone of the predictor);
- a missing model or missing parameters name the op and the path;
- GPU or TensorRT on a paddle build without CUDA, fp16 on CPU, and bf16 on a CPU without
  bfloat16 are refused with what to change; the GPU path runs only where CUDA and a card
  are present.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import textwrap
import threading
from typing import Any

import numpy as np
import pytest

from pipeserve import runtime
from pipeserve.pipeline import errors
from pipeserve.runtime import base, paddle_backend

paddle = pytest.importorskip("paddle")

HAS_CUDA = paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0

X = np.random.default_rng(4).standard_normal((6, 3, 8, 8)).astype(np.float32)


def load(model_config: Any, runtime_config: Any, *args: Any, **options: Any) -> paddle_backend.PaddleRuntime:
    model = runtime.load("clf", runtime_config("paddle", model_config, *args, **options))
    assert isinstance(model, paddle_backend.PaddleRuntime)
    return model


def test_the_model_answers_as_the_eager_net(paddle_model: Any, runtime_config: Any) -> None:
    model = load(paddle_model.prefix, runtime_config, thread_num=2, use_mkldnn=True, ir_optim=True)

    assert model.feed_specs == (base.TensorSpec("x", np.dtype("float32"), (-1, 3, 8, 8)),)
    assert len(model.fetch_names) == 1
    (output,) = model.run({"x": X}).values()
    np.testing.assert_allclose(output, paddle_model.eager(X), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("form", ["model file", "directory"])
def test_the_model_file_or_its_directory_load_the_same_model(paddle_model: Any, runtime_config: Any, form: str) -> None:
    path = paddle_model.prefix.with_suffix(".json") if form == "model file" else paddle_model.prefix.parent
    model = load(path, runtime_config, use_mkldnn=False, ir_optim=False)

    assert model.path == str(paddle_model.prefix.with_suffix(".json"))
    (output,) = model.run({"x": X[:2]}).values()
    np.testing.assert_allclose(output, paddle_model.eager(X[:2]), rtol=1e-5, atol=1e-6)


def test_threads_running_at_once_each_get_the_eager_answer(paddle_model: Any, runtime_config: Any) -> None:
    model = load(paddle_model.prefix, runtime_config, thread_num=1)
    expected = paddle_model.eager(X)
    start = threading.Barrier(4)
    answers: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        start.wait(10)
        for _ in range(20):
            (answers[i],) = model.run({"x": X[i : i + 2]}).values()

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    for i in range(4):
        np.testing.assert_allclose(answers[i], expected[i : i + 2], rtol=1e-5, atol=1e-6)


LEGACY_SAVE = """\
import sys
import paddle
from paddle.static import InputSpec


class TwoInputs(paddle.nn.Layer):
    def __init__(self):
        super().__init__()
        self.fc = paddle.nn.Linear(6, 5)

    def forward(self, x, ids):
        return paddle.nn.functional.softmax(self.fc(x)), ids * 2


net = TwoInputs()
net.eval()
specs = [InputSpec([None, 6], "float32", name="x"), InputSpec([None], "int64", name="ids")]
paddle.jit.save(net, sys.argv[1], input_spec=specs)
"""


def test_a_legacy_pdmodel_declares_its_inputs_too(tmp_path: pathlib.Path, runtime_config: Any) -> None:
    script = tmp_path / "save_legacy.py"
    script.write_text(textwrap.dedent(LEGACY_SAVE))
    env = {**os.environ, "FLAGS_enable_pir_api": "0"}
    subprocess.run([sys.executable, str(script), str(tmp_path / "legacy")], check=True, env=env, capture_output=True)
    x = np.ones((3, 6), np.float32)
    ids = np.array([1, 2, 3], np.int64)

    model = load(tmp_path / "legacy", runtime_config)
    answers = model.run({"x": x, "ids": ids})

    assert (tmp_path / "legacy.pdmodel").exists()
    assert model.feed_specs == (
        base.TensorSpec("x", np.dtype("float32"), (-1, 6)),
        base.TensorSpec("ids", np.dtype("int64"), (-1,)),
    )
    assert len(model.fetch_names) == 2
    by_shape = {value.shape: value for value in answers.values()}
    np.testing.assert_array_equal(by_shape[(3,)], ids * 2)
    np.testing.assert_allclose(by_shape[(3, 5)].sum(axis=1), np.ones(3), rtol=1e-6)


def test_a_missing_model_names_the_op_and_every_path_tried(tmp_path: pathlib.Path, runtime_config: Any) -> None:
    prefix = tmp_path / "nothing"

    with pytest.raises(errors.ConfigError) as caught:
        runtime.load("clf", runtime_config("paddle", prefix))

    assert str(caught.value) == (
        f"op 'clf': local_service_conf.model_config: no model at '{prefix}' "
        f"(nor '{prefix}.json', '{prefix}.pdmodel')"
    )


def test_missing_parameters_name_the_op_and_the_path(
    paddle_model: Any, tmp_path: pathlib.Path, runtime_config: Any
) -> None:
    model_file = tmp_path / "tiny.json"
    shutil.copy(paddle_model.prefix.with_suffix(".json"), model_file)

    with pytest.raises(errors.ConfigError) as caught:
        runtime.load("clf", runtime_config("paddle", model_file))

    assert str(caught.value) == (
        f"op 'clf': local_service_conf.model_config: no parameters '{tmp_path / 'tiny.pdiparams'}' "
        f"next to the model '{model_file}'"
    )


@pytest.mark.skipif(paddle.device.is_compiled_with_cuda(), reason="this paddle build has CUDA")
@pytest.mark.parametrize("device_type, name", [(1, "gpu"), (2, "tensorrt")])
def test_gpu_on_a_paddle_build_without_cuda_is_refused(
    paddle_model: Any, runtime_config: Any, device_type: int, name: str
) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        runtime.load("clf", runtime_config("paddle", paddle_model.prefix, device_type))

    assert str(caught.value) == (
        f"op 'clf': device_type {device_type} ({name}): this paddle build has no CUDA; "
        "install paddlepaddle-gpu, or set device_type: 0"
    )


def test_fp16_on_cpu_is_refused(paddle_model: Any, runtime_config: Any) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        runtime.load("clf", runtime_config("paddle", paddle_model.prefix, 0, "fp16"))

    assert str(caught.value) == (
        "op 'clf': device_type 0 (cpu): precision fp16: paddle on CPU runs fp32, or bf16 with oneDNN"
    )


@pytest.mark.skipif(paddle.base.core.supports_bfloat16(), reason="this CPU has bfloat16")
def test_bf16_on_a_cpu_without_bfloat16_is_refused(paddle_model: Any, runtime_config: Any) -> None:
    with pytest.raises(errors.ConfigError) as caught:
        runtime.load("clf", runtime_config("paddle", paddle_model.prefix, 0, "bf16"))

    assert str(caught.value) == (
        "op 'clf': device_type 0 (cpu): precision bf16: this CPU has no bfloat16 support; use fp32"
    )


@pytest.mark.skipif(not paddle.base.core.supports_bfloat16(), reason="this CPU has no bfloat16")
def test_bf16_on_a_cpu_with_bfloat16_answers_close_to_fp32(paddle_model: Any, runtime_config: Any) -> None:
    model = load(paddle_model.prefix, runtime_config, 0, "bf16")

    (output,) = model.run({"x": X}).values()
    np.testing.assert_allclose(output, paddle_model.eager(X), atol=2e-2)


@pytest.mark.skipif(not HAS_CUDA, reason="needs paddlepaddle-gpu and a CUDA card")
def test_the_model_runs_on_the_gpu(paddle_model: Any, runtime_config: Any) -> None:
    model = load(paddle_model.prefix, runtime_config, 1)

    (output,) = model.run({"x": X}).values()
    np.testing.assert_allclose(output, paddle_model.eager(X), rtol=1e-4, atol=1e-5)
