"""The Op's default hooks with a local model, called directly (the serving tests cover the
same through a server).

- the default process runs the model over the batch and answers one fetch dict per feed;
- the default preprocess refuses a sample that does not fit, so it fails alone;
- an op that overrides process gets its input unchecked: it may turn it into the feed;
- without a model, process still returns the feeds and preprocess checks nothing.
"""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np
import pytest

from pipeserve import Op, runtime
from pipeserve.pipeline import errors


class OwnProcess(Op):
    """Builds the model's feed itself from a list of numbers."""

    def process(self, feed_list: list[dict[str, Any]], typical_logid: int) -> Any:
        assert self.local_predictor is not None
        x = np.asarray([feed["numbers"] for feed in feed_list], dtype=np.float32)
        return [{"y": y} for y in self.local_predictor.run({"x": x})["y"]]


@pytest.fixture
def load_into(onnx_model: pathlib.Path, runtime_config: Any) -> Any:
    def attach(op: Op) -> Op:
        op.runtime_config = runtime_config("onnx", onnx_model)
        runtime.attach(op)
        return op

    return attach


def test_the_default_process_answers_one_fetch_dict_per_feed(load_into: Any, onnx_reference: Any) -> None:
    op = load_into(Op(name="clf"))
    x = np.random.default_rng(9).standard_normal((3, 4)).astype(np.float32)

    answers = op.process([{"x": x[0]}, {"x": x[1:]}], 0)

    np.testing.assert_allclose(answers[0]["y"], onnx_reference(x[:1])[0], rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(answers[1]["y"], onnx_reference(x[1:]), rtol=1e-6, atol=1e-7)


def test_the_default_preprocess_refuses_a_sample_that_does_not_fit(load_into: Any) -> None:
    op = load_into(Op(name="clf"))

    with pytest.raises(errors.RequestError) as caught:
        op.preprocess({"@DAGExecutor": {"x": np.zeros(5, np.float32)}}, 0, 0)

    assert str(caught.value) == "op 'clf': feed 'x': shape (5,) does not fit the model's (-1, 4)"


def test_an_op_with_its_own_process_gets_its_input_unchecked(load_into: Any, onnx_reference: Any) -> None:
    op = load_into(OwnProcess(name="own"))
    numbers = [1.0, 2.0, 3.0, 4.0]

    feed, skip, _, _ = op.preprocess({"@DAGExecutor": {"numbers": numbers}}, 0, 0)
    (answer,) = op.process([feed], 0)

    assert (feed, skip) == ({"numbers": numbers}, False)
    np.testing.assert_allclose(answer["y"], onnx_reference(np.asarray([numbers], np.float32))[0], rtol=1e-6)


def test_without_a_model_the_defaults_pass_feeds_through() -> None:
    op = Op(name="plain")
    runtime.attach(op)

    assert op.local_predictor is None
    assert op.preprocess({"@DAGExecutor": {"x": "anything"}}, 0, 0)[0] == {"x": "anything"}
    assert op.process([{"x": 1}], 0) == [{"x": 1}]
