"""OpenTelemetry spans of requests and ops, across the gateway and its op services.

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (and the ``otel`` extra installed): then
the gateway and each op service send spans over OTLP (HTTP/protobuf, the standard
``OTEL_*`` variables apply), unless the application already installed an SDK tracer
provider, which is used as it is.

- The gateway opens one span per request, continuing the caller's trace from the HTTP
  ``traceparent`` header or the gRPC metadata of the same name.
- Each op a request went through is a child span (from the op's ``in`` to its ``out``),
  with one child per stage; stages an op service ran carry ``pipeserve.where``.
- A batch sent to an op service carries every sample's context in gRPC metadata
  (``traceparent`` for the first sample, ``pipeserve-traceparents`` for all, in batch order);
  the op service opens one span per sample, a child of that sample's span of the op.

Stage spans, and the spans of ops that run in the gateway, are made when the op's stages
are reported, after it ran, with the stages' own start and end times; the span of an op
in op services opens when its batch is sent, so that it can be the remote span's parent.
"""

from __future__ import annotations

import contextvars
import functools
import os
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any

from pipeserve.pipeline import channel, observe

ENDPOINT_ENV = "OTEL_EXPORTER_OTLP_ENDPOINT"
SAMPLES_KEY = "pipeserve-traceparents"
"""gRPC metadata with the trace context of every sample of a batch, comma-separated."""
TRACER_NAME = "pipeserve"
_RUNS_LIMIT = 65536

_carrier: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar("pipeserve_carrier", default=None)


def enabled() -> bool:
    """Whether spans are wanted: ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set."""
    return bool(os.environ.get(ENDPOINT_ENV))


def setup(service_name: str) -> bool:
    """Make sure spans go somewhere; returns whether tracing is on.

    Installs an SDK tracer provider exporting over OTLP unless one is installed already.

    Raises:
        RuntimeError: Tracing is asked for but the ``otel`` extra is missing.
    """
    if not enabled():
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.sdk import resources
        from opentelemetry.sdk import trace as sdk_trace
        from opentelemetry.sdk.trace import export
    except ImportError as exc:
        raise RuntimeError(
            f"{ENDPOINT_ENV} is set but OpenTelemetry is not installed: pip install 'pipeserve[otel]'"
        ) from exc
    if not isinstance(trace.get_tracer_provider(), sdk_trace.TracerProvider):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        resource = resources.Resource.create({"service.name": service_name})
        provider = sdk_trace.TracerProvider(resource=resource)
        provider.add_span_processor(export.BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
    return True


def carry(carrier: Mapping[str, str] | None) -> contextvars.Token[Mapping[str, str] | None]:
    """Remember the incoming headers (or gRPC metadata) of the request this task serves."""
    return _carrier.set(carrier)


def forget(token: contextvars.Token[Mapping[str, str] | None]) -> None:
    """Undo :func:`carry`."""
    _carrier.reset(token)


RunFn = Callable[..., Awaitable[channel.ChannelData]]


class GatewayTracing:
    """Spans of a gateway's requests and ops; an observer of its executor.

    Args:
        service: The pipeline's name, in span names.
    """

    def __init__(self, service: str) -> None:
        from opentelemetry import trace

        self.service = service
        self.tracer = trace.get_tracer(TRACER_NAME)
        self.requests: dict[int, Any] = {}
        """The open request span of each data_id in the DAG."""
        self._runs: dict[tuple[str, int], list[observe.StageTiming]] = {}
        self._open_ops: dict[tuple[str, int], Any] = {}
        """Spans of ops in op services, opened when their batch was sent, by (op, data_id)."""

    def install(self, executor: Any) -> None:
        """Trace ``executor``'s requests and ops, and carry contexts to its op services."""
        executor.run = self.wrap(executor.run)
        executor.observers.add(self)
        for name, node in executor.nodes.items():
            if hasattr(node.workers, "trace_metadata"):  # an op that runs in op services
                node.workers.trace_metadata = functools.partial(self.metadata_for, op=name)

    def wrap(self, run: RunFn) -> RunFn:
        """``executor.run`` inside a request span that continues the caller's trace."""
        from opentelemetry import propagate, trace

        tracer, requests, name = self.tracer, self.requests, f"{self.service} request"

        async def traced(values: Any, data_id: int, log_id: int, *args: Any, **kwargs: Any) -> channel.ChannelData:
            parent = propagate.extract(_carrier.get() or {})
            attributes = {"pipeserve.data_id": data_id, "pipeserve.log_id": log_id}
            with tracer.start_as_current_span(
                name, context=parent, kind=trace.SpanKind.SERVER, attributes=attributes
            ) as span:
                requests[data_id] = span
                try:
                    result = await run(values, data_id, log_id, *args, **kwargs)
                finally:
                    requests.pop(data_id, None)
                span.set_attribute("pipeserve.err_no", result.error_code)
                if result.error is not None:
                    span.set_status(trace.Status(trace.StatusCode.ERROR, result.error.message))
                return result

        return traced

    def metadata_for(self, samples: Sequence[Any], op: str) -> list[tuple[str, str]]:
        """gRPC metadata carrying, for each sample, the context of its span of ``op``.

        The op's span opens here, at the batch's arrival at the op (its ``in`` stage), so
        that the op service's spans are its children; it closes with the op's ``out``.
        A retried batch keeps the spans it opened.
        """
        from opentelemetry import propagate, trace

        arrived = min((sample.queued_ns for sample in samples if sample.queued_ns), default=time.time_ns())
        parents = []
        for sample in samples:
            carrier: dict[str, str] = {}
            key = (op, sample.data_id)
            span = self._open_ops.get(key)
            request = self.requests.get(sample.data_id)
            if span is None and request is not None:
                if len(self._open_ops) > _RUNS_LIMIT:
                    self._open_ops.clear()
                span = self._open_ops[key] = self.tracer.start_span(
                    f"op {op}", context=trace.set_span_in_context(request), start_time=arrived,
                    attributes={"pipeserve.op": op, "pipeserve.batch_size": len(samples)},
                )  # fmt: skip
            if span is not None:
                propagate.inject(carrier, context=trace.set_span_in_context(span))
            parents.append(carrier.get("traceparent", ""))
        metadata = [(SAMPLES_KEY, ",".join(parents))]
        if parents and parents[0]:
            metadata.append(("traceparent", parents[0]))
        return metadata

    # Observer -------------------------------------------------------------------------------

    def on_stage(self, timing: observe.StageTiming) -> None:
        """Collect an op run's stages; at its local ``out``, make the spans."""
        key = (timing.op, timing.data_ids[0])
        if timing.stage == "in" and not timing.where:
            if len(self._runs) > _RUNS_LIMIT:  # runs whose out never came (a request that timed out)
                self._runs.clear()
            self._runs[key] = [timing]
            return
        run = self._runs.get(key)
        if run is None:
            return
        run.append(timing)
        if timing.stage == "out" and not timing.where:
            del self._runs[key]
            self._spans(run)

    def _spans(self, run: list[observe.StageTiming]) -> None:
        from opentelemetry import trace

        first, last = run[0], run[-1]
        for data_id in first.data_ids:
            request = self.requests.get(data_id)
            if request is None:
                continue
            op_span = self._open_ops.pop((first.op, data_id), None)
            if op_span is None:
                attributes: dict[str, str | int] = {"pipeserve.op": first.op, "pipeserve.batch_size": len(first.data_ids)}
                op_span = self.tracer.start_span(
                    f"op {first.op}", context=trace.set_span_in_context(request),
                    start_time=first.start_ns, attributes=attributes,
                )  # fmt: skip
            inside = trace.set_span_in_context(op_span)
            for timing in run:
                stage_span = self.tracer.start_span(
                    f"{timing.op} {timing.stage}{' (op service)' if timing.where else ''}",
                    context=inside, start_time=timing.start_ns,
                    attributes={"pipeserve.stage": timing.stage, "pipeserve.where": timing.where or "local"},
                )  # fmt: skip
                stage_span.end(end_time=timing.end_ns)
            op_span.end(end_time=last.end_ns)

    def on_batch(self, op: str, size: int) -> None:
        """Nothing: batch sizes are on the op spans."""

    def on_request(self, name: str, err_no: int, start_ns: int, end_ns: int) -> None:
        """Nothing: the request span is opened and closed around the request itself."""

    def on_op_error(self, op: str, err_no: int) -> None:
        """Nothing: errors are on the request span."""


ProcessFn = Callable[[bytes, Any], Coroutine[Any, Any, bytes]]


def trace_op_service(process: ProcessFn, op_name: str) -> ProcessFn:
    """An op service's call handler that opens one span per sample, in the sample's trace."""
    from opentelemetry import propagate, trace

    tracer = trace.get_tracer(TRACER_NAME)
    name = f"{op_name} (op service)"

    async def traced(raw: bytes, context: Any) -> bytes:
        started = time.time_ns()
        error: BaseException | None = None
        try:
            return await process(raw, context)
        except BaseException as exc:
            error = exc
            raise
        finally:
            ended = time.time_ns()
            metadata = {key: value for key, value in context.invocation_metadata() or ()}
            parents = str(metadata.get(SAMPLES_KEY) or metadata.get("traceparent") or "").split(",")
            for parent in parents:
                if not parent:
                    continue
                span = tracer.start_span(
                    name, context=propagate.extract({"traceparent": parent}), kind=trace.SpanKind.SERVER,
                    start_time=started, attributes={"pipeserve.op": op_name, "pipeserve.batch_size": len(parents)},
                )  # fmt: skip
                if error is not None:
                    span.set_status(trace.Status(trace.StatusCode.ERROR, type(error).__name__))
                span.end(end_time=ended)

    return traced
