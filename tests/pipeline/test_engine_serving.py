"""The engine behind a real server: requests over HTTP and gRPC on loopback reach ops that
batch, time out, fail, skip, fan out and in, run in processes bound to devices, and
refuse work when full or not ready yet.

Aspects covered:
- auto-batching under concurrent load (batches close by count, never above batch_size);
- the per-op timeout, with and without retry, and the whole-request timeout;
- an exception in user code: a fixed message to the caller, the traceback in
  ``pipeline.log.wf`` with the request's data_id and log_id;
- a ProductErrCode skips the downstream ops and answers with its code;
- ``is_skip_process`` skips process;
- process ops: one process per worker, devices bound round robin, init_op once each,
  the runtime config handed to the op;
- admission (``channel_size``): the request over the limit is told the server is busy;
- fan-out and fan-in keep each request's inputs together;
- readiness: /readyz, gRPC health and predictions while init_op runs, then once ready.

Batch composition and ordering are made deterministic with gates (threading.Event,
multiprocessing.Barrier) released by the test; nothing waits on time except polling an
observable state with a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import pathlib
import socket
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import grpc
import httpx
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pipeserve import Op, PipelineServer, ProductErrCode, RequestOp, ResponseOp, codec
from pipeserve.gateway import grpc as gateway_grpc
from pipeserve.proto.pipeserve.v1 import pipeline_service_pb2 as pb
from pipeserve.proto.pipeserve.v1 import pipeline_service_pb2_grpc as pb_grpc

GATE_S = 10.0
"""The longest an op waits on a gate before giving up (a test that never opens it fails)."""
DEADLINE_S = 10.0
"""The longest a test polls for a state that should come at once."""


# Helpers -------------------------------------------------------------------------------------


async def until(condition: Callable[[], bool], what: str, deadline_s: float = DEADLINE_S) -> None:
    """Poll ``condition`` until it holds, failing after ``deadline_s``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while not condition():
        if loop.time() > end:
            raise AssertionError(f"gave up after {deadline_s} s waiting for {what}")
        await asyncio.sleep(0.005)  # sync-ok: polling an observable state with a deadline


async def eventually(check: Callable[[], Awaitable[bool]], what: str, deadline_s: float = DEADLINE_S) -> None:
    """Poll the async ``check`` until it returns True, failing after ``deadline_s``."""
    loop = asyncio.get_running_loop()
    end = loop.time() + deadline_s
    while not await check():
        if loop.time() > end:
            raise AssertionError(f"gave up after {deadline_s} s waiting for {what}")
        await asyncio.sleep(0.005)  # sync-ok: polling an observable state with a deadline


async def predict(http: httpx.AsyncClient, feed: dict[str, Any], **kwargs: Any) -> tuple[int, pb.Response]:
    """POST one request; returns the HTTP status and the decoded Response."""
    request = codec.request_from_values(feed, **kwargs)
    reply = await http.post("/t/prediction", content=codec.request_to_json(request))
    return reply.status_code, codec.response_from_json(reply.content)


def values(response: pb.Response) -> dict[str, Any]:
    assert response.err_no == 0, response.err_msg
    return codec.values_from_response(response)


def wait_gate(gate: Any) -> None:
    if not gate.wait(GATE_S):
        raise RuntimeError("the test never opened the gate")


class Gated(Op):
    """Passes ``x`` through as ``y = x * 10``, once ``gate`` is open; counts process calls."""

    def __init__(self, gate: threading.Event, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = gate
        self.calls = 0
        self.sizes: list[int] = []
        self._lock = threading.Lock()

    def process(self, feed_list: list[dict[str, Any]], typical_logid: int) -> Any:
        with self._lock:
            self.calls += 1
            self.sizes.append(len(feed_list))
        wait_gate(self.gate)
        return [{"y": feed["x"] * 10} for feed in feed_list]


# Auto-batching -------------------------------------------------------------------------------


async def test_concurrent_requests_are_batched_up_to_batch_size(serve: Any) -> None:
    gate = threading.Event()
    batcher = Gated(gate, name="batcher", input_ops=[RequestOp()])
    config = {"op": {"batcher": {"batch_size": 4, "auto_batching_timeout": 1000}}}
    running = await serve(ResponseOp(input_ops=[batcher]), config)
    executor = running.server.gateway.executor
    try:
        async with running.http() as http:
            replies = [asyncio.create_task(predict(http, {"x": np.int64(i)})) for i in range(12)]
            # The first batch holds the only worker; every other request queues behind it.
            await until(lambda: executor.in_flight == 12, "all 12 requests inside the DAG")
            gate.set()
            answers = await asyncio.gather(*replies)
    finally:
        gate.set()

    for i, (status, response) in enumerate(answers):
        assert status == 200
        assert int(values(response)["y"]) == i * 10
    assert sum(batcher.sizes) == 12
    assert max(batcher.sizes) <= 4
    assert 4 in batcher.sizes  # at least 8 were queued when the gate opened: a full batch formed


# Timeouts ------------------------------------------------------------------------------------


class Slow(Op):
    """Blocks on ``gate`` when the request says ``mode: slow``; counts those calls."""

    def __init__(self, gate: threading.Event, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = gate
        self.slow_calls = 0
        self._lock = threading.Lock()

    def process(self, feed_list: list[dict[str, Any]], typical_logid: int) -> Any:
        if any(feed["mode"] == "slow" for feed in feed_list):
            with self._lock:
                self.slow_calls += 1
            wait_gate(self.gate)
        return [{"mode": feed["mode"]} for feed in feed_list]


async def test_an_op_past_its_timeout_answers_timeout_and_the_next_request_succeeds(serve: Any) -> None:
    gate = threading.Event()
    slow = Slow(gate, name="slow", input_ops=[RequestOp()])
    running = await serve(ResponseOp(input_ops=[slow]), {"op": {"slow": {"timeout": 100, "concurrency": 2}}})
    try:
        async with running.http() as http:
            status, response = await predict(http, {"mode": "slow"})
            assert (status, response.err_no, response.err_msg) == (504, 1, "op 'slow' timed out after 100 ms")

            status, response = await predict(http, {"mode": "fast"})
            assert status == 200
            assert values(response) == {"mode": "fast"}
    finally:
        gate.set()
    assert slow.slow_calls == 1


async def test_an_op_that_times_out_is_retried_and_the_message_counts_the_attempts(serve: Any) -> None:
    gate = threading.Event()
    slow = Slow(gate, name="slow", input_ops=[RequestOp()])
    config = {"op": {"slow": {"timeout": 100, "retry": 2, "concurrency": 2}}}
    running = await serve(ResponseOp(input_ops=[slow]), config)
    try:
        async with running.http() as http:
            status, response = await predict(http, {"mode": "slow"})
            assert (status, response.err_no) == (504, 1)
            assert response.err_msg == "op 'slow' timed out after 100 ms (2 attempts)"
            await until(lambda: slow.slow_calls >= 2, "the second attempt")
            assert slow.slow_calls == 2

            gate.set()  # both workers are stuck in the timed-out attempts until now
            status, response = await predict(http, {"mode": "fast"})
            assert (status, values(response)) == (200, {"mode": "fast"})
    finally:
        gate.set()
    assert slow.slow_calls == 2


async def test_a_request_past_the_dag_timeout_answers_timeout_naming_the_running_op(serve: Any) -> None:
    gate = threading.Event()
    first = Op(name="first", input_ops=[RequestOp()])
    stuck = Gated(gate, name="stuck", input_ops=[first])
    running = await serve(ResponseOp(input_ops=[stuck]), {"dag": {"timeout": 200}})
    try:
        async with running.http() as http:
            status, response = await predict(http, {"x": np.int64(1)})
            assert (status, response.err_no) == (504, 1)
            assert response.err_msg.startswith("request timed out after 200 ms")
            assert response.err_msg == "request timed out after 200 ms (still running: stuck)"

            gate.set()
            status, response = await predict(http, {"x": np.int64(2)})
            assert (status, int(values(response)["y"])) == (200, 20)
    finally:
        gate.set()


# Errors from user code -----------------------------------------------------------------------


class Boom(Op):
    def process(self, feed_list: list[dict[str, Any]], typical_logid: int) -> Any:
        if feed_list[0]["mode"] == "boom":
            raise ValueError("secret detail of the model")
        return [{"mode": feed["mode"]} for feed in feed_list]


async def test_an_exception_in_an_op_answers_a_fixed_message_and_logs_the_traceback(serve: Any) -> None:
    boom = Boom(name="boom", input_ops=[RequestOp()])
    running = await serve(ResponseOp(input_ops=[boom]))
    async with running.http() as http:
        status, response = await predict(http, {"mode": "boom"}, logid=7)
        assert (status, response.err_no) == (500, 8)
        assert response.err_msg == "internal error in op 'boom': ValueError (see pipeline.log.wf)"
        assert "Traceback" not in response.err_msg

        status, response = await predict(http, {"mode": "fine"}, logid=8)
        assert (status, values(response)) == (200, {"mode": "fine"})

    log = (running.log_dir / "pipeline.log.wf").read_text()
    lines = log.splitlines()
    (at,) = [i for i, line in enumerate(lines) if "log_id=7" in line and "op 'boom'" in line]
    assert "data_id=" in lines[at]
    rest = "\n".join(lines[at + 1 :])
    assert rest.startswith("Traceback (most recent call last)")
    assert "ValueError: secret detail of the model" in rest


async def test_an_exception_over_grpc_answers_the_same_error_in_the_response(serve: Any) -> None:
    boom = Boom(name="boom", input_ops=[RequestOp()])
    running = await serve(ResponseOp(input_ops=[boom]))
    async with grpc.aio.insecure_channel(running.grpc_target) as channel:
        stub = pb_grpc.PipelineServiceStub(channel)
        response = await stub.inference(codec.request_from_values({"mode": "boom"}, logid=7))
        assert (response.err_no, response.err_msg) == (
            8,
            "internal error in op 'boom': ValueError (see pipeline.log.wf)",
        )
        response = await stub.inference(codec.request_from_values({"mode": "fine"}))
        assert values(response) == {"mode": "fine"}


class Codes(ProductErrCode):
    EMPTY = 1001


class CheckInput(Op):
    def preprocess(self, input_dicts: dict[str, Any], data_id: int, log_id: int) -> Any:
        ((_, request),) = input_dicts.items()
        if request["text"] == "":
            return None, False, Codes.EMPTY, "empty input"
        return request, False, None, ""


class CountCalls(Op):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calls = 0

    def process(self, feed_list: list[dict[str, Any]], typical_logid: int) -> Any:
        self.calls += 1
        return [{"text": feed["text"].upper()} for feed in feed_list]


async def test_a_product_error_answers_its_code_and_skips_the_downstream_ops(serve: Any) -> None:
    check = CheckInput(name="check", input_ops=[RequestOp()])
    after = CountCalls(name="after", input_ops=[check])
    running = await serve(ResponseOp(input_ops=[after]))
    async with running.http() as http:
        status, response = await predict(http, {"text": ""})
        assert (status, response.err_no, response.err_msg) == (200, 1001, "empty input")
        assert after.calls == 0

        status, response = await predict(http, {"text": "hello"})
        assert (status, values(response)) == (200, {"text": "HELLO"})
        assert after.calls == 1


class MaybeSkip(Op):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calls = 0

    def preprocess(self, input_dicts: dict[str, Any], data_id: int, log_id: int) -> Any:
        ((_, request),) = input_dicts.items()
        return {"x": request["x"] + 1}, request["mode"] == "skip", None, ""

    def process(self, feed_list: list[dict[str, Any]], typical_logid: int) -> Any:
        self.calls += 1
        return [{"x": feed["x"] * 100} for feed in feed_list]


async def test_is_skip_process_skips_process_and_answers_the_feed(serve: Any) -> None:
    op = MaybeSkip(name="maybe", input_ops=[RequestOp()])
    running = await serve(ResponseOp(input_ops=[op]))
    async with running.http() as http:
        status, response = await predict(http, {"x": np.int64(4), "mode": "skip"})
        assert status == 200
        assert int(values(response)["x"]) == 5
        assert op.calls == 0

        status, response = await predict(http, {"x": np.int64(4), "mode": "run"})
        assert int(values(response)["x"]) == 500
        assert op.calls == 1


# Process ops and devices ---------------------------------------------------------------------


class WhereAmI(Op):
    """Reports the process, device and runtime config it runs with, once three workers meet."""

    def __init__(self, barrier: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.barrier = barrier
        self.init_calls = 0

    def init_op(self) -> None:
        self.init_calls += 1
        self.pid = os.getpid()
        self.device = os.environ.get("CUDA_VISIBLE_DEVICES", "<unset>")

    def process(self, feed_list: list[dict[str, Any]], typical_logid: int) -> Any:
        self.barrier.wait(GATE_S)  # all three workers hold a request at once
        rc = self.runtime_config
        report = {
            "pid": self.pid,
            "device": self.device,
            "idx": self.concurrency_idx,
            "init_calls": self.init_calls,
            "device_id": rc.device_id,
            "precision": rc.precision,
            "device_type": int(rc.device_type),
        }
        return [report for _ in feed_list]


@pytest.mark.parametrize(
    "hardware",
    [{"devices": "0,1", "precision": "fp16"}, {"devices": "0,1", "device_type": 1, "precision": "fp16"}],
    ids=["devices-alone-mean-gpu", "explicit-device-type"],
)
async def test_process_ops_run_one_process_per_worker_bound_to_devices_round_robin(
    serve: Any, hardware: dict[str, Any]
) -> None:
    barrier = multiprocessing.get_context("fork").Barrier(3)
    op = WhereAmI(barrier, name="where", input_ops=[RequestOp()])
    config = {"dag": {"is_thread_op": False}, "op": {"where": {"concurrency": 3, **hardware}}}
    running = await serve(ResponseOp(input_ops=[op]), config)
    async with running.http() as http:
        answers = await asyncio.gather(*(predict(http, {"x": np.int64(i)}) for i in range(3)))

    reports = [values(response) for _, response in answers]
    by_idx = {int(r["idx"]): r for r in reports}
    assert sorted(by_idx) == [0, 1, 2]
    pids = {int(r["pid"]) for r in reports}
    assert len(pids) == 3 and os.getpid() not in pids
    assert [by_idx[i]["device"] for i in range(3)] == ["0", "1", "0"]
    assert [int(by_idx[i]["device_id"]) for i in range(3)] == [0, 1, 0]
    assert [int(r["init_calls"]) for r in reports] == [1, 1, 1]
    assert {r["precision"] for r in reports} == {"fp16"}
    assert {int(r["device_type"]) for r in reports} == {1}
    assert op.init_calls == 0  # the server's own copy never ran init_op


# Admission -----------------------------------------------------------------------------------


async def test_a_request_over_the_channel_size_is_told_the_server_is_busy(serve: Any) -> None:
    gate = threading.Event()
    gated = Gated(gate, name="gated", input_ops=[RequestOp()])
    running = await serve(ResponseOp(input_ops=[gated]), {"dag": {"channel_size": 2, "timeout": 300}})
    executor = running.server.gateway.executor
    try:
        async with running.http() as http:
            first = asyncio.create_task(predict(http, {"x": np.int64(1)}))
            second = asyncio.create_task(predict(http, {"x": np.int64(2)}))
            await until(lambda: executor.in_flight == 2, "two requests inside the DAG")

            status, response = await predict(http, {"x": np.int64(3)})
            assert (status, response.err_no) == (503, 10)
            assert response.err_msg.startswith("server busy:")

            gate.set()
            for task, x in ((first, 1), (second, 2)):
                status, response = await task
                assert (status, int(values(response)["y"])) == (200, x * 10)
            status, response = await predict(http, {"x": np.int64(4)})
            assert (status, int(values(response)["y"])) == (200, 40)
    finally:
        gate.set()


# Fan-out and fan-in --------------------------------------------------------------------------


class PlusOne(Op):
    def __init__(self, gate: threading.Event, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = gate

    def process(self, feed_list: list[dict[str, Any]], typical_logid: int) -> Any:
        wait_gate(self.gate)
        return [{"a": feed["x"] + 1} for feed in feed_list]


class Double(Op):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.done = 0
        self._lock = threading.Lock()

    def process(self, feed_list: list[dict[str, Any]], typical_logid: int) -> Any:
        with self._lock:
            self.done += len(feed_list)
        return [{"b": feed["x"] * 2, "x": feed["x"]} for feed in feed_list]


class Combine(Op):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.input_keys: list[set[str]] = []

    def preprocess(self, input_dicts: dict[str, Any]) -> dict[str, Any]:
        self.input_keys.append(set(input_dicts))
        return {"x": input_dicts["b"]["x"], "sum": input_dicts["a"]["a"] + input_dicts["b"]["b"]}


async def test_fan_out_and_fan_in_combine_each_requests_own_inputs(serve: Any) -> None:
    gate = threading.Event()
    read = RequestOp()
    a = PlusOne(gate, name="a", input_ops=[read])
    b = Double(name="b", input_ops=[read])
    c = Combine(name="c", input_ops=[a, b])
    running = await serve(ResponseOp(input_ops=[c]), {"op": {"b": {"concurrency": 3}}})
    xs = [3, 10, 42, 7, 100, 55]
    try:
        async with grpc.aio.insecure_channel(running.grpc_target) as channel:
            stub = pb_grpc.PipelineServiceStub(channel)
            calls = [asyncio.ensure_future(stub.inference(codec.request_from_values({"x": np.int64(x)}))) for x in xs]
            # Every b output arrives before any a output: c must wait for both, per request.
            await until(lambda: b.done == len(xs), "b to finish every request")
            gate.set()
            responses = await asyncio.gather(*calls)
    finally:
        gate.set()

    for x, response in zip(xs, responses):
        answer = values(response)
        assert int(answer["x"]) == x
        assert int(answer["sum"]) == (x + 1) + 2 * x
    assert c.input_keys == [{"a", "b"}] * len(xs)


# Readiness -----------------------------------------------------------------------------------


@contextlib.contextmanager
def reserved_port() -> Iterator[int]:
    """A free loopback port, held (bound, not listening) while the server binds it too.

    ``start()`` returns the bound ports only once every init_op has finished, so this
    test must know them in advance. Holding the port with SO_REUSEADDR/SO_REUSEPORT
    keeps any other process from taking it, yet lets the server bind it (its gRPC server
    sets so_reuseport, its HTTP socket SO_REUSEADDR), as the server's own worker
    processes share their ports.
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]
    finally:
        sock.close()


class SlowInit(Op):
    def __init__(self, entered: threading.Event, gate: threading.Event, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.entered = entered
        self.gate = gate

    def init_op(self) -> None:
        self.entered.set()
        wait_gate(self.gate)

    def process(self, feed_list: list[dict[str, Any]], typical_logid: int) -> Any:
        return [{"y": feed["x"] * 10} for feed in feed_list]


async def readyz_ok(http: httpx.AsyncClient) -> bool:
    return (await http.get("/readyz")).status_code == 200


async def health_status(channel: grpc.aio.Channel, service: str = "") -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=service))
    return int(reply.status)


async def test_the_server_is_not_ready_until_every_init_op_finished(tmp_path: pathlib.Path) -> None:
    entered, gate = threading.Event(), threading.Event()
    op = SlowInit(entered, gate, name="warm", input_ops=[RequestOp()])
    server = PipelineServer(name="t")
    server.set_response_op(ResponseOp(input_ops=[op]))
    serving = health_pb2.HealthCheckResponse.SERVING
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    with reserved_port() as http_port, reserved_port() as rpc_port:
        server.prepare_server(
            yml_dict={
                "host": "127.0.0.1",
                "http_port": http_port,
                "rpc_port": rpc_port,
                "log_dir": str(tmp_path / "logs"),
            }
        )
        starting = asyncio.create_task(server.start())
        try:
            # init_op runs after both front doors listen.
            await until(entered.is_set, "init_op to start")
            async with (
                httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=DEADLINE_S) as http,
                grpc.aio.insecure_channel(f"127.0.0.1:{rpc_port}") as channel,
            ):
                reply = await http.get("/readyz")
                assert reply.status_code == 503
                assert reply.json() == {"status": "not ready", "reason": "ops are running init_op"}
                assert (await http.get("/healthz")).status_code == 200
                assert await health_status(channel) == not_serving
                assert await health_status(channel, gateway_grpc.SERVICE_NAME) == not_serving

                status, response = await predict(http, {"x": np.int64(1)})
                assert (status, response.err_no) == (503, 6)
                assert "starting" in response.err_msg
                response = await pb_grpc.PipelineServiceStub(channel).inference(
                    codec.request_from_values({"x": np.int64(1)})
                )
                assert response.err_no == 6 and "starting" in response.err_msg
                assert not starting.done()

                gate.set()
                await asyncio.wait_for(starting, DEADLINE_S)
                await eventually(lambda: readyz_ok(http), "/readyz to answer 200")
                assert await health_status(channel) == serving
                assert await health_status(channel, gateway_grpc.SERVICE_NAME) == serving

                status, response = await predict(http, {"x": np.int64(2)})
                assert (status, int(values(response)["y"])) == (200, 20)
        finally:
            gate.set()
            if not starting.done():
                starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            await server.stop(grace_s=1)
