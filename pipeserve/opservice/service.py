"""``OpService.Process``: one batch of samples through the hosted op, one result each.

The handler reads the raw request bytes itself, so a malformed message gets a clear
INVALID_ARGUMENT instead of gRPC's generic deserialisation failure. A sample whose values
cannot be read, or whose output cannot be sent, fails alone with its own err_no; the
others of the batch run. Whole-call failures are statuses: UNAVAILABLE while the service
starts or drains (the gateway retries on another replica), NOT_FOUND for a batch meant
for another op, DEADLINE_EXCEEDED when the caller's deadline passes first.
"""

from __future__ import annotations

import asyncio
import logging

import grpc
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

from pipeserve.opservice import values
from pipeserve.pipeline import errors, stages, workers
from pipeserve.proto.pipeserve.v1 import op_service_pb2 as pb

_LOGGER = logging.getLogger("pipeserve.opservice")


class OpHandler:
    """Runs the batches of one op's service on its workers."""

    def __init__(self, op_name: str, op_workers: workers.Workers, max_message_bytes: int) -> None:
        self.op_name = op_name
        self.workers = op_workers
        self.max_message_bytes = max_message_bytes
        self.accepting = False
        """False until every worker's init_op finished, and again once draining starts."""

    async def process(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        """Handle one serialized OpBatch; return the serialized ResultBatch."""
        if not self.accepting:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, f"op service '{self.op_name}' is not serving (starting or draining)"
            )
        try:
            batch = pb.OpBatch.FromString(raw)
        except DecodeError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"malformed OpBatch message: {exc}")
        if batch.op != self.op_name:
            await context.abort(
                grpc.StatusCode.NOT_FOUND, f"this service hosts op '{self.op_name}', not '{batch.op}'"
            )
        reply = pb.ResultBatch()
        results = [reply.results.add() for _ in batch.samples]
        samples: list[stages.Sample] = []
        positions: list[int] = []
        for i, sample in enumerate(batch.samples):
            try:
                dicts = values.decode_map(sample.input_dicts, f"samples[{i}].input_dicts")
            except errors.PipelineError as error:
                _LOGGER.warning(
                    "[data_id=%s log_id=%s] op '%s': bad sample: %s",
                    sample.data_id, sample.log_id, self.op_name, error.message,
                )  # fmt: skip
                _set_error(results[i], error)
                continue
            samples.append(stages.Sample(dicts, sample.data_id, sample.log_id, sample.batch))
            positions.append(i)
        if samples:
            outcomes = await self._run(samples, context)
            for i, outcome in zip(positions, outcomes):
                self._set_outcome(results[i], outcome)
            self._fit(results)
        data: bytes = reply.SerializeToString()
        return data

    async def _run(self, samples: list[stages.Sample], context: grpc.aio.ServicerContext) -> list[stages.Outcome]:
        try:
            return await self.workers.run(samples, context.time_remaining())
        except asyncio.TimeoutError:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"op '{self.op_name}' ran past the call's deadline")
            raise  # unreachable: abort raises
        except Exception as exc:  # noqa: BLE001 - a worker failure fails this batch only
            error = errors.to_err(exc, self.op_name)
            _LOGGER.error("op '%s': batch failed: %s", self.op_name, error.message, exc_info=exc)
            return [error] * len(samples)

    def _set_outcome(self, result: pb.Result, outcome: stages.Outcome) -> None:
        if isinstance(outcome, errors.PipelineError):
            _set_error(result, outcome)
            return
        try:
            values.fill(result.output, outcome, f"op '{self.op_name}' output")
        except errors.PipelineError as error:
            result.ClearField("output")
            _set_error(result, error)

    def _fit(self, results: list[pb.Result]) -> None:
        """Fail the outputs that would take the reply over the message limit, each alone."""
        room = self.max_message_bytes - 1024  # the reply's own framing, with a wide margin
        for result in results:
            size = result.ByteSize()
            if size > room:
                result.ClearField("output")
                _set_error(result, errors.OpOutputError(
                    f"op '{self.op_name}' output: {size} bytes do not fit in the reply "
                    f"(max_request_bytes {self.max_message_bytes}); lower batch_size or raise "
                    "max_request_bytes"
                ))  # fmt: skip
                size = result.ByteSize()
            room -= size + 8  # each result's tag and length


def _set_error(result: pb.Result, error: errors.PipelineError) -> None:
    result.err_no = error.code
    result.err_msg = error.message
