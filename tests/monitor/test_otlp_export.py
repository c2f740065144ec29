"""With ``OTEL_EXPORTER_OTLP_ENDPOINT`` set and no tracer provider of their own, a gateway and
its op service send their spans over OTLP (HTTP/protobuf) to that endpoint.

A gateway process and a ``pipeserve opservice`` process (the ``otel`` extra's exporter, the
SDK's batch processor) send to an OTLP receiver the test runs on loopback, which decodes
each export with the OTLP protobuf messages. Aspects:
- the request span continues the caller's ``traceparent``, and its op span is its child;
- the op service's span of the sample is a child of the gateway's op span, in the same
  trace: the context crossed processes in gRPC metadata;
- the spans name their service (resource ``service.name``): the pipeline, and the
  pipeline and op for the op service.
"""

from __future__ import annotations

import http.server
import os
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

if TYPE_CHECKING:  # fixtures' types, from tests/conftest.py
    from conftest import StartChild, StartOpService

TRACE, PARENT = "5bf92f3577b34da6a3ce929d0e0e4799", "10f067aa0ba902b7"
DEADLINE_S = 30

GATEWAY = '''
import asyncio
import signal
import sys

from pipeserve import Op, PipelineServer, RequestOp, ResponseOp


class TagOp(Op):
    def preprocess(self, input_dicts, data_id, log_id):
        ((_, values),) = input_dicts.items()
        return {"x": values["x"]}, False, None, ""


async def main():
    server = PipelineServer(name="otlp")
    server.set_response_op(ResponseOp(input_ops=[TagOp(name="tag", input_ops=[RequestOp()])]))
    server.prepare_server(yml_dict={
        "host": "127.0.0.1", "http_port": 0, "rpc_port": 0, "log_dir": sys.argv[1],
        "op": {"tag": {"server_endpoints": [sys.argv[2]], "timeout": 5000}},
    })
    endpoints = await server.start()
    print(f"serving on http port {endpoints.http_port}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await server.stop(grace_s=1)


asyncio.run(main())
'''


OPS_MODULE = '''
from pipeserve import Op


class TagOp(Op):
    def preprocess(self, input_dicts, data_id, log_id):
        ((_, values),) = input_dicts.items()
        return {"x": values["x"]}, False, None, ""
'''


class Receiver(http.server.ThreadingHTTPServer):
    """An OTLP/HTTP trace receiver: every span it is sent, as (name, trace, span, parent, service)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.spans: queue.Queue[dict[str, Any]] = queue.Queue()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
        body = self.rfile.read(int(self.headers["Content-Length"]))
        assert self.path == "/v1/traces" and self.headers["Content-Type"] == "application/x-protobuf"
        export = ExportTraceServiceRequest.FromString(body)
        for resource_spans in export.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.server.spans.put({
                        "name": span.name, "trace": span.trace_id.hex(), "span": span.span_id.hex(),
                        "parent": span.parent_span_id.hex(), "service": resource.get("service.name"),
                    })  # fmt: skip
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
        return None


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_a_gateway_and_its_op_service_send_one_trace_over_otlp(
    tmp_path: Path, receiver: Receiver, child: StartChild, op_service: StartOpService
) -> None:
    (tmp_path / "gateway.py").write_text(GATEWAY)
    (tmp_path / "tagops.py").write_text(OPS_MODULE)
    (tmp_path / "config.yml").write_text("name: otlp\nhttp_port: 0\nop:\n  tag:\n    class: tagops:TagOp\n")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{receiver.server_address[1]}",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    service = op_service("config.yml", "tag", "--grace", "1", cwd=tmp_path, env=env)
    gateway = child([str(tmp_path / "gateway.py"), str(tmp_path / "logs"), f"127.0.0.1:{service.port}"], tmp_path, env)
    http_port = gateway.wait_for(r"serving on http port (\d+)").group(1)

    reply = httpx.post(
        f"http://127.0.0.1:{http_port}/otlp/prediction", json={"key": ["x"], "value": ["1"]},
        headers={"traceparent": f"00-{TRACE}-{PARENT}-01"}, timeout=DEADLINE_S,
    )  # fmt: skip
    assert reply.json()["err_no"] == 0

    names = {"otlp request", "op tag", "tag in", "tag (op service)"}
    found: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + DEADLINE_S
    while not names <= set(found) and time.monotonic() < deadline:
        try:
            span = receiver.spans.get(timeout=0.1)
        except queue.Empty:
            continue
        if span["trace"] == TRACE:
            found[span["name"]] = span
    assert names <= set(found), sorted(found)
    request, op, remote = found["otlp request"], found["op tag"], found["tag (op service)"]
    assert request["parent"] == PARENT
    assert op["parent"] == request["span"] and found["tag in"]["parent"] == op["span"]
    assert remote["parent"] == op["span"]
    assert {name: span["service"] for name, span in found.items() if name in names} == {
        "otlp request": "otlp", "op tag": "otlp", "tag in": "otlp", "tag (op service)": "otlp-tag",
    }  # fmt: skip
