"""HTTP front door: ``POST /{name}/{method}`` with the Request/Response as JSON.

The prediction route is a bare ASGI handler with orjson: a web framework's per-request
validation costs several times the pipeline's own work for small requests. FastAPI owns
the rest of the surface (health, readiness, the OpenAPI document, which also describes
the prediction route), with the status page, ``/status.json`` and Prometheus ``/metrics``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import fastapi
import orjson
import pydantic

from pipeserve import codec
from pipeserve.gateway import core
from pipeserve.monitor import metrics as metrics_mod
from pipeserve.monitor import shape, status_page, tracing
from pipeserve.pipeline import errors
from pipeserve.proto.pipeserve.v1 import pipeline_service_pb2 as pb

_LOGGER = logging.getLogger("pipeserve.gateway")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

_JSON_HEADERS = [(b"content-type", b"application/json")]


class HttpApp:
    """The ASGI application of the gateway."""

    def __init__(self, gateway: core.Gateway, metrics: metrics_mod.PipelineMetrics | None = None) -> None:
        self.gateway = gateway
        self.max_request_bytes = gateway.config.max_request_bytes
        self.api = build_api(gateway, metrics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            parts = scope["path"].strip("/").split("/")
            if len(parts) == 2:
                await self._predict(scope, receive, send, parts[0], parts[1])
                return
        await self.api(scope, receive, send)

    async def _predict(self, scope: Scope, receive: Receive, send: Send, name: str, method: str) -> None:
        gateway = self.gateway
        try:
            body = await self._read_body(scope, receive)
            request: pb.Request | codec.RequestFields
            if gateway.plain_request:  # the values are all the RequestOp wants: no Request message
                request = codec.fields_from_json(body, self.max_request_bytes)
            else:
                request = codec.request_from_json(body, self.max_request_bytes)
                request.name = name
                request.method = method
                if not request.clientip and scope.get("client"):
                    request.clientip = scope["client"][0]
            payload, error = gateway.pack_json(await gateway.run(request, name, method))
            status = 200 if error is None else error.http_status
        except errors.PipelineError as error:
            payload, status = _error_body(error), error.http_status
        except Exception:  # noqa: BLE001 - the front door must answer whatever happened
            _LOGGER.exception("HTTP %s %s failed", scope["method"], scope["path"])
            internal = errors.OpError("internal error in the gateway (see pipeline.log.wf)")
            payload, status = _error_body(internal), internal.http_status
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*_JSON_HEADERS, (b"content-length", str(len(payload)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": payload})

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.max_request_bytes
        for header, value in scope["headers"]:
            if header == b"content-length" and value.isdigit() and int(value) > limit:
                raise errors.PayloadTooLargeError(
                    f"request body: {int(value)} bytes is over the limit of {limit}"
                )
        message = await receive()
        body: bytes = message.get("body", b"")
        if not message.get("more_body"):
            return body
        chunks = [body]
        size = len(body)
        while message.get("more_body"):
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise errors.PayloadTooLargeError(f"request body: more than {limit} bytes is over the limit")
            chunks.append(chunk)
        return b"".join(chunks)


class TracedHttpApp(HttpApp):
    """:class:`HttpApp` that hands each prediction's headers (``traceparent``) to the tracing."""

    async def _predict(self, scope: Scope, receive: Receive, send: Send, name: str, method: str) -> None:
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
        token = tracing.carry(headers)
        try:
            await super()._predict(scope, receive, send, name, method)
        finally:
            tracing.forget(token)


def _error_body(error: errors.PipelineError) -> bytes:
    return orjson.dumps({"err_no": error.code, "err_msg": error.message, "key": [], "value": [], "tensors": {}})


# The rest of the surface --------------------------------------------------------------------


class TensorJson(pydantic.BaseModel):
    """An array: numpy dtype name, shape, and the C-order little-endian bytes in base64."""

    dtype: str
    shape: list[int]
    data: str


class RequestJson(pydantic.BaseModel):
    """The seeds' Request as JSON: paired key/value strings, plus tensors by key."""

    key: list[str] = []
    value: list[str] = []
    logid: int = 0
    clientip: str = ""
    tensors: dict[str, TensorJson] = {}
    batch: bool = False


class ResponseJson(pydantic.BaseModel):
    """The seeds' Response as JSON: err_no 0 on success, else err_msg says what went wrong."""

    err_no: int
    err_msg: str
    key: list[str]
    value: list[str]
    tensors: dict[str, TensorJson]


def build_api(gateway: core.Gateway, metrics: metrics_mod.PipelineMetrics | None = None) -> fastapi.FastAPI:
    """Health, readiness, the documented routes, and the status routes (``metrics`` on or off)."""
    api = fastapi.FastAPI(
        title="pipeserve gateway",
        description=f"Serves the pipeline '{gateway.name}'.",
        docs_url="/docs",
    )

    @api.get("/healthz", summary="Liveness: the process serves HTTP")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @api.get("/readyz", summary="Readiness: every op's init_op has finished and the server is not draining")
    async def readyz() -> fastapi.responses.JSONResponse:
        if gateway.ready:
            return fastapi.responses.JSONResponse({"status": "ready"})
        reason = "draining" if gateway.draining else "ops are running init_op"
        return fastapi.responses.JSONResponse({"status": "not ready", "reason": reason}, status_code=503)

    @api.post(
        "/{name}/{method}",
        response_model=ResponseJson,
        summary="Run the pipeline on one request",
        description=f"`name` is '{gateway.name}', `method` one of {', '.join(gateway.methods)}.",
    )
    async def predict(name: str, method: str, request: RequestJson) -> ResponseJson:  # pragma: no cover
        raise AssertionError("served by HttpApp before FastAPI sees it")

    _add_status_routes(api, gateway, metrics)
    return api


_METRICS_OFF = "metrics are off: set metrics: true in config.yml"


def _add_status_routes(
    api: fastapi.FastAPI, gateway: core.Gateway, metrics: metrics_mod.PipelineMetrics | None
) -> None:
    dag = shape.from_graph(gateway.executor.graph, gateway.config)
    page = status_page.page(dag, gateway.name)

    @api.get("/", summary="Status page: the DAG with live per-op figures", response_class=fastapi.responses.HTMLResponse)
    async def status() -> fastapi.responses.HTMLResponse:
        return fastapi.responses.HTMLResponse(page)

    @api.get("/status.json", summary="Live figures: per op QPS, p50/p99, queue depth and errors")
    async def status_json() -> dict[str, Any]:
        if metrics is None:
            return {"service": gateway.name, "metrics": False, "reason": _METRICS_OFF}
        return {"metrics": True, **metrics.live(dag.ops)}

    @api.get("/metrics", summary="Prometheus metrics", response_class=fastapi.responses.PlainTextResponse)
    async def prometheus() -> fastapi.Response:
        if metrics is None:
            return fastapi.responses.PlainTextResponse(_METRICS_OFF + "\n", status_code=404)
        return fastapi.Response(metrics.exposition(), media_type=metrics_mod.CONTENT_TYPE)
