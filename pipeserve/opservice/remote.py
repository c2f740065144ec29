"""The gateway's side of a remote op: one OpService call per batch.

A remote op looks like any other op's workers to the executor (``start`` / ``run`` /
``close``), so auto-batching, timeouts and retries stay where they are. Each configured
endpoint gets one channel with gRPC's ``round_robin`` policy, so a target that resolves to
several addresses (a Kubernetes headless Service) spreads calls over all of them and
skips replicas that went away; batches also rotate over the endpoints. The op's timeout
is the call's deadline.

A failed call raises: ``asyncio.TimeoutError`` on DEADLINE_EXCEEDED, which the executor
retries like a local timeout, and ``OpServiceError`` otherwise, retryable when another
replica may answer (UNAVAILABLE: replica gone, draining, connection lost); the next attempt
goes to the next endpoint whose connection is not failing. A sample the
service failed comes back as that sample's own error.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import Any, Final

import grpc

from pipeserve.opservice import payloads, values
from pipeserve.pipeline import config as config_mod
from pipeserve.pipeline import errors, stages
from pipeserve.proto.pipeserve.v1 import op_service_pb2 as pb

_LOGGER = logging.getLogger("pipeserve.remote")

PROCESS_METHOD: Final = "/pipeserve.v1.OpService/Process"
_RETRYABLE: Final = frozenset({grpc.StatusCode.UNAVAILABLE})
_SERVICE_CONFIG: Final = '{"loadBalancingConfig": [{"round_robin": {}}]}'


def channel_target(endpoint: str) -> str:
    """The gRPC target of a configured endpoint: ``host:port`` resolves through DNS."""
    if endpoint.startswith(("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:")):
        return endpoint
    return f"dns:///{endpoint}"


def channel_options(max_message_bytes: int) -> list[tuple[str, Any]]:
    """Options of a channel to op services."""
    return [
        ("grpc.service_config", _SERVICE_CONFIG),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        # Re-resolve soon after a replica goes away, so new ones are found.
        ("grpc.dns_min_time_between_resolutions_ms", 1000),
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 2000),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 10_000),
    ]


class RemoteWorkers:
    """Runs an op's batches in its op services.

    Args:
        op_name: The op, sent with each batch so that a misrouted call is refused.
        op_config: Its endpoints; ``concurrency`` calls may be in flight per endpoint
            (the seeds' remote-op threads).
        max_message_bytes: Largest batch or result message, as the services allow.
    """

    def __init__(self, op_name: str, op_config: config_mod.OpConfig, max_message_bytes: int) -> None:
        self.op_name = op_name
        self.endpoints = op_config.server_endpoints
        self.concurrency = self.in_flight = op_config.concurrency * len(self.endpoints)
        self._max_message_bytes = max_message_bytes
        self._channels: list[tuple[str, grpc.aio.Channel, Any]] = []
        self._turn = itertools.count()
        self.trace_metadata: Callable[[list[stages.Sample]], list[tuple[str, str]]] | None = None
        """Set when tracing: the gRPC metadata that carries the samples' trace contexts."""

    async def start(self) -> None:
        """Open the channels and start connecting; replicas that are not up yet are
        connected to as they come (readiness is the op services' own)."""
        for endpoint in self.endpoints:
            channel = grpc.aio.insecure_channel(
                channel_target(endpoint), options=channel_options(self._max_message_bytes)
            )
            channel.get_state(try_to_connect=True)
            call = channel.unary_unary(
                PROCESS_METHOD,
                request_serializer=pb.OpBatch.SerializeToString,
                response_deserializer=pb.ResultBatch.FromString,
            )
            self._channels.append((endpoint, channel, call))

    async def run(
        self, samples: list[stages.Sample], timeout_s: float | None, times: stages.StageTimes | None = None
    ) -> list[stages.Outcome]:
        """Send the batch to the next endpoint; return one outcome per sample.

        With ``times``, the service is asked for its stages, which are appended with
        ``where`` = ``"remote:<endpoint>"``.
        """
        outcomes: list[stages.Outcome] = [None] * len(samples)
        batch = pb.OpBatch(op=self.op_name, timed=times is not None)
        sent: list[int] = []
        for i, sample in enumerate(samples):
            try:
                await self._fill_sample(batch.samples.add(), sample)
            except errors.PipelineError as error:
                del batch.samples[-1]
                outcomes[i] = error
                continue
            sent.append(i)
        if not sent:
            return outcomes
        endpoint, call = self._pick()
        try:
            if self.trace_metadata is None:
                reply: pb.ResultBatch = await call(batch, timeout=timeout_s)
            else:
                reply = await call(batch, timeout=timeout_s, metadata=self.trace_metadata(samples))
        except grpc.aio.AioRpcError as exc:
            raise self._call_error(endpoint, exc) from None
        if len(reply.results) != len(sent):
            raise errors.OpServiceError(
                f"op '{self.op_name}': op service at {endpoint} answered {len(reply.results)} "
                f"results for {len(sent)} samples"
            )
        for i, result in zip(sent, reply.results):
            outcomes[i] = self._outcome(endpoint, result, samples[i].payload is not None)
        if times is not None:
            where = f"remote:{endpoint}"
            times.extend((span.stage, span.start_ns, span.end_ns, where) for span in reply.stages)
        return outcomes

    def _pick(self) -> tuple[str, Any]:
        """The next endpoint in turn, passing over those whose connection is failing."""
        count = len(self._channels)
        start = next(self._turn)
        for step in range(count):
            endpoint, channel, call = self._channels[(start + step) % count]
            if channel.get_state() is not grpc.ChannelConnectivity.TRANSIENT_FAILURE:
                return endpoint, call
        endpoint, _, call = self._channels[start % count]
        return endpoint, call

    async def close(self) -> None:
        await asyncio.gather(*(channel.close() for _, channel, _ in self._channels))
        self._channels.clear()

    async def _fill_sample(self, out: pb.Sample, sample: stages.Sample) -> None:
        out.data_id = sample.data_id
        out.log_id = sample.log_id
        out.batch = sample.batch
        payload: payloads.RequestPayload | None = sample.payload
        if payload is None:
            values.fill_map(out.input_dicts, sample.input_dicts, "input_dicts")
            return
        spill = payload.spill()
        values.fill_map(out.input_dicts, sample.input_dicts, "input_dicts", spill=spill)
        out.payload_prefix = payload.prefix
        out.payload_set = payload.request_set
        if spill.found:
            await payloads.write_spilled(
                spill, payload.store, payload.prefix, payload.request_set, "gateway", payload.written
            )

    def _outcome(self, endpoint: str, result: pb.Result, with_refs: bool) -> stages.Outcome:
        if result.err_no:
            return errors.from_code(result.err_no, result.err_msg)
        where = f"output of op '{self.op_name}' from {endpoint}"
        try:
            # References stay references: the gateway reads them only where it needs the value.
            return values.decode(result.output, where, errors.OpOutputError, values.Refs() if with_refs else None)
        except errors.PipelineError as error:
            return error

    def _call_error(self, endpoint: str, exc: grpc.aio.AioRpcError) -> BaseException:
        code = exc.code()
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            return asyncio.TimeoutError()
        detail = exc.details() or code.name
        return errors.OpServiceError(
            f"op '{self.op_name}': op service at {endpoint}: {code.name}: {detail}",
            retryable=code in _RETRYABLE,
        )
