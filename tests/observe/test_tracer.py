"""The tracer writes per-interval figures to pipeline.tracer, and nothing when not configured.

Aspects covered:
- after N requests, the summary of that interval says N for the DAG and for each op, with
  an average for every stage, the op's errors, its batch sizes and its channel's size;
- the next interval starts from zero;
- on its own, the tracer writes a summary every ``interval_s``: over the intervals, every
  request is counted once;
- a channel's size is the number of samples waiting for a blocked op, back to 0 once it drains;
- QPS divides by the interval's real length (a clock the test moves);
- without ``dag.tracer`` there is no tracer, no observer, and pipeline.tracer stays empty.

Most intervals are ended by calling ``flush()`` (the tracer's own task does so every
``interval_s``), so those tests never wait for a clock.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from typing import Any

from pipeserve import Op, RequestOp, ResponseOp
from pipeserve.pipeline import observe, tracer

HOUR_S = 3600
"""An interval no test waits for."""
DEADLINE_S = 10.0


class Count(Op):
    def preprocess(self, input_dicts: dict[str, Any]) -> dict[str, Any]:
        (inputs,) = input_dicts.values()
        if inputs.get("x") == "boom":
            raise ValueError("boom")
        return {"x": len(str(inputs.get("x", inputs.get("n"))))}

    def process(self, feed_list: list[dict[str, Any]], typical_logid: int) -> Any:
        return [{"n": str(feed["x"])} for feed in feed_list]


def dag() -> ResponseOp:
    read = RequestOp()
    bow = Count(name="bow", input_ops=[read])
    combine = Count(name="combine", input_ops=[bow])
    return ResponseOp(input_ops=[combine])


async def send(running: Any, values: list[str]) -> list[int]:
    async with running.http() as http:
        codes = []
        for value in values:
            reply = await http.post(running.url(), json={"key": ["x"], "value": [value]})
            codes.append(reply.json()["err_no"])
        return codes


def field(line: str, name: str) -> str:
    found = re.search(rf"\b{re.escape(name)}\[([^\]]*)\]", line)
    assert found, f"no {name}[...] in {line!r}"
    return found.group(1)


async def test_after_n_requests_the_interval_reports_n_for_each_op(serve: Any) -> None:
    running = await serve(dag(), {"dag": {"tracer": {"interval_s": HOUR_S}}, "op": {"combine": {"inline": True}}})
    executor = running.server.gateway.executor
    assert executor.tracer is not None
    executor.tracer.flush()  # start a clean interval

    codes = await send(running, ["a", "bb", "ccc", "dddd", "boom", "e", "ff"])
    lines = executor.tracer.flush()

    assert codes.count(0) == 6
    written = (running.log_dir / "pipeline.tracer").read_text()
    assert all(line in written for line in lines)
    (dag_line,) = [line for line in lines if line.startswith("DAGExecutor:")]
    assert (field(dag_line, "query"), field(dag_line, "succ"), field(dag_line, "error")) == ("7", "6", "1")
    (bow,) = [line for line in lines if line.startswith("Op(bow):")]
    assert field(bow, "query") == "7" and field(bow, "error") == "1"
    assert field(bow, "batch") == "count 7 ave 1.00 max 1"
    for stage in observe.STAGES:
        assert field(bow, stage).endswith(" ms"), f"{stage} has no average: {bow}"
    (combine,) = [line for line in lines if line.startswith("Op(combine):")]
    assert field(combine, "query") == "6" and field(combine, "error") == "0"
    assert [line for line in lines if line.startswith("Channel(")] == [
        "Channel(@DAGExecutor->bow): size[0]",
        "Channel(bow->combine): size[0]",
    ]

    next_interval = executor.tracer.flush()
    (bow,) = [line for line in next_interval if line.startswith("Op(bow):")]
    assert field(bow, "query") == "0" and field(bow, "prep") == "-"


def test_qps_divides_by_the_intervals_length() -> None:
    now = [100.0]
    written: list[str] = []

    class Lines:
        def info(self, line: str) -> None:
            written.append(line)

    traced = tracer.Tracer(
        HOUR_S, {"bow": ("@DAGExecutor",)}, lambda: {"bow": 3}, lambda: 2, Lines(), clock=lambda: now[0]  # type: ignore[arg-type]
    )
    for data_id in range(5):
        traced.on_stage(observe.StageTiming("bow", "midp", (data_id,), (0,), 0, 2_000_000))
        traced.on_batch("bow", 1)
        traced.on_request("t", 0, 0, 4_000_000)
    now[0] += 2.0

    lines = traced.flush()

    assert lines == written
    assert field(lines[0], "qps") == "2.50 q/s" and field(lines[0], "in_flight") == "2"
    assert field(lines[0], "ave") == "4.000 ms"
    assert field(lines[1], "qps") == "2.50 q/s" and field(lines[1], "midp") == "2.000 ms"
    assert lines[2] == "Channel(@DAGExecutor->bow): size[3]"


async def test_nothing_is_traced_without_a_tracer_config(serve: Any) -> None:
    running = await serve(dag())
    executor = running.server.gateway.executor

    assert await send(running, ["a", "b"]) == [0, 0]

    assert executor.tracer is None and not executor.observers.active
    tracer_file = running.log_dir / "pipeline.tracer"
    assert not tracer_file.exists() or tracer_file.read_text() == ""


async def test_the_tracer_writes_every_interval_on_its_own(serve: Any) -> None:
    running = await serve(dag(), {"dag": {"tracer": {"interval_s": 0.1}}})
    sent = ["a", "bb", "ccc", "dddd", "eeeee"]

    assert await send(running, sent) == [0] * len(sent)

    tracer_file = running.log_dir / "pipeline.tracer"
    deadline = time.monotonic() + DEADLINE_S
    while True:  # every request is counted in exactly one interval, whichever it fell in
        lines = tracer_file.read_text().splitlines() if tracer_file.exists() else []
        counted = [sum(int(field(line, "query")) for line in lines if name in line) for name in ("Op(bow):", "DAGExecutor:")]
        intervals = sum(1 for line in lines if "DAGExecutor:" in line)
        if counted == [len(sent)] * 2 and intervals >= 2 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)  # sync-ok: polling interval of a deadline-bounded wait
    assert (counted, intervals >= 2) == ([len(sent)] * 2, True), lines


class Gated(Count):
    gate = threading.Event()

    def process(self, feed_list: list[dict[str, Any]], typical_logid: int) -> Any:
        self.gate.wait(DEADLINE_S)
        return super().process(feed_list, typical_logid)


async def test_a_channel_line_counts_the_samples_waiting_for_a_blocked_op(serve: Any) -> None:
    Gated.gate.clear()
    read = RequestOp()
    gated = Gated(name="gated", input_ops=[read])
    after = Count(name="after", input_ops=[gated])
    running = await serve(
        ResponseOp(input_ops=[after]),
        {"dag": {"tracer": {"interval_s": HOUR_S}}, "op": {"gated": {"concurrency": 1}}},
    )
    executor = running.server.gateway.executor
    sent = 5
    waiting = sent - executor.nodes["gated"].workers.in_flight  # one runs, one waits in the thread's queue

    posts = [asyncio.ensure_future(send(running, [str(i)])) for i in range(sent)]
    try:
        deadline = time.monotonic() + DEADLINE_S
        while executor.queue_depths()["gated"] != waiting and time.monotonic() < deadline:
            await asyncio.sleep(0.005)  # sync-ok: polling interval of a deadline-bounded wait
        lines = executor.tracer.flush()
    finally:
        Gated.gate.set()
    assert await asyncio.wait_for(asyncio.gather(*posts), DEADLINE_S) == [[0]] * sent

    assert f"Channel(@DAGExecutor->gated): size[{waiting}]" in lines
    assert "Channel(gated->after): size[0]" in lines
    (dag_line,) = [line for line in lines if line.startswith("DAGExecutor:")]
    assert field(dag_line, "in_flight") == str(sent) and field(dag_line, "query") == "0"
    assert executor.tracer.flush()[-2:] == ["Channel(@DAGExecutor->gated): size[0]", "Channel(gated->after): size[0]"]
