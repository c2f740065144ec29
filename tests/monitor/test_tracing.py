"""OpenTelemetry: one trace per request, from the caller through the gateway to the op service.

Aspects, with the SDK's in-memory exporter and a real op service on loopback:
- an HTTP ``traceparent`` is continued: the gateway's request span is its child, each op a
  child of the request, each stage a child of its op;
- the op service's span for the sample is a child of the gateway's span of that op, in the
  same trace, carried in gRPC metadata;
- the same through the gRPC front door, from the call's metadata;
- two requests of two traces batched together: the op service opens one span per sample,
  each in its own trace under its request's op span;
- without ``OTEL_EXPORTER_OTLP_ENDPOINT`` nothing is traced.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pipeserve import Op, RequestOp, ResponseOp
from pipeserve.monitor import tracing
from pipeserve.opservice.server import OpServer, Settings
from pipeserve.pipeline import config as config_mod
from pipeserve.proto.pipeserve.v1 import pipeline_service_pb2 as pb
from pipeserve.proto.pipeserve.v1 import pipeline_service_pb2_grpc as pb_grpc

HTTP_TRACE, HTTP_PARENT = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
GRPC_TRACE, GRPC_PARENT = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
NAMES = {"t request", "op tag", "tag in", "tag out", "tag (op service)", "tag prep (op service)"}


class TagOp(Op):
    def preprocess(self, input_dicts, data_id, log_id):
        ((_, values),) = input_dicts.items()
        return {"x": values["x"]}, False, None, ""


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """Spans of this test, in memory; tracing turned on as users turn it on."""
    monkeypatch.setenv(tracing.ENDPOINT_ENV, "http://127.0.0.1:9")  # never used: the SDK provider below is
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()


@pytest.fixture
async def op_server() -> AsyncIterator[list[OpServer]]:
    started: list[OpServer] = []
    yield started
    for server in started:
        await server.stop(grace_s=1)


def wait_for(exporter: InMemorySpanExporter, trace_hex: str, names: set[str]) -> dict[str, ReadableSpan]:
    """The finished spans of one trace, by name, once every name in ``names`` is there."""
    deadline = time.monotonic() + 10
    while True:
        found = {
            span.name: span for span in exporter.get_finished_spans() if span.context.trace_id == int(trace_hex, 16)
        }
        if names <= set(found):
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"spans of trace {trace_hex}: {sorted(found)}, missing {sorted(names - set(found))}")
        time.sleep(0.02)  # sync-ok: the polling interval of a wait with a deadline


def parent_of(span: ReadableSpan) -> int:
    assert span.parent is not None, span.name
    return span.parent.span_id


async def start(serve: Any, op_servers: list[OpServer]) -> Any:
    config = {"op": {"tag": {"batch_size": 4, "auto_batching_timeout": 5, "timeout": 2000}}}
    server = OpServer(TagOp(name="tag"), config_mod.load({"http_port": 0, **config}), Settings(host="127.0.0.1"))
    port = await server.start()
    op_servers.append(server)
    config["op"]["tag"]["server_endpoints"] = [f"127.0.0.1:{port}"]
    return await serve(ResponseOp(input_ops=[TagOp(name="tag", input_ops=[RequestOp()])]), config)


def check_trace(found: dict[str, ReadableSpan], parent_hex: str, endpoint: str) -> None:
    request, op, remote = found["t request"], found["op tag"], found["tag (op service)"]
    assert parent_of(request) == int(parent_hex, 16)
    assert request.kind == trace.SpanKind.SERVER
    assert request.attributes is not None and request.attributes["pipeserve.err_no"] == 0
    assert parent_of(op) == request.context.span_id
    for stage in ("in", "out", "in (op service)", "prep (op service)", "midp (op service)", "postp (op service)"):
        assert parent_of(found[f"tag {stage}"]) == op.context.span_id, stage
    assert found["tag in"].attributes == {"pipeserve.stage": "in", "pipeserve.where": "local"}
    assert found["tag prep (op service)"].attributes == {"pipeserve.stage": "prep", "pipeserve.where": "remote:" + endpoint}
    assert parent_of(remote) == op.context.span_id
    assert remote.kind == trace.SpanKind.SERVER
    assert request.start_time <= op.start_time <= remote.start_time <= remote.end_time <= op.end_time <= request.end_time
    assert op.start_time == found["tag in"].start_time and op.end_time == found["tag out"].end_time


def endpoint(op_servers: list[OpServer]) -> str:
    return f"127.0.0.1:{op_servers[0].port}"


async def test_an_http_traceparent_is_continued_through_the_gateway_into_the_op_service(
    serve: Any, op_server: list[OpServer], spans: InMemorySpanExporter
) -> None:
    running = await start(serve, op_server)
    async with running.http() as http:
        reply = await http.post(
            running.url(), json={"key": ["x"], "value": ["1"]},
            headers={"traceparent": f"00-{HTTP_TRACE}-{HTTP_PARENT}-01"},
        )  # fmt: skip
    assert reply.json()["err_no"] == 0
    check_trace(wait_for(spans, HTTP_TRACE, NAMES), HTTP_PARENT, endpoint(op_server))


async def test_grpc_metadata_is_continued_the_same_way(
    serve: Any, op_server: list[OpServer], spans: InMemorySpanExporter
) -> None:
    running = await start(serve, op_server)
    async with grpc.aio.insecure_channel(running.grpc_target) as channel:
        stub = pb_grpc.PipelineServiceStub(channel)  # type: ignore[no-untyped-call]
        response = await stub.inference(
            pb.Request(key=["x"], value=["1"], name="t", method="prediction"),
            metadata=(("traceparent", f"00-{GRPC_TRACE}-{GRPC_PARENT}-01"),),
        )
    assert response.err_no == 0
    check_trace(wait_for(spans, GRPC_TRACE, NAMES), GRPC_PARENT, endpoint(op_server))


async def test_without_the_endpoint_variable_nothing_is_traced(
    serve: Any, op_server: list[OpServer], spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(tracing.ENDPOINT_ENV)
    running = await start(serve, op_server)
    assert not running.server._serving.traced
    async with running.http() as http:
        reply = await http.post(running.url(), json={"key": ["x"], "value": ["1"]})
    assert reply.json()["err_no"] == 0
    assert spans.get_finished_spans() == ()


async def test_each_sample_of_a_batch_carries_its_own_trace_into_the_op_service(
    serve: Any, op_server: list[OpServer], spans: InMemorySpanExporter
) -> None:
    config = {"op": {"tag": {"batch_size": 2, "auto_batching_timeout": 60_000, "timeout": 2000}}}
    server = OpServer(TagOp(name="tag"), config_mod.load({"http_port": 0, **config}), Settings(host="127.0.0.1"))
    port = await server.start()
    op_server.append(server)
    config["op"]["tag"]["server_endpoints"] = [f"127.0.0.1:{port}"]
    running = await serve(ResponseOp(input_ops=[TagOp(name="tag", input_ops=[RequestOp()])]), config)
    callers = [(HTTP_TRACE, HTTP_PARENT), (GRPC_TRACE, GRPC_PARENT)]  # two traces, one batch of two

    async with running.http() as http:
        replies = await asyncio.gather(*(
            http.post(running.url(), json={"key": ["x"], "value": [str(i)]}, headers={"traceparent": f"00-{t}-{p}-01"})
            for i, (t, p) in enumerate(callers)
        ))  # fmt: skip
    assert [reply.json()["err_no"] for reply in replies] == [0, 0]

    names = {"t request", "op tag", "tag (op service)"}
    for trace_hex, parent_hex in callers:
        found = wait_for(spans, trace_hex, names)
        request, op, remote = found["t request"], found["op tag"], found["tag (op service)"]
        assert parent_of(request) == int(parent_hex, 16)
        assert op.attributes is not None and op.attributes["pipeserve.batch_size"] == 2
        assert parent_of(op) == request.context.span_id and parent_of(remote) == op.context.span_id
        assert remote.attributes is not None and remote.attributes["pipeserve.batch_size"] == 2
    remotes = [s for s in spans.get_finished_spans() if s.name == "tag (op service)"]
    assert len(remotes) == 2 and {s.context.trace_id for s in remotes} == {int(t, 16) for t, _ in callers}
