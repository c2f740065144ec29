"""StageRunner runs one op over one batch: preprocess per sample, process per batch,
postprocess per sample, and each sample ends as an output or as its own error.

Aspects covered:
- the short and the long form of preprocess and postprocess;
- ``is_skip_process`` skips process and postprocess receives the feed;
- a ProductErrCode from preprocess or postprocess becomes a ProductError with its code;
- an exception in preprocess fails its sample only; one in process fails every sample
  of that call, with a fixed message and the traceback in the log only;
- process output checked for length, and a dict of batched arrays split per sample
  (one row each, or a client batch's own rows);
- mini-batches: a list of chunks from preprocess is processed chunk by chunk;
- a long-form hook returning the wrong tuple is refused with a message naming the op.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest

from pipeserve import Op, ProductErrCode
from pipeserve.pipeline import errors, stages


class Codes(ProductErrCode):
    EMPTY = 1001
    TOO_LONG = 1002


def sample(x: Any, data_id: int = 1, log_id: int = 0, *, batch: bool = False) -> stages.Sample:
    return stages.Sample({"@DAGExecutor": {"x": x}}, data_id, log_id, batch)


class Recording(Op):
    """Records what process receives; returns one output per feed."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.process_calls: list[list[Any]] = []

    def process(self, feed_list: list[dict[str, Any]], typical_logid: int) -> Any:
        self.process_calls.append(list(feed_list))
        return [{"y": feed["x"] * 10} for feed in feed_list]


# Hook forms ----------------------------------------------------------------------------------


def test_short_preprocess_and_postprocess_are_called_with_the_short_arguments() -> None:
    class Short(Recording):
        def preprocess(self, input_dicts: dict[str, Any]) -> dict[str, Any]:
            (inputs,) = input_dicts.values()
            return {"x": inputs["x"] + 1}

        def postprocess(self, input_dicts: dict[str, Any], fetch_dict: dict[str, Any]) -> dict[str, Any]:
            return {"y": fetch_dict["y"], "seen_x": input_dicts["@DAGExecutor"]["x"]}

    op = Short(name="x")

    outcomes = stages.StageRunner(op).run([sample(1), sample(2)])

    assert outcomes == [{"y": 20, "seen_x": 1}, {"y": 30, "seen_x": 2}]
    assert op.process_calls == [[{"x": 2}, {"x": 3}]]


def test_long_preprocess_and_postprocess_get_data_id_and_log_id() -> None:
    class Long(Recording):
        def preprocess(self, input_dicts: dict[str, Any], data_id: int, log_id: int) -> Any:
            (inputs,) = input_dicts.values()
            return {"x": inputs["x"], "ids": (data_id, log_id)}, False, None, ""

        def postprocess(self, input_dicts: dict[str, Any], fetch_dict: Any, data_id: int, log_id: int) -> Any:
            return {"y": fetch_dict["y"], "ids": (data_id, log_id)}, None, ""

    op = Long(name="x")

    outcomes = stages.StageRunner(op).run([sample(1, data_id=5, log_id=50), sample(2, data_id=6, log_id=60)])

    assert outcomes == [{"y": 10, "ids": (5, 50)}, {"y": 20, "ids": (6, 60)}]
    assert [feed["ids"] for feed in op.process_calls[0]] == [(5, 50), (6, 60)]


def test_is_skip_process_skips_process_and_postprocess_gets_the_feed() -> None:
    class Skipping(Recording):
        def preprocess(self, input_dicts: dict[str, Any], data_id: int, log_id: int) -> Any:
            (inputs,) = input_dicts.values()
            return {"fed": inputs["x"]}, inputs["x"] == "skip", None, ""

        def postprocess(self, input_dicts: dict[str, Any], fetch_dict: Any, data_id: int, log_id: int) -> Any:
            return {"got": fetch_dict}, None, ""

    op = Skipping(name="x")

    outcomes = stages.StageRunner(op).run([sample("skip"), sample(3)])

    assert outcomes[0] == {"got": {"fed": "skip"}}
    assert op.process_calls == [[{"fed": 3}]]  # only the sample that did not skip


# Product errors ------------------------------------------------------------------------------


def test_a_product_error_from_preprocess_fails_its_sample_with_its_code_and_message() -> None:
    class Checking(Recording):
        def preprocess(self, input_dicts: dict[str, Any], data_id: int, log_id: int) -> Any:
            (inputs,) = input_dicts.values()
            if inputs["x"] == "":
                return None, False, Codes.EMPTY, "empty input"
            return inputs, False, None, ""

    op = Checking(name="x")

    empty, good = stages.StageRunner(op).run([sample(""), sample(4)])

    assert isinstance(empty, errors.ProductError)
    assert (empty.code, empty.message) == (1001, "empty input")
    assert good == {"y": 40}
    assert op.process_calls == [[{"x": 4}]]


def test_a_product_error_from_postprocess_fails_its_sample_with_its_code_and_message() -> None:
    class Checking(Recording):
        def postprocess(self, input_dicts: dict[str, Any], fetch_dict: Any, data_id: int, log_id: int) -> Any:
            if fetch_dict["y"] > 100:
                return None, Codes.TOO_LONG, "result too long"
            return fetch_dict, None, ""

    bad, good = stages.StageRunner(Checking(name="x")).run([sample(11), sample(1)])

    assert isinstance(bad, errors.ProductError)
    assert (bad.code, bad.message) == (1002, "result too long")
    assert good == {"y": 10}


def test_a_product_error_without_info_gets_a_message_naming_the_op_and_stage() -> None:
    class Checking(Recording):
        def preprocess(self, input_dicts: dict[str, Any], data_id: int, log_id: int) -> Any:
            return None, False, Codes.EMPTY, ""

    (outcome,) = stages.StageRunner(Checking(name="x")).run([sample(1)])

    assert isinstance(outcome, errors.ProductError)
    assert outcome.code == 1001
    assert outcome.message == "op 'x' preprocess returned product error <Codes.EMPTY: 1001>"


# Exceptions in user code ---------------------------------------------------------------------


def test_an_exception_in_preprocess_fails_only_that_sample() -> None:
    class Fragile(Recording):
        def preprocess(self, input_dicts: dict[str, Any]) -> dict[str, Any]:
            (inputs,) = input_dicts.values()
            if inputs["x"] == 2:
                raise ValueError("bad sample")
            return dict(inputs)

    op = Fragile(name="x")

    outcomes = stages.StageRunner(op).run([sample(1), sample(2), sample(3)])

    assert outcomes[0] == {"y": 10} and outcomes[2] == {"y": 30}
    assert isinstance(outcomes[1], errors.OpError)
    assert outcomes[1].message == "internal error in op 'x': ValueError (see pipeline.log.wf)"
    assert op.process_calls == [[{"x": 1}, {"x": 3}]]


def test_an_exception_in_process_fails_every_sample_of_the_call_and_logs_the_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(Op):
        def process(self, feed_list: list[dict[str, Any]], typical_logid: int) -> Any:
            raise ValueError("secret detail of the model")

    with caplog.at_level(logging.WARNING, logger="pipeserve"):
        outcomes = stages.StageRunner(Broken(name="x")).run([sample(1, 7, 70), sample(2, 8, 80)])

    assert len(outcomes) == 2
    for outcome in outcomes:
        assert isinstance(outcome, errors.OpError)
        assert outcome.message == "internal error in op 'x': ValueError (see pipeline.log.wf)"
        assert outcome.code == errors.ErrCode.UNKNOW
    (record,) = [r for r in caplog.records if r.exc_info]
    assert record.levelno == logging.ERROR
    assert "data_id=7 log_id=70" in record.getMessage() and "data_id=8 log_id=80" in record.getMessage()
    assert "Traceback (most recent call last)" in caplog.text
    assert "secret detail of the model" in caplog.text
    assert "secret detail" not in outcomes[0].message


def test_an_exception_in_postprocess_fails_only_that_sample() -> None:
    class Fragile(Recording):
        def postprocess(self, input_dicts: dict[str, Any], fetch_dict: Any) -> Any:
            if fetch_dict["y"] == 20:
                raise KeyError("nope")
            return fetch_dict

    outcomes = stages.StageRunner(Fragile(name="x")).run([sample(1), sample(2)])

    assert outcomes[0] == {"y": 10}
    assert isinstance(outcomes[1], errors.OpError)
    assert outcomes[1].message == "internal error in op 'x': KeyError (see pipeline.log.wf)"


# Process output ------------------------------------------------------------------------------


def test_process_returning_a_list_of_the_wrong_length_fails_the_batch() -> None:
    class Short(Op):
        def process(self, feed_list: list[dict[str, Any]], typical_logid: int) -> Any:
            return [{"y": 1}]

    outcomes = stages.StageRunner(Short(name="x")).run([sample(1), sample(2)])

    for outcome in outcomes:
        assert isinstance(outcome, errors.OpOutputError)
        assert outcome.message == "op 'x': process returned 1 results for 2 feeds"


def test_a_dict_of_batched_arrays_is_split_one_row_per_sample() -> None:
    class Batched(Op):
        def process(self, feed_list: list[dict[str, Any]], typical_logid: int) -> Any:
            x = np.stack([feed["x"] for feed in feed_list])
            return {"y": x * 10, "z": x + 1}

    rows = [np.array([i, i], dtype=np.float32) for i in range(3)]

    outcomes = stages.StageRunner(Batched(name="x")).run([sample(r) for r in rows])

    for i, outcome in enumerate(outcomes):
        np.testing.assert_array_equal(outcome["y"], rows[i] * 10)
        np.testing.assert_array_equal(outcome["z"], rows[i] + 1)
        assert outcome["y"].shape == (2,)


def test_a_dict_of_batched_arrays_gives_each_client_batch_its_own_rows() -> None:
    class Batched(Op):
        def process(self, feed_list: list[dict[str, Any]], typical_logid: int) -> Any:
            return {"y": np.concatenate([feed["x"] for feed in feed_list]) * 10}

    two = np.arange(8, dtype=np.float32).reshape(2, 4)
    three = np.arange(100, 112, dtype=np.float32).reshape(3, 4)

    first, second = stages.StageRunner(Batched(name="x")).run([sample(two, batch=True), sample(three, batch=True)])

    np.testing.assert_array_equal(first["y"], two * 10)
    np.testing.assert_array_equal(second["y"], three * 10)
    assert first["y"].shape == (2, 4) and second["y"].shape == (3, 4)


def test_a_dict_whose_arrays_do_not_match_the_batch_is_refused() -> None:
    class Wrong(Op):
        def process(self, feed_list: list[dict[str, Any]], typical_logid: int) -> Any:
            return {"y": np.zeros(5)}

    outcomes = stages.StageRunner(Wrong(name="x")).run([sample(1), sample(2)])

    for outcome in outcomes:
        assert isinstance(outcome, errors.OpOutputError)
        assert outcome.message == (
            "op 'x': process output 'y' has 5 rows for a batch of 2; return a list with one dict per feed instead"
        )


# Mini-batches --------------------------------------------------------------------------------


def test_a_list_of_chunks_from_preprocess_is_processed_chunk_by_chunk() -> None:
    class Chunked(Recording):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.postprocessed: list[Any] = []

        def preprocess(self, input_dicts: dict[str, Any]) -> list[dict[str, Any]]:
            (inputs,) = input_dicts.values()
            return [{"x": v} for v in inputs["x"]]

        def postprocess(self, input_dicts: dict[str, Any], fetch_dict: Any) -> Any:
            self.postprocessed.append(fetch_dict)
            return {"y": [chunk["y"] for chunk in fetch_dict]}

    op = Chunked(name="x")

    (outcome,) = stages.StageRunner(op).run([sample([1, 2, 3])])

    assert op.process_calls == [[{"x": 1}], [{"x": 2}], [{"x": 3}]]
    assert op.postprocessed == [[{"y": 10}, {"y": 20}, {"y": 30}]]
    assert outcome == {"y": [10, 20, 30]}


# Wrong tuples from long hooks ----------------------------------------------------------------


def test_a_long_preprocess_returning_the_wrong_tuple_is_refused() -> None:
    class Wrong(Recording):
        def preprocess(self, input_dicts: dict[str, Any], data_id: int, log_id: int) -> Any:
            return {"x": 1}, False

    op = Wrong(name="x")

    (outcome,) = stages.StageRunner(op).run([sample(1)])

    assert isinstance(outcome, errors.OpOutputError)
    assert outcome.message == (
        "op 'x': preprocess(input_dicts, data_id, log_id) must return "
        "(feed, is_skip_process, prod_errcode, prod_errinfo), got a tuple of 2"
    )
    assert op.process_calls == []


def test_a_long_postprocess_returning_the_wrong_type_is_refused() -> None:
    class Wrong(Recording):
        def postprocess(self, input_dicts: dict[str, Any], fetch_dict: Any, data_id: int, log_id: int) -> Any:
            return fetch_dict

    (outcome,) = stages.StageRunner(Wrong(name="x")).run([sample(1)])

    assert isinstance(outcome, errors.OpOutputError)
    assert outcome.message == (
        "op 'x': postprocess(input_dicts, fetch_dict, data_id, log_id) must return "
        "(out, prod_errcode, prod_errinfo), got dict"
    )
