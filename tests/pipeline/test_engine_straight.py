"""An all-inline DAG runs as a straight loop; its answers are those of the general executor.

Aspects: with every op inline and unbatched, unobserved requests take the straight path; the
same requests through the general path (forced by registering an observer) give identical
results: outputs through fan-out and fan-in, an exception naming its op, a product error
from a long-form preprocess, a skipped process.
"""

from __future__ import annotations

from typing import Any

import pytest

from pipeserve import Op, ProductErrCode, RequestOp, ResponseOp
from pipeserve.pipeline import channel, observe



class Shout(Op):
    def preprocess(self, input_dicts: dict[str, Any]) -> dict[str, Any]:
        ((_, values),) = input_dicts.items()
        if values["words"] == "boom":
            raise ValueError("cannot shout 'boom'")
        return {"text": values["words"].upper()}


class Codes(ProductErrCode):
    BAD_WORDS = 1001


class Count(Op):
    def preprocess(self, input_dicts: dict[str, Any], data_id: int, log_id: int) -> tuple[Any, bool, Any, Any]:
        ((_, values),) = input_dicts.items()
        if values["words"] == "bad":
            return None, False, Codes.BAD_WORDS, "bad words"
        return {"n": str(len(values["words"].split()))}, values["words"].startswith("skip"), None, None

    def process(self, feed_list: list[dict[str, Any]], typical_logid: int) -> list[dict[str, Any]]:
        return [{"n": feed["n"] + " counted"} for feed in feed_list]


class Join(Op):
    def preprocess(self, input_dicts: dict[str, Any]) -> dict[str, Any]:
        return {"joined": f"{input_dicts['shout']['text']}|{input_dicts['count']['n']}"}


class Silent:
    """An observer that records nothing; registering it makes the executor take its general path."""

    def on_stage(self, timing: observe.StageTiming) -> None: ...
    def on_batch(self, op: str, size: int) -> None: ...
    def on_request(self, name: str, err_no: int, start_ns: int, end_ns: int) -> None: ...
    def on_op_error(self, op: str, err_no: int) -> None: ...


def summary(result: channel.ChannelData) -> tuple[Any, ...]:
    return result.dicts, result.error_code, result.error_info, result.last_op


@pytest.mark.parametrize("words", ["three little words", "boom", "bad", "skip this"])
async def test_the_straight_path_answers_as_the_general_executor(serve: Any, words: str) -> None:
    read = RequestOp()
    shout, count = Shout(name="shout", input_ops=[read]), Count(name="count", input_ops=[read])
    join = Join(name="join", input_ops=[shout, count])
    inline = {"inline": True}
    running = await serve(ResponseOp(input_ops=[join]), {"op": {"shout": inline, "count": inline, "join": inline}})
    executor = running.server.gateway.executor
    assert executor.runs_straight

    straight = await executor.run({"words": words}, 1, 7)
    executor.observers.add(Silent())
    general = await executor.run({"words": words}, 1, 7)
    assert summary(straight) == summary(general)
    if words == "three little words":
        assert straight.dicts == {"join": {"joined": "THREE LITTLE WORDS|3 counted"}}
    elif words == "skip this":
        assert straight.dicts == {"join": {"joined": "SKIP THIS|2"}}
    else:
        expected = {"boom": (8, "shout"), "bad": (1001, "count")}[words]  # 8: an op raised
        assert (straight.error_code, straight.last_op) == expected
