"""The ``runtime`` key of ``local_service_conf``: checked when the config loads, files not.

- ``runtime: paddle | onnx`` lands in ``RuntimeConfig.options``;
- any other value is refused naming the key;
- ``runtime`` without ``model_config`` is refused naming ``model_config``;
- a model path that does not exist passes the config (it is checked when the model loads:
  configs are also rendered for other machines).
"""

from __future__ import annotations

from typing import Any

import pytest

from pipeserve.pipeline import config, errors


def load_op(local_service_conf: dict[str, Any]) -> config.OpConfig:
    loaded = config.load({"rpc_port": 0, "op": {"clf": {"local_service_conf": local_service_conf}}})
    return loaded.ops["clf"]


@pytest.mark.parametrize("runtime", ["paddle", "onnx", "ONNX"])
def test_runtime_lands_in_the_options_with_the_model_path(runtime: str) -> None:
    op = load_op({"runtime": runtime, "model_config": "models/clf.onnx", "thread_num": 2})

    assert op.runtime.options == {"runtime": runtime.lower(), "model_config": "models/clf.onnx", "thread_num": 2}


def test_an_unknown_runtime_is_refused_naming_the_key() -> None:
    with pytest.raises(errors.ConfigError) as caught:
        load_op({"runtime": "tensorflow", "model_config": "m"})

    assert str(caught.value) == (
        "<dict>: op.clf.local_service_conf.runtime: must be one of paddle, onnx, got 'tensorflow'"
    )


def test_a_runtime_without_model_config_is_refused_naming_model_config() -> None:
    with pytest.raises(errors.ConfigError) as caught:
        load_op({"runtime": "onnx", "thread_num": 2})

    assert str(caught.value) == (
        "<dict>: op.clf.local_service_conf.model_config: required with runtime: onnx (the model's path), got None"
    )


def test_a_missing_model_file_passes_the_config() -> None:
    op = load_op({"runtime": "paddle", "model_config": "/nowhere/clf"})

    assert op.runtime.options["model_config"] == "/nowhere/clf"


def test_an_op_without_runtime_keeps_its_options_as_they_were() -> None:
    assert "runtime" not in load_op({"model_config": "imdb_bow_model"}).runtime.options
