"""The engine reports what it does to its observers, and does nothing for them when none listens.

Aspects covered:
- every op run reports in, prep, midp, postp and out, in that order, each within the
  request's own span; a batch reports each stage once, with all its data_ids and log_ids;
- on_batch gives each run's size, on_request each request's err_no, on_op_error the
  failing op's err_no;
- with no observer registered, no StageTiming is ever built (the hot path allocates none);
- queue_depths() names every op and counts what waits for it; in_flight counts requests.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from pipeserve import Op, RequestOp, ResponseOp
from pipeserve.pipeline import observe

DEADLINE_S = 10.0


class Recorder:
    def __init__(self) -> None:
        self.stages: list[observe.StageTiming] = []
        self.batches: list[tuple[str, int]] = []
        self.requests: list[tuple[str, int, int, int]] = []
        self.op_errors: list[tuple[str, int]] = []

    def on_stage(self, timing: observe.StageTiming) -> None:
        self.stages.append(timing)

    def on_batch(self, op: str, size: int) -> None:
        self.batches.append((op, size))

    def on_request(self, name: str, err_no: int, start_ns: int, end_ns: int) -> None:
        self.requests.append((name, err_no, start_ns, end_ns))

    def on_op_error(self, op: str, err_no: int) -> None:
        self.op_errors.append((op, err_no))


class Double(Op):
    def preprocess(self, input_dicts: dict[str, Any]) -> dict[str, Any]:
        (inputs,) = input_dicts.values()
        value = inputs.get("x", inputs.get("y"))  # the request's x, or the previous op's y
        if value == "boom":
            raise ValueError("cannot double boom")
        return {"x": int(value)}

    def process(self, feed_list: list[dict[str, Any]], typical_logid: int) -> Any:
        return [{"y": feed["x"] * 2} for feed in feed_list]

    def postprocess(self, input_dicts: dict[str, Any], fetch_dict: dict[str, Any]) -> dict[str, Any]:
        return {"y": str(fetch_dict["y"])}


class Gated(Double):
    """Holds its batch until the test opens the gate."""

    def __init__(self, gate: threading.Event, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = gate

    def process(self, feed_list: list[dict[str, Any]], typical_logid: int) -> Any:
        self.gate.wait(DEADLINE_S)
        return super().process(feed_list, typical_logid)


def two_ops() -> ResponseOp:
    read = RequestOp()
    double = Double(name="double", input_ops=[read])
    again = Double(name="again", input_ops=[double])
    return ResponseOp(input_ops=[again])


async def post(running: Any, value: str, log_id: int) -> dict[str, Any]:
    async with running.http() as http:
        reply = await http.post(running.url(), json={"key": ["x"], "value": [value], "logid": log_id})
    body: dict[str, Any] = reply.json()
    return body


async def test_each_op_reports_its_five_stages_in_order_within_the_request(serve: Any) -> None:
    # "double" runs inline on the event loop, "again" in threads: both are timed.
    running = await serve(two_ops(), {"op": {"double": {"inline": True}}})
    recorder = Recorder()
    running.server.gateway.executor.observers.add(recorder)

    body = await post(running, "3", 77)

    assert body["err_no"] == 0 and body["value"] == ["12"]
    ((name, err_no, start, end),) = recorder.requests
    assert (name, err_no) == ("t", 0)
    for op in ("double", "again"):
        timings = [t for t in recorder.stages if t.op == op]
        assert [t.stage for t in timings] == list(observe.STAGES)
        data_id = timings[0].data_ids[0]
        assert all(t.data_ids == (data_id,) and t.log_ids == (77,) and t.where == "" for t in timings)
        edges = [edge for t in timings for edge in (t.start_ns, t.end_ns)]
        assert edges == sorted(edges), f"{op}: stages overlap or run backwards"
        assert start <= edges[0] and edges[-1] <= end
    assert recorder.batches == [("double", 1), ("again", 1)]
    assert recorder.op_errors == []


async def test_a_batch_reports_each_stage_once_with_all_its_data_ids(serve: Any) -> None:
    gate = threading.Event()
    read = RequestOp()
    gated = Gated(gate, name="gated", input_ops=[read])
    running = await serve(
        ResponseOp(input_ops=[gated]),
        {"op": {"gated": {"batch_size": 3, "auto_batching_timeout": 60_000, "concurrency": 1}}},
    )
    executor = running.server.gateway.executor
    recorder = Recorder()
    executor.observers.add(recorder)

    sent = [asyncio.ensure_future(post(running, str(i), 100 + i)) for i in range(3)]
    gate.set()
    bodies = await asyncio.wait_for(asyncio.gather(*sent), DEADLINE_S)

    assert sorted(b["value"][0] for b in bodies) == ["0", "2", "4"]
    assert recorder.batches == [("gated", 3)]
    assert [t.stage for t in recorder.stages] == list(observe.STAGES)
    for timing in recorder.stages:
        assert len(timing.data_ids) == 3 and sorted(timing.log_ids) == [100, 101, 102]
        assert timing.end_ns >= timing.start_ns
    assert sorted(err for _, err, _, _ in recorder.requests) == [0, 0, 0]


async def test_a_failing_op_reports_its_error_and_the_requests_err_no(serve: Any) -> None:
    running = await serve(two_ops())
    recorder = Recorder()
    running.server.gateway.executor.observers.add(recorder)

    body = await post(running, "boom", 5)

    assert body["err_no"] != 0
    assert recorder.op_errors == [("double", body["err_no"])]
    assert [err for _, err, _, _ in recorder.requests] == [body["err_no"]]
    assert [t.stage for t in recorder.stages if t.op == "double"][0] == "in"
    assert not [t for t in recorder.stages if t.op == "again"], "the op after the failure never ran"


async def test_no_stage_timing_is_built_when_nobody_observes(serve: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    running = await serve(two_ops(), {"op": {"double": {"inline": True}}})
    executor = running.server.gateway.executor
    recorder = Recorder()
    executor.observers.add(recorder)
    executor.observers.remove(recorder)

    def forbidden(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a StageTiming was built with no observer registered")

    monkeypatch.setattr(observe, "StageTiming", forbidden)
    bodies = [await post(running, str(i), i) for i in range(3)]

    assert [b["value"] for b in bodies] == [["0"], ["4"], ["8"]]
    assert recorder.stages == [] and recorder.requests == []


async def test_queue_depths_name_every_op_and_count_waiting_samples(serve: Any) -> None:
    gate = threading.Event()
    read = RequestOp()
    gated = Gated(gate, name="gated", input_ops=[read])
    after = Double(name="after", input_ops=[gated])
    running = await serve(
        ResponseOp(input_ops=[after]),
        {"op": {"gated": {"concurrency": 1}, "after": {"inline": True}}},
    )
    executor = running.server.gateway.executor
    assert executor.queue_depths() == {"gated": 0, "after": 0}

    sent = [asyncio.ensure_future(post(running, str(i), i)) for i in range(4)]
    try:
        # One batch runs, one waits in the thread pool's queue: the other two wait in the channel.
        deadline = asyncio.get_running_loop().time() + DEADLINE_S
        while executor.queue_depths()["gated"] != 2 or executor.in_flight != 4:
            assert asyncio.get_running_loop().time() < deadline, executor.queue_depths()
            await asyncio.sleep(0.005)  # sync-ok: polling interval of a deadline-bounded wait
    finally:
        gate.set()
    await asyncio.wait_for(asyncio.gather(*sent), DEADLINE_S)
    assert executor.queue_depths() == {"gated": 0, "after": 0} and executor.in_flight == 0


async def test_stages_run_in_a_worker_process_come_back_with_their_times(serve: Any) -> None:
    read = RequestOp()
    double = Double(name="double", input_ops=[read])
    running = await serve(ResponseOp(input_ops=[double]), {"dag": {"is_thread_op": False}, "op": {"double": {}}})
    recorder = Recorder()
    running.server.gateway.executor.observers.add(recorder)

    body = await post(running, "21", 3)

    assert body["err_no"] == 0 and body["value"] == ["42"]
    assert [t.stage for t in recorder.stages] == list(observe.STAGES)
    edges = [edge for t in recorder.stages for edge in (t.start_ns, t.end_ns)]
    assert edges == sorted(edges)  # the child's clock is the server's wall clock
    (prep,) = [t for t in recorder.stages if t.stage == "prep"]
    assert prep.where == "" and prep.log_ids == (3,)
