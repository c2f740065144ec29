"""``OpService.Process``: one batch of samples through the hosted op, one result each.

The handler reads the raw request bytes itself, so a malformed message gets a clear
INVALID_ARGUMENT instead of gRPC's generic deserialisation failure. A sample whose values
cannot be read, or whose output cannot be sent, fails alone with its own err_no; the
others of the batch run. Whole-call failures are statuses: UNAVAILABLE while the service
starts or drains (the gateway retries on another replica), NOT_FOUND for a batch meant
for another op, DEADLINE_EXCEEDED when the caller's deadline passes first.

With a payload store, references among a sample's inputs are read before preprocess (the
op never sees them) and outputs above the threshold are written to the store under the
sample's payload_prefix, a reference travelling in their place.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Coroutine
from typing import Any

import grpc
from google.protobuf.message import DecodeError  # type: ignore[import-untyped]

from pipeserve.opservice import payloads, values
from pipeserve.payload.store import PayloadStore
from pipeserve.pipeline import config as config_mod
from pipeserve.pipeline import errors, logs, observe, stages, tracer, workers
from pipeserve.proto.pipeserve.v1 import op_service_pb2 as pb

_LOGGER = logging.getLogger("pipeserve.opservice")


class OpHandler:
    """Runs the batches of one op's service on its workers."""

    def __init__(
        self,
        op_name: str,
        op_workers: workers.Workers,
        max_message_bytes: int,
        store: PayloadStore | None = None,
        threshold_bytes: int = 0,
    ) -> None:
        self.op_name = op_name
        self.workers = op_workers
        self.max_message_bytes = max_message_bytes
        self.store = store
        """Where references are read from and large outputs go; None: everything inline."""
        self.threshold_bytes = threshold_bytes
        self.accepting = False
        """False until every worker's init_op finished, and again once draining starts."""
        self.observers = observe.Observers()
        """Who hears of the batches run here: the service's own tracer and DEBUG lines."""
        self.tracer: tracer.Tracer | None = None
        self._tracer_task: asyncio.Task[None] | None = None
        self._running = 0
        self._inside: dict[int, int] = {}
        """While observed: the size of each batch inside (running or waiting), by arrival."""
        self._arrivals = itertools.count()

    @property
    def running(self) -> int:
        """Samples being run now."""
        return self._running

    @property
    def waiting(self) -> int:
        """Samples waiting for a worker (counted while someone observes this handler).

        Workers take batches in arrival order, so the first ``in_flight`` batches inside
        hold the workers and the others wait.
        """
        sizes = list(self._inside.values())
        return sum(sizes[self.workers.in_flight :])

    def start_observing(self, config: config_mod.ServerConfig) -> None:
        """Trace (``dag.tracer``) and log each batch at DEBUG (``log.level``), as the
        gateway does, into this service's own log directory."""
        interval_s = config.dag.tracer_interval_s
        if interval_s is not None and self.tracer is None:
            self.tracer = tracer.Tracer(
                interval_s, {self.op_name: ("gateway",)}, lambda: {self.op_name: self.waiting}, lambda: self._running
            )
            self.observers.add(self.tracer)
            self._tracer_task = asyncio.create_task(self.tracer.run(), name="tracer")
        if config.log.level == "DEBUG":
            self.observers.add(logs.RequestLog())

    async def stop_observing(self) -> None:
        """Stop the tracer after writing its last, partial interval."""
        if self._tracer_task is not None:
            self._tracer_task.cancel()
            await asyncio.gather(self._tracer_task, return_exceptions=True)
            self._tracer_task = None
        if self.tracer is not None:
            self.tracer.flush()
            self.observers.remove(self.tracer)
            self.tracer = None

    async def process(self, raw: bytes, context: grpc.aio.ServicerContext) -> bytes:
        """Handle one serialized OpBatch; return the serialized ResultBatch.

        When the batch is ``timed``, the reply carries the stages run here: ``in`` from the
        call's arrival to preprocess, ``prep``/``midp``/``postp``, and ``out`` until the
        reply is encoded.
        """
        received = time.time_ns()
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
        decoded = [self._inputs(i, sample) for i, sample in enumerate(batch.samples)]
        if any(isinstance(dicts, Resolving) for dicts in decoded):
            decoded = await asyncio.gather(*(_resolved(dicts) for dicts in decoded))
        for i, (sample, dicts) in enumerate(zip(batch.samples, decoded)):
            if isinstance(dicts, errors.PipelineError):
                error = dicts
                _LOGGER.warning(
                    "[data_id=%s log_id=%s] op '%s': bad sample: %s",
                    sample.data_id, sample.log_id, self.op_name, error.message,
                )  # fmt: skip
                _set_error(results[i], error)
                continue
            assert isinstance(dicts, dict)
            samples.append(stages.Sample(dicts, sample.data_id, sample.log_id, sample.batch))
            positions.append(i)
        observed = self.observers.active
        times: stages.StageTimes | None = [] if batch.timed or observed else None
        handed = time.time_ns()
        if samples:
            self._running += len(samples)
            arrival = -1
            if observed:
                arrival = next(self._arrivals)
                self._inside[arrival] = len(samples)
            try:
                outcomes = await self._run(samples, context, times)
            finally:
                self._running -= len(samples)
                if observed:
                    del self._inside[arrival]
            if observed:
                assert times is not None
                self._report(samples, outcomes, received, handed, times)
            spills = {}
            for i, outcome in zip(positions, outcomes):
                spill = self._set_outcome(results[i], outcome, batch.samples[i], context)
                if spill is not None and spill.found:
                    spills[i] = spill
            if spills:
                await self._write_payloads(results, spills, batch)
            self._fit(results)
        if batch.timed:
            assert times is not None
            _add_stages(reply, received, handed, times)
        data: bytes = reply.SerializeToString()
        return data

    def _report(
        self,
        samples: list[stages.Sample],
        outcomes: list[stages.Outcome],
        received: int,
        handed: int,
        times: stages.StageTimes,
    ) -> None:
        """Tell the observers about one batch: its stages, size, errors and samples."""
        observers, op = self.observers, self.op_name
        data_ids = tuple(s.data_id for s in samples)
        log_ids = tuple(s.log_id for s in samples)
        now = time.time_ns()
        first = times[0][1] if times else handed
        last = times[-1][2] if times else now
        spans = [("in", received, max(received, first)), *((st, a, b) for st, a, b, _ in times), ("out", last, now)]
        for stage, start, end in spans:
            observers.on_stage(observe.StageTiming(op, stage, data_ids, log_ids, start, end))
        observers.on_batch(op, len(samples))
        for outcome in outcomes:
            err_no = outcome.code if isinstance(outcome, errors.PipelineError) else 0
            if err_no:
                observers.on_op_error(op, err_no)
            observers.on_request(op, err_no, received, now)

    async def _run(
        self, samples: list[stages.Sample], context: grpc.aio.ServicerContext, times: stages.StageTimes | None
    ) -> list[stages.Outcome]:
        try:
            if times is None:
                return await self.workers.run(samples, context.time_remaining())
            return await self.workers.run(samples, context.time_remaining(), times)
        except asyncio.TimeoutError:
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, f"op '{self.op_name}' ran past the call's deadline")
            raise  # unreachable: abort raises
        except Exception as exc:  # noqa: BLE001 - a worker failure fails this batch only
            error = errors.to_err(exc, self.op_name)
            ids = logs.request_tag([s.data_id for s in samples], [s.log_id for s in samples])
            _LOGGER.error("[%s] op '%s': batch failed: %s", ids, self.op_name, error.message, exc_info=exc)
            return [error] * len(samples)

    def _inputs(self, i: int, sample: pb.Sample) -> dict[str, Any] | errors.PipelineError | Resolving:
        """The sample's input_dicts; the error that fails it; or, when it holds payload
        references, the coroutine that reads them."""
        refs = values.Refs()
        try:
            dicts = values.decode_map(sample.input_dicts, f"samples[{i}].input_dicts", refs=refs)
        except errors.PipelineError as error:
            return error
        if refs.count:
            return Resolving(payloads.resolve(dicts, self.store, self.op_name))
        return dicts

    def _set_outcome(
        self, result: pb.Result, outcome: stages.Outcome, sample: pb.Sample, context: grpc.aio.ServicerContext
    ) -> values.Spill | None:
        """Encode one outcome; return what of it must go to the payload store."""
        if isinstance(outcome, errors.PipelineError):
            _set_error(result, outcome)
            return None
        spill = None
        if self.store is not None and sample.payload_prefix and not _expired(context):
            spill = values.Spill(self.threshold_bytes)
        try:
            values.fill(result.output, outcome, f"op '{self.op_name}' output", spill=spill)
        except errors.PipelineError as error:
            result.ClearField("output")
            _set_error(result, error)
            return None
        return spill

    async def _write_payloads(self, results: list[pb.Result], spills: dict[int, values.Spill], batch: pb.OpBatch) -> None:
        """Write the large outputs to the store; a store failure fails its sample alone."""
        store = self.store
        assert store is not None
        writes = [
            payloads.write_spilled(spill, store, batch.samples[i].payload_prefix, batch.samples[i].payload_set, self.op_name)
            for i, spill in spills.items()
        ]
        outcomes = await asyncio.gather(*writes, return_exceptions=True)
        for i, outcome in zip(spills, outcomes):
            if isinstance(outcome, errors.PipelineError):
                results[i].ClearField("output")
                _set_error(results[i], outcome)
            elif isinstance(outcome, BaseException):
                raise outcome

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


class Resolving:
    """A sample's input_dicts still to be read from the payload store."""

    def __init__(self, pending: Coroutine[Any, Any, dict[str, Any]]) -> None:
        self.pending = pending


async def _resolved(dicts: Any) -> Any:
    if not isinstance(dicts, Resolving):
        return dicts
    try:
        return await dicts.pending
    except errors.PipelineError as error:
        return error


def _expired(context: grpc.aio.ServicerContext) -> bool:
    """The caller has gone: writing its outputs to the store would only leave them behind."""
    remaining = context.time_remaining()
    return remaining is not None and remaining <= 0


def _add_stages(reply: pb.ResultBatch, received: int, handed: int, times: stages.StageTimes) -> None:
    """Fill the reply's stages: in, what the workers ran, out (up to now)."""
    first = times[0][1] if times else handed
    last = times[-1][2] if times else handed
    spans = [("in", received, max(received, first)), *((st, a, b) for st, a, b, _ in times)]
    spans.append(("out", last, max(last, time.time_ns())))
    for stage, start, end in spans:
        reply.stages.add(stage=stage, start_ns=start, end_ns=end)


def _set_error(result: pb.Result, error: errors.PipelineError) -> None:
    result.err_no = error.code
    result.err_msg = error.message
