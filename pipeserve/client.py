"""PipelineClient: the seeds' client (seed §3.5), over gRPC or HTTP.

``predict`` sends a feed dict (strings stay strings, numpy arrays travel as binary
tensors) and returns a :class:`PredictResult`: ``err_no``, ``err_msg`` and the values,
arrays back as numpy arrays. ``asyn=True`` returns a future instead. A call that cannot
reach the server answers ``err_no`` 5 (CLIENT_ERROR) with the reason, like any other
error, so callers check one thing.
"""

from __future__ import annotations

import concurrent.futures
import http.client
import itertools
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import grpc

from pipeserve import codec
from pipeserve.pipeline import errors, observe
from pipeserve.pipeline import profile as profile_mod
from pipeserve.proto.pipeserve.v1 import pipeline_service_pb2 as pb
from pipeserve.proto.pipeserve.v1 import pipeline_service_pb2_grpc as pb_grpc


class PredictResult(Mapping[str, Any]):
    """A response: ``err_no``, ``err_msg`` and the values by key.

    Reads as a mapping too: ``res["prediction"]``, and ``res["err_no"]`` /
    ``res["ecode"]`` / ``res["err_msg"]`` as older seed code does.
    """

    def __init__(
        self, err_no: int, err_msg: str, values: dict[str, Any], timeline: list[observe.StageTiming] | None = None
    ) -> None:
        self.err_no = err_no
        self.err_msg = err_msg
        self.outputs = values
        """The values by key (numpy arrays and strings)."""
        self.timeline = timeline or []
        """With ``predict(..., profile=True)``: the server's timeline of this request, every
        stage of every op (op services' stages with ``where="remote:<endpoint>"``) and the
        whole request (op ``DAG``, stage ``call``), in wall-clock nanoseconds."""

    def __getitem__(self, key: str) -> Any:
        if key in ("err_no", "ecode"):
            return self.err_no
        if key in ("err_msg", "error_info"):
            return self.err_msg
        return self.outputs[key]

    def __iter__(self) -> Iterator[str]:
        return iter(["err_no", "err_msg", *self.outputs])

    def __len__(self) -> int:
        return 2 + len(self.outputs)

    def __repr__(self) -> str:
        return f"PredictResult(err_no={self.err_no}, err_msg={self.err_msg!r}, outputs={self.outputs!r})"


class PipelineClient:
    """Client of a pipeserve gateway.

    Args:
        protocol: "grpc" (default) or "http".
        name: the service name, needed for HTTP (``/{name}/{method}``); optional for gRPC.
        method: the method (default "prediction").
        timeout_s: deadline of each call; None waits as long as the server takes.
        max_message_bytes: the largest response accepted.
    """

    def __init__(
        self,
        protocol: str = "grpc",
        *,
        name: str = "",
        method: str = "",
        timeout_s: float | None = None,
        max_message_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        if protocol not in ("grpc", "http"):
            raise ValueError(f"protocol must be 'grpc' or 'http', got {protocol!r}")
        self.protocol = protocol
        self.name = name
        self.method = method
        self.timeout_s = timeout_s
        self._max_bytes = max_message_bytes
        self._channel: grpc.Channel | None = None
        self._stub: Any = None
        self._endpoints: list[str] = []
        self._next_endpoint: Iterator[str] = iter(())
        self._local = threading.local()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None

    def connect(self, endpoints: Sequence[str]) -> None:
        """Use these ``host:port`` endpoints; calls are spread over them round robin."""
        if isinstance(endpoints, str) or not endpoints:
            raise ValueError(f"connect needs a list of 'host:port' endpoints, got {endpoints!r}")
        self.close()
        self._endpoints = list(endpoints)
        if self.protocol == "http":
            if not self.name:
                raise ValueError("HTTP needs the service name: PipelineClient('http', name='...')")
            self._next_endpoint = itertools.cycle(self._endpoints)
            return
        target = "ipv4:" + ",".join(endpoints) if len(endpoints) > 1 else endpoints[0]
        self._channel = grpc.insecure_channel(
            target,
            options=[
                ("grpc.lb_policy_name", "round_robin"),
                ("grpc.max_receive_message_length", self._max_bytes),
                ("grpc.max_send_message_length", self._max_bytes),
            ],
        )
        self._stub = pb_grpc.PipelineServiceStub(self._channel)  # type: ignore[no-untyped-call]

    def predict(
        self,
        feed_dict: Mapping[str, Any],
        fetch: Sequence[str] | None = None,
        asyn: bool = False,
        batch: bool = False,
        profile: bool = False,
        log_id: int | None = None,
    ) -> PredictResult | concurrent.futures.Future[PredictResult]:
        """Run the pipeline on ``feed_dict``.

        Args:
            feed_dict: values by key: str, numpy arrays, numbers or lists of numbers.
            fetch: keep only these keys of the answer (all when None).
            asyn: return a future whose ``result()`` is the PredictResult.
            batch: the arrays carry a leading batch dimension (one request, many rows).
            profile: ask for the server's timeline of this request: it is printed to standard
                output as a profile line (seed §6.3; the Analyst reads it) and returned in
                ``PredictResult.timeline``.
            log_id: the caller's id for this request, found in every server log line about it.
        """
        request = codec.request_from_values(feed_dict, batch=batch, name=self.name, method=self.method, logid=log_id)
        if profile:
            request.profile = True
        if self.protocol == "http":
            if asyn:
                return self._executor().submit(self._http_call, request, fetch)
            return self._http_call(request, fetch)
        if self._stub is None:
            raise RuntimeError("call connect([...]) first")
        if not asyn:
            try:
                return _result(self._stub.inference(request, timeout=self.timeout_s), fetch)
            except grpc.RpcError as exc:
                return _client_error(exc)
        outcome: concurrent.futures.Future[PredictResult] = concurrent.futures.Future()
        call = self._stub.inference.future(request, timeout=self.timeout_s)

        def done(call: Any) -> None:
            try:
                outcome.set_result(_result(call.result(), fetch))
            except grpc.RpcError as exc:
                outcome.set_result(_client_error(exc))
            except Exception as exc:  # noqa: BLE001 - hand any failure to the caller
                outcome.set_exception(exc)

        call.add_done_callback(done)
        return outcome

    def close(self) -> None:
        """Close connections; the client can connect again."""
        if self._channel is not None:
            self._channel.close()
            self._channel = None
            self._stub = None
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    def __enter__(self) -> PipelineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # HTTP -----------------------------------------------------------------------------------

    def _http_call(self, request: pb.Request, fetch: Sequence[str] | None) -> PredictResult:
        endpoint = next(self._next_endpoint)
        path = f"/{self.name}/{self.method or 'prediction'}"
        body = codec.request_to_json(request)
        try:
            conn = self._http_connection(endpoint)
            conn.request("POST", path, body, {"Content-Type": "application/json"})
            reply = conn.getresponse()
            payload = reply.read()
        except (OSError, http.client.HTTPException) as exc:
            self._local.__dict__.pop(endpoint, None)
            return PredictResult(errors.ErrCode.CLIENT_ERROR, f"cannot reach {endpoint}: {exc}", {})
        try:
            return _result(codec.response_from_json(payload), fetch)
        except ValueError as exc:
            return PredictResult(
                errors.ErrCode.CLIENT_ERROR, f"{endpoint} answered HTTP {reply.status} with {exc}", {}
            )

    def _http_connection(self, endpoint: str) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = self._local.__dict__.get(endpoint)
        if conn is None:
            host, _, port = endpoint.rpartition(":")
            conn = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=self.timeout_s)
            self._local.__dict__[endpoint] = conn
        return conn

    def _executor(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(8, thread_name_prefix="pipeserve-client")
        return self._pool


def _result(response: pb.Response, fetch: Sequence[str] | None) -> PredictResult:
    values = codec.values_from_response(response)
    if fetch is not None:
        values = {key: value for key, value in values.items() if key in fetch}
    if not response.timeline:
        return PredictResult(response.err_no, response.err_msg, values)
    values.pop(profile_mod.PROFILE_KEY, None)  # the same timeline, for the seeds' client
    timeline = [
        observe.StageTiming(
            span.op, span.stage, tuple(span.data_ids), tuple(span.log_ids), span.start_ns, span.end_ns, span.where
        )
        for span in response.timeline
    ]
    call = timeline[0]
    data_id = call.data_ids[0] if call.data_ids else 0
    log_id = call.log_ids[0] if call.log_ids else 0
    sys.stdout.write(profile_mod.format_line(data_id, log_id, timeline) + "\n")
    return PredictResult(response.err_no, response.err_msg, values, timeline)


def _client_error(exc: grpc.RpcError) -> PredictResult:
    code = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else str(exc)
    name = code.name if code is not None else "error"
    return PredictResult(errors.ErrCode.CLIENT_ERROR, f"gRPC call failed: {name}: {details}", {})
