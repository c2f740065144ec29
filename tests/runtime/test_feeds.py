"""Feeds against a model, through a real onnxruntime session (fast to build).

Aspects covered:
- a feed that does not fit (missing, unknown name, not an array, dtype, rank, a fixed
  dimension) is refused before running, naming the tensor and both dtypes or shapes;
- a batch merges single samples (stacked) and feeds with rows (concatenated), and each
  feed gets back exactly its own rows, without a batch axis for a single sample;
- the inputs of one feed must bring the same rows;
- a model whose first dimension is fixed runs once per feed;
- an output that does not run over the batch cannot be split, and says so.
"""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np
import pytest

from pipeserve import runtime
from pipeserve.pipeline import errors

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402


def save(tmp_path: pathlib.Path, nodes: list[Any], inputs: list[Any], outputs: list[Any]) -> pathlib.Path:
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 13
    onnx.checker.check_model(model)
    path = tmp_path / "model.onnx"
    onnx.save(model, str(path))
    return path


@pytest.fixture
def tiny(onnx_model: pathlib.Path, runtime_config: Any) -> runtime.ModelRuntime:
    loaded = runtime.load("clf", runtime_config("onnx", onnx_model))
    assert loaded is not None
    return loaded


X = np.random.default_rng(1).standard_normal((6, 4)).astype(np.float32)


@pytest.mark.parametrize(
    "feed, message",
    [
        ({}, "op 'clf': feed 'x' is missing; the model takes x float32 (-1, 4)"),
        ({"x": X, "z": X}, "op 'clf': feed 'z' is not an input of the model; its inputs are x"),
        ({"x": "words"}, "op 'clf': feed 'x': a str does not fit the model's float32 (-1, 4)"),
        ({"x": X.astype(np.float64)}, "op 'clf': feed 'x': dtype float64 does not fit the model's float32"),
        ({"x": X[:, :3]}, "op 'clf': feed 'x': shape (6, 3) does not fit the model's (-1, 4)"),
        ({"x": X[None]}, "op 'clf': feed 'x': shape (1, 6, 4) does not fit the model's (-1, 4)"),
        ({"x": X[0]}, "op 'clf': feed 'x': shape (4,) does not fit the model's (-1, 4)"),
    ],
    ids=["missing", "unknown", "not an array", "dtype", "fixed dimension", "rank above", "rank below"],
)
def test_a_feed_that_does_not_fit_is_refused_naming_the_tensor(
    tiny: runtime.ModelRuntime, feed: dict[str, Any], message: str
) -> None:
    with pytest.raises(errors.RequestError) as caught:
        tiny.run(feed)

    assert str(caught.value) == message


def test_one_sample_of_a_batch_that_does_not_fit_is_refused_naming_its_shape(tiny: runtime.ModelRuntime) -> None:
    with pytest.raises(errors.RequestError) as caught:
        tiny.run_batch([{"x": X[0]}, {"x": X[1, :3]}])

    assert str(caught.value) == "op 'clf': feed 'x': shape (3,) does not fit the model's (-1, 4)"


def test_check_sample_accepts_one_row_or_rows_and_refuses_the_rest(tiny: runtime.ModelRuntime) -> None:
    tiny.check_sample({"x": X[0]})
    tiny.check_sample({"x": X[:2]})
    with pytest.raises(errors.RequestError, match=r"shape \(1, 6, 4\) does not fit the model's \(-1, 4\)"):
        tiny.check_sample({"x": X[None]})


def test_a_batch_gives_each_feed_its_own_rows(tiny: runtime.ModelRuntime, onnx_reference: Any) -> None:
    expected = onnx_reference(X)
    feeds = [{"x": X[0]}, {"x": X[1:3]}, {"x": X[3]}, {"x": X[4:6]}]

    answers = tiny.run_batch(feeds)

    assert [a["y"].shape for a in answers] == [(3,), (2, 3), (3,), (2, 3)]
    np.testing.assert_allclose(answers[0]["y"], expected[0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(answers[1]["y"], expected[1:3], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(answers[2]["y"], expected[3], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(answers[3]["y"], expected[4:6], rtol=1e-6, atol=1e-7)


def test_a_single_feed_with_rows_gets_the_whole_output(tiny: runtime.ModelRuntime, onnx_reference: Any) -> None:
    (answer,) = tiny.run_batch([{"x": X}])

    np.testing.assert_allclose(answer["y"], onnx_reference(X), rtol=1e-6, atol=1e-7)


def two_inputs(tmp_path: pathlib.Path, runtime_config: Any) -> runtime.ModelRuntime:
    """y = a + b, both (batch, 2) float32."""
    path = save(
        tmp_path,
        [helper.make_node("Add", ["a", "b"], ["y"])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, ["n", 2]) for n in ("a", "b")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 2])],
    )
    loaded = runtime.load("add", runtime_config("onnx", path))
    assert loaded is not None
    return loaded


def test_the_inputs_of_one_feed_must_bring_the_same_rows(tmp_path: pathlib.Path, runtime_config: Any) -> None:
    add = two_inputs(tmp_path, runtime_config)
    one = np.ones(2, np.float32)

    with pytest.raises(errors.RequestError) as caught:
        add.run_batch([{"a": one, "b": one}, {"a": np.ones((3, 2), np.float32), "b": one}])

    assert str(caught.value) == "op 'add': the inputs of one feed must bring the same rows, got a 3 rows, b one sample"


def test_a_model_with_a_fixed_first_dimension_runs_once_per_feed(tmp_path: pathlib.Path, runtime_config: Any) -> None:
    path = save(
        tmp_path,
        [helper.make_node("Neg", ["x"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.INT64, [2, 3])],
        [helper.make_tensor_value_info("y", TensorProto.INT64, [2, 3])],
    )
    neg = runtime.load("neg", runtime_config("onnx", path))
    assert neg is not None and not neg.batchable
    first, second = np.arange(6).reshape(2, 3), np.arange(6, 12).reshape(2, 3)

    answers = neg.run_batch([{"x": first}, {"x": second}])

    np.testing.assert_array_equal(answers[0]["y"], -first)
    np.testing.assert_array_equal(answers[1]["y"], -second)


def test_an_output_that_does_not_run_over_the_batch_cannot_be_split(
    tmp_path: pathlib.Path, runtime_config: Any
) -> None:
    path = save(
        tmp_path,
        [helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0)],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 2])],
        [helper.make_tensor_value_info("total", TensorProto.FLOAT, [])],
    )
    total = runtime.load("sum", runtime_config("onnx", path))
    assert total is not None
    one = np.ones(2, np.float32)

    with pytest.raises(errors.OpOutputError) as caught:
        total.run_batch([{"x": one}, {"x": one}])

    assert str(caught.value) == (
        "op 'sum': model output 'total' has shape (), whose first axis is not the batch of 2 rows; "
        "override process to split it"
    )
