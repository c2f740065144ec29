"""The op service over real gRPC on loopback: one op, batches of samples, one result each.

Aspects:

- a batch runs through preprocess, process and postprocess in one process call and comes
  back in order; data_id and log_id reach the op; arrays keep their dtype and shape;
- one bad sample fails alone: user code raising (err_no 8), tensor bytes that do not
  match dtype x shape (err_no 9, naming ``samples[i].input_dicts[...]``), an output that
  cannot be sent (err_no 3, naming ``output``), a ProductErrCode (its own code), an
  output over ``max_request_bytes``;
- whole-call failures are statuses, and the next call is served: malformed bytes
  (INVALID_ARGUMENT), a batch for another op (NOT_FOUND), a message over
  ``max_request_bytes`` (RESOURCE_EXHAUSTED), a deadline shorter than the op
  (DEADLINE_EXCEEDED);
- health is NOT_SERVING and calls are UNAVAILABLE while init_op runs; SERVING after;
  reflection lists and describes the service;
- drain: health flips to NOT_SERVING, new calls are refused, the call in flight finishes
  with its result, and stop returns as soon as it has;
- process workers: one process per worker, bound round robin to ``devices``, init_op once
  in each, the runtime config handed to the op;
- ``load_op`` errors, and the ``pipeserve opservice`` command: banner, a call, SIGTERM,
  a config error on stderr with exit code 2, and a clean stop when init_op fails.

Ops block on threading.Event gates the test opens; waits poll an observable state with a
deadline. Every server is stopped at teardown, every subprocess killed by its own PID.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
import yaml
from google.protobuf import descriptor_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from pipeserve import Op, ProductErrCode
from pipeserve.opservice import server as server_mod
from pipeserve.opservice import values
from pipeserve.opservice.server import OpServer, Settings
from pipeserve.pipeline import config as config_mod
from pipeserve.pipeline import errors
from pipeserve.proto.pipeserve.v1 import op_service_pb2 as pb

SERVICE = "pipeserve.v1.OpService"
PROCESS = f"/{SERVICE}/Process"
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SENDABLE = "numpy arrays and scalars, str, bytes, int, float, bool, None, lists, tuples and dicts with str keys"
GATE_S = 10.0
"""The longest an op waits on a gate before giving up (a test that never opens it fails)."""
DEADLINE_S = 10.0
"""The longest a test polls for a state that should come at once."""
CALL_S = 10.0
"""Deadline of calls that should succeed (so a hang fails the test instead of blocking it)."""
START_DEADLINE_S = 60.0
STOP_DEADLINE_S = 15.0


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


def wait_gate(gate: threading.Event) -> None:
    if not gate.wait(GATE_S):
        raise RuntimeError("the test never opened the gate")


def make_batch(op: str, *inputs: dict[str, Any], first_id: int = 10) -> pb.OpBatch:
    """An OpBatch with one sample per ``inputs`` (its input_dicts), data_id ``first_id + i``
    and log_id ``1000 + first_id + i``."""
    batch = pb.OpBatch(op=op)
    for i, input_dicts in enumerate(inputs):
        sample = batch.samples.add(data_id=first_id + i, log_id=1000 + first_id + i)
        values.fill_map(sample.input_dicts, input_dicts, f"samples[{i}].input_dicts")
    return batch


def entry(values: pb.ValueMap, key: str) -> pb.Value:
    """The value under ``key`` in a ValueMap."""
    return values.values[list(values.keys).index(key)]


def process_stub(channel: grpc.aio.Channel) -> Any:
    return channel.unary_unary(
        PROCESS, request_serializer=pb.OpBatch.SerializeToString, response_deserializer=pb.ResultBatch.FromString
    )


def raw_stub(channel: grpc.aio.Channel) -> Any:
    return channel.unary_unary(PROCESS, request_serializer=lambda b: b, response_deserializer=lambda b: b)


def output(result: pb.Result) -> Any:
    assert (result.err_no, result.err_msg) == (0, "")
    return values.decode(result.output, "output")


async def refused(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    """The error a call fails with (the test fails if it succeeds)."""
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


async def health_status(channel: grpc.aio.Channel, service: str = "") -> int:
    reply = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=CALL_S
    )
    return int(reply.status)


# Fixtures ------------------------------------------------------------------------------------


@dataclasses.dataclass
class OpServers:
    """Builds op services for a test, on 127.0.0.1 port 0; all are stopped at teardown."""

    log_dir: Path
    built: list[OpServer] = dataclasses.field(default_factory=list)

    def build(self, op: Op, config: dict[str, Any] | None = None, **settings: Any) -> OpServer:
        full = {"rpc_port": 0, "log_dir": str(self.log_dir), **(config or {})}
        server = OpServer(op, config_mod.load(full), Settings(host="127.0.0.1", **{"grace_s": 1.0, **settings}))
        self.built.append(server)
        return server

    async def start(self, op: Op, config: dict[str, Any] | None = None, **settings: Any) -> tuple[OpServer, str]:
        """Build and start; returns the server and its ``host:port``."""
        server = self.build(op, config, **settings)
        port = await server.start()
        return server, f"127.0.0.1:{port}"


@pytest.fixture
async def op_servers(tmp_path: Path) -> AsyncIterator[OpServers]:
    servers = OpServers(tmp_path / "logs")
    try:
        yield servers
    finally:
        for server in servers.built:
            await server.stop(grace_s=1)


# Ops -----------------------------------------------------------------------------------------


class Refuse(ProductErrCode):
    NEGATIVE = 1001


class ScaleOp(Op):
    """Doubles ``x`` of its one input; reports the ids and the size of its process call.

    ``mode`` in the input picks a failure: ``raise`` in preprocess, ``refuse`` (a product
    error) or ``unsendable`` (a set) in postprocess.
    """

    def preprocess(
        self, input_dicts: dict[str, Any], data_id: int, log_id: int
    ) -> tuple[Any, bool, ProductErrCode | None, str]:
        ((_, read),) = input_dicts.items()
        if read.get("mode") == "raise":
            raise ValueError("this text stays in the log")
        return {**read, "data_id": data_id, "log_id": log_id}, False, None, ""

    def process(self, feed_list: list[dict[str, Any]], typical_logid: int) -> list[dict[str, Any]]:
        return [
            {"y": feed["x"] * 2, "data_id": feed["data_id"], "log_id": feed["log_id"], "calls_of": len(feed_list),
             "mode": feed.get("mode", "ok")}
            for feed in feed_list
        ]  # fmt: skip

    def postprocess(
        self, input_dicts: dict[str, Any], fetch_dict: Any, data_id: int, log_id: int
    ) -> tuple[Any, ProductErrCode | None, str]:
        if fetch_dict["mode"] == "refuse":
            return None, Refuse.NEGATIVE, f"negative sample {data_id}"
        if fetch_dict["mode"] == "unsendable":
            return {"y": fetch_dict["y"], "tags": {"a", "b"}}, None, ""
        return fetch_dict, None, ""


class GateOp(Op):
    """Passes its input through; a sample with ``slow: True`` waits for ``gate`` in process."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gate = threading.Event()
        self.entered = threading.Event()

    def preprocess(self, input_dicts: dict[str, Any]) -> Any:
        ((_, read),) = input_dicts.items()
        return read

    def process(self, feed_list: list[dict[str, Any]], typical_logid: int) -> list[dict[str, Any]]:
        if any(feed.get("slow") for feed in feed_list):
            self.entered.set()
            wait_gate(self.gate)
        return [{"echo": feed["x"]} for feed in feed_list]


class SlowInitOp(GateOp):
    """Holds init_op until ``init_gate`` opens."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.init_gate = threading.Event()
        self.init_entered = threading.Event()

    def init_op(self) -> None:
        self.init_entered.set()
        wait_gate(self.init_gate)


def scale_input(x: Any, **extra: Any) -> dict[str, Any]:
    return {"read": {"x": x, **extra}}


# A batch through the op ----------------------------------------------------------------------


async def test_a_batch_comes_back_in_order_through_all_three_stages(op_servers: OpServers) -> None:
    _, target = await op_servers.start(ScaleOp(name="scale"))
    xs = [
        np.arange(6, dtype=np.float32).reshape(2, 3),
        np.array([1, -2, 3, 4], dtype=np.int16),
        np.zeros((0, 2), dtype=np.uint8),
    ]

    async with grpc.aio.insecure_channel(target) as channel:
        reply = await process_stub(channel)(make_batch("scale", *(scale_input(x) for x in xs)), timeout=CALL_S)

    assert len(reply.results) == 3
    for i, (result, x) in enumerate(zip(reply.results, xs)):
        out = output(result)
        assert out["y"].dtype == x.dtype and out["y"].shape == x.shape
        np.testing.assert_array_equal(out["y"], x * 2)
        assert (out["data_id"], out["log_id"]) == (10 + i, 1010 + i)
        assert out["calls_of"] == 3  # the whole batch went through one process call


async def test_python_values_of_every_kind_reach_the_op_and_come_back(op_servers: OpServers) -> None:
    _, target = await op_servers.start(GateOp(name="echo"))
    x = {"words": "great film", "raw": b"\x00\x01", "n": -(2**63), "p": 0.25, "flag": True, "nothing": None,
         "nested": [{"a": (1, 2)}, [], {}], "scalar": np.float16(1.5)}  # fmt: skip

    async with grpc.aio.insecure_channel(target) as channel:
        reply = await process_stub(channel)(make_batch("echo", {"read": {"x": x}}), timeout=CALL_S)

    echo = output(reply.results[0])["echo"]
    assert echo == {**x, "nested": [{"a": [1, 2]}, [], {}]}
    assert type(echo["scalar"]) is np.float16


# One bad sample fails only itself -------------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "err_no", "error", "message"),
    [
        ("raise", 8, errors.OpError, "internal error in op 'scale': ValueError (see pipeline.log.wf)"),
        ("unsendable", 3, errors.OpOutputError, f"op 'scale' output['tags']: a value of type set cannot be sent between ops; use {SENDABLE}"),
        ("refuse", 1001, errors.ProductError, "negative sample 11"),
    ],
)
async def test_one_bad_sample_fails_alone(
    op_servers: OpServers, mode: str, err_no: int, error: type[errors.PipelineError], message: str
) -> None:
    _, target = await op_servers.start(ScaleOp(name="scale"))
    batch = make_batch("scale", scale_input(1), scale_input(2, mode=mode), scale_input(3))

    async with grpc.aio.insecure_channel(target) as channel:
        reply = await process_stub(channel)(batch, timeout=CALL_S)

    bad = reply.results[1]
    assert (bad.err_no, bad.err_msg) == (err_no, message)
    assert not bad.HasField("output")
    assert [output(reply.results[i])["y"] for i in (0, 2)] == [2, 6]
    assert type(errors.from_code(bad.err_no, bad.err_msg)) is error  # what the gateway rebuilds


async def test_a_sample_with_tensor_bytes_that_do_not_match_fails_alone(op_servers: OpServers) -> None:
    _, target = await op_servers.start(ScaleOp(name="scale"))
    batch = make_batch("scale", scale_input(np.float32(1)), scale_input(np.float32(2)), scale_input(np.float32(3)))
    broken = entry(entry(batch.samples[1].input_dicts, "read").map, "x").tensor
    broken.shape[:] = [2]
    broken.data = b"\x00\x00\x80"  # 3 bytes for float32 x [2]

    async with grpc.aio.insecure_channel(target) as channel:
        reply = await process_stub(channel)(batch, timeout=CALL_S)

    bad = reply.results[1]
    assert (bad.err_no, bad.err_msg) == (
        9, "samples[1].input_dicts['read']['x']: 3 bytes do not match float32 x [2] (8 bytes)"
    )
    good = [output(reply.results[i]) for i in (0, 2)]
    assert [g["y"] for g in good] == [np.float32(2), np.float32(6)]
    assert [g["calls_of"] for g in good] == [2, 2]  # the bad sample never reached the op


# Whole-call failures, each followed by a good call ---------------------------------------------


async def assert_serves_next_call(channel: grpc.aio.Channel, op: str = "echo") -> None:
    reply = await process_stub(channel)(make_batch(op, {"read": {"x": 7}}), timeout=CALL_S)
    assert output(reply.results[0]) == {"echo": 7}


async def test_malformed_bytes_are_an_invalid_argument_and_the_next_call_is_served(op_servers: OpServers) -> None:
    _, target = await op_servers.start(GateOp(name="echo"))

    async with grpc.aio.insecure_channel(target) as channel:
        # Field 2 (samples) says 5 bytes follow; 2 do.
        error = await refused(raw_stub(channel)(b"\x12\x05ab", timeout=CALL_S))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details().startswith("malformed OpBatch message: ")
        await assert_serves_next_call(channel)


async def test_a_batch_for_another_op_is_not_found(op_servers: OpServers) -> None:
    _, target = await op_servers.start(GateOp(name="echo"))

    async with grpc.aio.insecure_channel(target) as channel:
        error = await refused(process_stub(channel)(make_batch("bow", {"read": {"x": 1}}), timeout=CALL_S))
        assert (error.code(), error.details()) == (
            grpc.StatusCode.NOT_FOUND, "this service hosts op 'echo', not 'bow'"
        )
        await assert_serves_next_call(channel)


async def test_a_message_over_max_request_bytes_is_refused_and_the_next_call_is_served(
    op_servers: OpServers,
) -> None:
    _, target = await op_servers.start(GateOp(name="echo"), {"max_request_bytes": 2048})
    big = make_batch("echo", {"read": {"x": b"\x00" * 4096}})

    async with grpc.aio.insecure_channel(target) as channel:
        error = await refused(process_stub(channel)(big, timeout=CALL_S))
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        await assert_serves_next_call(channel)


class BigOutputOp(Op):
    """Answers ``size`` bytes per sample."""

    def process(self, feed_list: list[dict[str, Any]], typical_logid: int) -> list[dict[str, Any]]:
        return [{"echo": b"\x00" * feed["size"]} for feed in feed_list]


async def test_an_output_over_max_request_bytes_fails_its_sample_alone(op_servers: OpServers) -> None:
    # The reply is limited by max_request_bytes too: one sample's big output must not
    # take the other samples of its batch down with it.
    _, target = await op_servers.start(BigOutputOp(name="big"), {"max_request_bytes": 2048})
    batch = make_batch("big", {"read": {"size": 10}}, {"read": {"size": 4096}}, {"read": {"size": 10}})

    async with grpc.aio.insecure_channel(target) as channel:
        reply = await process_stub(channel)(batch, timeout=CALL_S)

    assert [output(reply.results[i]) for i in (0, 2)] == [{"echo": b"\x00" * 10}] * 2
    bad = reply.results[1]
    assert bad.err_no == 3
    assert bad.err_msg.startswith("op 'big' output: ")
    assert bad.err_msg.endswith("do not fit in the reply (max_request_bytes 2048); lower batch_size or raise max_request_bytes")
    assert not bad.HasField("output")


async def test_a_deadline_shorter_than_the_op_is_exceeded_and_the_next_call_is_served(
    op_servers: OpServers,
) -> None:
    op = GateOp(name="echo")
    _, target = await op_servers.start(op)
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            slow = make_batch("echo", {"read": {"x": 1, "slow": True}})
            error = await refused(process_stub(channel)(slow, timeout=0.2))
            assert error.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert op.entered.is_set()  # it expired while the op was running
            assert not op.gate.is_set()

            op.gate.set()
            await assert_serves_next_call(channel)
    finally:
        op.gate.set()


# Health and reflection -----------------------------------------------------------------------


async def test_health_is_not_serving_and_calls_are_unavailable_until_init_op_finished(
    op_servers: OpServers,
) -> None:
    op = SlowInitOp(name="warm")
    server = op_servers.build(op)
    starting = asyncio.create_task(server.start())
    try:
        await until(op.init_entered.is_set, "init_op to start")  # after the server listens
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            assert await health_status(channel) == NOT_SERVING
            assert await health_status(channel, SERVICE) == NOT_SERVING
            error = await refused(process_stub(channel)(make_batch("warm", {"read": {"x": 1}}), timeout=CALL_S))
            assert (error.code(), error.details()) == (
                grpc.StatusCode.UNAVAILABLE, "op service 'warm' is not serving (starting or draining)"
            )
            assert not starting.done()

            op.init_gate.set()
            assert await asyncio.wait_for(starting, DEADLINE_S) == server.port
            assert await health_status(channel) == SERVING
            assert await health_status(channel, SERVICE) == SERVING
            await assert_serves_next_call(channel, "warm")
    finally:
        op.init_gate.set()
        await asyncio.wait_for(asyncio.shield(starting), DEADLINE_S)


async def reflect(channel: grpc.aio.Channel, request: reflection_pb2.ServerReflectionRequest) -> Any:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    replies = [reply async for reply in stub.ServerReflectionInfo(iter([request]), timeout=CALL_S)]
    assert len(replies) == 1
    return replies[0]


async def test_reflection_lists_and_describes_the_op_service(op_servers: OpServers) -> None:
    _, target = await op_servers.start(GateOp(name="echo"))

    async with grpc.aio.insecure_channel(target) as channel:
        listed = await reflect(channel, reflection_pb2.ServerReflectionRequest(list_services=""))
        described = await reflect(channel, reflection_pb2.ServerReflectionRequest(file_containing_symbol=SERVICE))

    names = {service.name for service in listed.list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health"} <= names
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in described.file_descriptor_response.file_descriptor_proto
    ]
    (service,) = [s for f in files if f.package == "pipeserve.v1" for s in f.service if s.name == "OpService"]
    (method,) = service.method
    assert (method.name, method.input_type, method.output_type) == (
        "Process", ".pipeserve.v1.OpBatch", ".pipeserve.v1.ResultBatch"
    )


# Drain ---------------------------------------------------------------------------------------


async def test_stop_drains_the_call_in_flight_and_refuses_new_ones(op_servers: OpServers) -> None:
    op = GateOp(name="echo")
    server, target = await op_servers.start(op, grace_s=5.0)
    stopping: asyncio.Task[None] | None = None
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            health = health_pb2_grpc.HealthStub(channel)
            watches = [health.Watch(health_pb2.HealthCheckRequest(service=name)) for name in ("", SERVICE)]
            for watch in watches:
                assert (await asyncio.wait_for(watch.read(), DEADLINE_S)).status == SERVING
            in_flight = asyncio.ensure_future(
                process_stub(channel)(make_batch("echo", {"read": {"x": 41, "slow": True}}), timeout=CALL_S)
            )
            await until(op.entered.is_set, "the batch to reach the op")

            stopping = asyncio.create_task(server.stop(grace_s=5))

            for watch in watches:
                assert (await asyncio.wait_for(watch.read(), DEADLINE_S)).status == NOT_SERVING
                watch.cancel()  # a watch is a call in flight too: let the drain not wait for it
            error = await refused(process_stub(channel)(make_batch("echo", {"read": {"x": 1}}), timeout=CALL_S))
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert not in_flight.done() and not stopping.done()

            op.gate.set()
            reply = await asyncio.wait_for(in_flight, DEADLINE_S)
            assert output(reply.results[0]) == {"echo": 41}
            # Well inside the 5 s grace: stop returns once the last call is done.
            await asyncio.wait_for(stopping, 4)
    finally:
        op.gate.set()
        if stopping is not None:
            await asyncio.wait_for(asyncio.shield(stopping), DEADLINE_S)


# Process workers -----------------------------------------------------------------------------


class WhereOp(Op):
    """Reports where it runs: process, worker index, device and runtime config."""

    def init_op(self) -> None:
        self.init_calls = getattr(self, "init_calls", 0) + 1
        self.report = {
            "pid": os.getpid(),
            "idx": self.concurrency_idx,
            "device": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "device_id": self.runtime_config.device_id,
            "device_type": int(self.runtime_config.device_type),
            "precision": self.runtime_config.precision,
        }

    def process(self, feed_list: list[dict[str, Any]], typical_logid: int) -> list[dict[str, Any]]:
        return [{**self.report, "init_calls": self.init_calls} for _ in feed_list]


@pytest.mark.skipif(sys.platform == "win32", reason="process workers fork")
async def test_process_workers_are_bound_to_devices_round_robin_and_init_once_each(op_servers: OpServers) -> None:
    op = WhereOp(name="where")
    config = {"op": {"where": {"is_thread_op": False, "concurrency": 2, "devices": "0,1", "precision": "fp16"}}}
    _, target = await op_servers.start(op, config)

    reports = []
    async with grpc.aio.insecure_channel(target) as channel:
        for i in range(4):
            reply = await process_stub(channel)(make_batch("where", {"read": {"x": i}}), timeout=CALL_S)
            reports.append(output(reply.results[0]))

    by_idx: dict[int, set[tuple[Any, ...]]] = {}
    for report in reports:
        by_idx.setdefault(report["idx"], set()).add(tuple(sorted(report.items())))
    assert sorted(by_idx) == [0, 1]
    for idx, seen in by_idx.items():
        (report,) = [dict(r) for r in seen]  # every call to a worker saw the same process
        assert (report["device"], report["device_id"]) == (str(idx), idx)
        assert (report["device_type"], report["precision"], report["init_calls"]) == (1, "fp16", 1)
    pids = {dict(next(iter(seen)))["pid"] for seen in by_idx.values()}
    assert len(pids) == 2 and os.getpid() not in pids
    assert not hasattr(op, "init_calls")  # the server's own copy never ran init_op


# load_op -------------------------------------------------------------------------------------

OPS_MODULE = '''
from pipeserve import Op


class EchoOp(Op):
    def process(self, feed_list, typical_logid):
        return [{"echo": feed["x"]} for feed in feed_list]


class NotAnOp:
    pass


class FailingInitOp(Op):
    def init_op(self):
        raise RuntimeError("the model could not be warmed up")
'''


@pytest.fixture
def lonely_ops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A module ``lonely_ops`` with EchoOp and NotAnOp, importable for this test only."""
    (tmp_path / "lonely_ops.py").write_text(OPS_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "lonely_ops"
    sys.modules.pop("lonely_ops", None)


def load_op_error(config: dict[str, Any], op_name: str = "echo", class_path: str | None = None) -> str:
    with pytest.raises(errors.ConfigError) as info:
        server_mod.load_op(config_mod.load({"rpc_port": 0, **config}), op_name, class_path)
    return str(info.value)


def test_load_op_builds_the_class_of_the_config_named_after_the_op(lonely_ops: str) -> None:
    config = config_mod.load({"rpc_port": 0, "op": {"echo": {"class": "lonely_ops:EchoOp"}}})

    op = server_mod.load_op(config, "echo")

    assert type(op).__name__ == "EchoOp" and op.name == "echo"
    assert isinstance(op, Op)


def test_load_op_prefers_the_class_given_on_the_command_line(lonely_ops: str) -> None:
    config = config_mod.load({"rpc_port": 0, "op": {"echo": {"class": "lonely_ops:NotAnOp"}}})

    assert type(server_mod.load_op(config, "echo", "lonely_ops:EchoOp")).__name__ == "EchoOp"


@pytest.mark.parametrize(
    ("config", "op_name", "class_path", "message"),
    [
        ({"op": {"echo": {"class": "lonely_ops:EchoOp"}, "bow": {}}}, "cnn", None,
         "<dict>: op.cnn: no such op (ops: bow, echo)"),
        ({}, "echo", None, "<dict>: op.echo: no such op (ops: none)"),
        ({"op": {"echo": {"concurrency": 2}}}, "echo", None,
         "<dict>: op.echo.class: required to serve the op alone, e.g. class: ops:BowOp"),
        ({"op": {"echo": {"class": "no_such_ops_module:EchoOp"}}}, "echo", None,
         "<dict>: op.echo.class: cannot import 'no_such_ops_module:EchoOp': ModuleNotFoundError: No module named 'no_such_ops_module'"),
        ({"op": {"echo": {"class": "lonely_ops:Missing"}}}, "echo", None,
         "<dict>: op.echo.class: cannot import 'lonely_ops:Missing': AttributeError: module 'lonely_ops' has no attribute 'Missing'"),
        ({"op": {"echo": {"class": "lonely_ops:NotAnOp"}}}, "echo", None,
         "<dict>: op.echo.class: 'lonely_ops:NotAnOp' is not an Op subclass"),
        ({"op": {"echo": {}}}, "echo", "lonely_ops:OPS_MODULE_IS_NOT_HERE",
         "<dict>: op.echo.class: cannot import 'lonely_ops:OPS_MODULE_IS_NOT_HERE': "
         "AttributeError: module 'lonely_ops' has no attribute 'OPS_MODULE_IS_NOT_HERE'"),
    ],
    ids=["unknown op", "no ops", "no class", "no module", "no attribute", "not an Op", "--class"],
)  # fmt: skip
def test_load_op_refuses_with_the_config_key_to_fix(
    lonely_ops: str, config: dict[str, Any], op_name: str, class_path: str | None, message: str
) -> None:
    assert load_op_error(config, op_name, class_path) == message


# The command ---------------------------------------------------------------------------------

BANNER = re.compile(r"^op service 'echo' serving on 127\.0\.0\.1:(\d+)$")


class Command:
    """``python -m pipeserve.cli opservice ...`` in ``cwd``, its stdout read by a thread."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "pipeserve.cli", "opservice", *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group: the fallback kill reaches its workers
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def port(self) -> int:
        """Read stdout until the banner; fail with what was printed otherwise."""
        deadline = time.monotonic() + START_DEADLINE_S
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                pytest.fail(f"no banner within {START_DEADLINE_S} s; stdout: {self.seen}")
            if line is None:
                self.proc.wait(STOP_DEADLINE_S)
                assert self.proc.stderr is not None
                stderr = self.proc.stderr.read()
                pytest.fail(f"exited with {self.proc.returncode}; stdout: {self.seen}; stderr: {stderr}")
            self.seen.append(line)
            if match := BANNER.match(line):
                return int(match.group(1))

    def terminate(self) -> int:
        """SIGTERM by PID; the exit code, which must come within the deadline."""
        os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the op service did not exit within {STOP_DEADLINE_S} s of SIGTERM")

    def kill(self) -> None:
        """Last resort in ``finally``: kill the process group we started, by its id."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(STOP_DEADLINE_S)
        self._reader.join(STOP_DEADLINE_S)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def write_project(folder: Path, op: dict[str, Any]) -> Path:
    """A user's folder: ``mymod.py`` with EchoOp beside ``config.yml``; returns the config."""
    (folder / "mymod.py").write_text(OPS_MODULE)
    config = folder / "config.yml"
    config.write_text(yaml.safe_dump({"http_port": 18080, "log_dir": str(folder / "logs"), "op": {"echo": op}}))
    return config


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is POSIX")
async def test_the_command_serves_the_op_of_the_config_until_sigterm(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    config = write_project(project, {"class": "mymod:EchoOp", "concurrency": 2})
    # Run from elsewhere: the op's module is found beside the config, not in the cwd.
    command = Command(["--config", str(config), "--op", "echo", "--port", "0", "--host", "127.0.0.1"], tmp_path)
    try:
        port = await asyncio.to_thread(command.port)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = await process_stub(channel)(make_batch("echo", {"read": {"x": "hi"}}), timeout=CALL_S)
            assert output(reply.results[0]) == {"echo": "hi"}
            assert await health_status(channel, SERVICE) == SERVING

        assert await asyncio.to_thread(command.terminate) == 0
    finally:
        command.kill()


def test_the_command_reports_a_config_error_on_stderr_with_exit_code_2(tmp_path: Path) -> None:
    config = write_project(tmp_path, {"concurrency": 2})

    done = subprocess.run(
        [sys.executable, "-m", "pipeserve.cli", "opservice", "--config", str(config), "--op", "echo", "--port", "0"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=START_DEADLINE_S,
    )

    assert done.returncode == 2
    assert done.stderr == "error: config.yml: op.echo.class: required to serve the op alone, e.g. class: ops:BowOp\n"
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("op", "code", "message"),
    [
        ({"class": "mymod:EchoOp", "local_service_conf": {"runtime": "onnx", "model_config": "missing.onnx"}}, 2,
         "error: op 'echo': local_service_conf.model_config: no model at '{dir}/missing.onnx', "
         "from 'missing.onnx' in '{dir}'\n"),
        ({"class": "mymod:FailingInitOp"}, 1, None),
    ],
    ids=["model missing", "init_op raises"],
)  # fmt: skip
def test_the_command_stops_cleanly_when_the_op_cannot_start(
    tmp_path: Path, op: dict[str, Any], code: int, message: str | None
) -> None:
    # A model that is not there is a config error like any other: one line, exit code 2.
    # Whatever the failure, the gRPC server that was already listening is stopped before
    # the event loop closes.
    config = write_project(tmp_path, op)

    done = subprocess.run(
        [sys.executable, "-m", "pipeserve.cli", "opservice", "--config", str(config), "--op", "echo", "--port", "0",
         "--host", "127.0.0.1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=START_DEADLINE_S,
    )  # fmt: skip

    assert done.returncode == code, done.stderr
    if message is not None:
        assert done.stderr == message.format(dir=tmp_path)
    assert "Event loop is closed" not in done.stderr
