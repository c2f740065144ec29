"""Runs requests through a checked DAG.

Per request there is one small context: the outputs so far, a countdown for each op that
waits on several inputs (fan-in), and a future for the result. When an op finishes, its
output is handed by reference to every op that reads it (fan-out) and each of those
whose inputs are now complete is started. Ops that are cheap run on the event loop right
there (``inline``); the others queue for their workers, which take them in batches.

A request ends exactly once: with the ResponseOp's inputs, or with the first error. Its
remaining work is dropped before it reaches a worker, and its admission slot is freed.

While someone observes the engine (``observers``) or a request keeps its timeline, each op
run also reports its stages (``observe.StageTiming``); otherwise none of that code runs. A DAG
whose ops all run inline one sample at a time, unobserved, runs as a straight loop instead
(:meth:`DagExecutor._run_straight`): such a request never yields, so it needs none of the above.

Over 500 lines: the request path (admission, fan-out and fan-in, batching, retries, payload
references, observation) stays in one module so that it reads top to bottom; the op
settings at the end are what the executor builds its nodes from.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import secrets
import time
from collections.abc import Coroutine
from typing import Any

from pipeserve.pipeline import batching, channel, dag, errors, logs, observe, profile, stages, tracer, workers
from pipeserve.pipeline import config as config_mod
from pipeserve.pipeline import op as op_mod
from pipeserve.payload.refs import contains_refs
from pipeserve.pipeline.deadlines import Deadlines

_LOGGER = logging.getLogger("pipeserve.executor")

CALL_OP = "DAG"
CALL_STAGE = "call"
"""A timeline's whole-request span: op ``DAG``, stage ``call`` (as the seeds' profile names it)."""


class DagExecutor:
    """The DAG of one server process, with the workers of its ops.

    Args:
        graph: the checked DAG.
        config: the server's config; op settings given to an op's constructor win over it.
        worker_index, worker_count: this process among ``build_dag_each_worker`` processes,
            so that data_ids stay unique across them.
    """

    def __init__(
        self,
        graph: dag.Graph,
        config: config_mod.ServerConfig,
        *,
        worker_index: int = 0,
        worker_count: int = 1,
    ) -> None:
        self.graph = graph
        self.config = config
        self.op_configs = {name: resolve_op_config(op, config) for name, op in graph.ops.items()}
        self.nodes: dict[str, _Node] = {}
        for name, op in graph.ops.items():
            op_config = self.op_configs[name]
            op.runtime_config = op_config.runtime
            self.nodes[name] = _Node(self, name, op, graph.inputs[name], op_config)
        self._response = _ResponseNode(self, graph.inputs[dag.RESPONSE])
        self._straight: tuple[tuple[_Node, stages.StageRunner], ...] | None = None
        """Every op with its runner in topological order, when every op runs inline one sample
        at a time: such a DAG runs as a plain loop (see :meth:`_run_straight`)."""
        inline = [(node, node.workers) for node in self.nodes.values() if node.fast]
        if len(inline) == len(self.nodes):
            runners = [(node, w.runner) for node, w in inline if isinstance(w, workers.InlineWorkers)]
            self._straight = tuple(runners) if len(runners) == len(self.nodes) else None
        everything: dict[str, _Node | _ResponseNode] = {**self.nodes, dag.RESPONSE: self._response}
        self._successors = {
            name: [everything[s] for s in graph.successors(name)]
            for name in (dag.REQUEST, *self.nodes)
        }
        self._fan_in = {name: len(ins) for name, ins in graph.inputs.items() if len(ins) > 1}
        self._admission = channel.Admission(config_mod.in_flight_limit(config))
        timeout_ms = config.dag.timeout_ms
        self._timeout_s = timeout_ms / 1000 if timeout_ms > 0 else None
        self._deadlines: Deadlines[_Request] | None = (
            Deadlines(self._timeout_s, _Request.time_out) if self._timeout_s is not None else None
        )
        self._ids = itertools.count(worker_index, worker_count)
        self._tasks: set[asyncio.Task[None]] = set()
        self._background: set[asyncio.Task[None]] = set()
        self.payload_store: Any = None
        """The payload store shared with the op services (None: values travel inline)."""
        self._payload_prefix = f"{secrets.token_hex(4)}-"  # data_ids are unique per process only
        self.observers = observe.Observers()
        """Who hears of stages, batches, requests and op errors (nobody by default)."""
        self.use_profile = config.dag.use_profile
        """Every request keeps its timeline (seed §6.2), for :attr:`profile_sink`."""
        self.profile_sink: Any = None
        """Called with each finished request's ChannelData when ``use_profile`` is on."""
        self.timed_requests = 0
        """Requests in the DAG now that keep a timeline; while any does, ops time their stages."""
        self.tracer: tracer.Tracer | None = None
        """The tracer, while ``dag.tracer.interval_s`` is set and the executor runs."""
        self.ready = False

    # Life cycle ----------------------------------------------------------------------------

    def fork_workers(self) -> None:
        """Start the process workers; call before the server starts any thread."""
        for node in self.nodes.values():
            if isinstance(node.workers, workers.ProcessWorkers):
                node.workers.fork()

    async def start(self) -> None:
        """Run every op's init_op and start the batchers; then the DAG is ready."""
        if any(node.remote for node in self.nodes.values()):
            from pipeserve.opservice import payloads

            self.payload_store = payloads.open_shared_store(self.config)
        await asyncio.gather(*(node.workers.start() for node in self.nodes.values()))
        for node in self.nodes.values():
            if node.queue is not None:
                self._tasks.add(asyncio.create_task(node.batch_loop(), name=f"batcher-{node.name}"))
        self._start_observing()
        self.ready = True

    def _start_observing(self) -> None:
        """Register what config.yml asks for: the tracer, the profile, DEBUG request lines."""
        self.tracer = tracer.for_executor(self)
        if self.tracer is not None:
            self.observers.add(self.tracer)
            self._tasks.add(asyncio.create_task(self.tracer.run(), name="tracer"))
        if self.use_profile and self.profile_sink is None:
            rotation = self.config.log.rotation[logs.PIPELINE_LOG]
            self.profile_sink = profile.ProfileSink(
                self.config.log_dir, max_bytes=rotation.max_bytes, backup_count=rotation.backup_count
            )
        if self.config.log.level == "DEBUG":
            self.observers.add(logs.RequestLog())

    async def close(self) -> None:
        """Stop the batchers and the workers."""
        self.ready = False
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.tracer is not None:
            self.tracer.flush()  # the last, partial interval
            self.observers.remove(self.tracer)
        await asyncio.gather(*(node.workers.close() for node in self.nodes.values()))
        await asyncio.gather(*self._background, return_exceptions=True)
        if self.payload_store is not None:
            await self.payload_store.close()

    @property
    def in_flight(self) -> int:
        """Requests inside the DAG now."""
        return self._admission.in_flight

    def channel_sizes(self) -> dict[str, int]:
        """Samples waiting for each op's workers."""
        return {name: len(node.queue) for name, node in self.nodes.items() if node.queue is not None}

    def queue_depths(self) -> dict[str, int]:
        """Samples waiting for each op, every op named (0 for ops that never queue)."""
        return {name: len(node.queue) if node.queue is not None else 0 for name, node in self.nodes.items()}

    # Requests ------------------------------------------------------------------------------

    def next_data_id(self) -> int:
        """A data_id unique in this server (across its worker processes too)."""
        return next(self._ids)

    def run(
        self, values: Any, data_id: int, log_id: int, batch: bool = False, profile: bool = False
    ) -> Coroutine[Any, Any, channel.ChannelData]:
        """Run one request whose RequestOp output is ``values``; errors come back in the result.

        With ``profile`` (or ``dag.use_profile``), the result carries the request's timeline:
        every stage of every op it went through, and its ``call`` span.
        """
        # A plain function handing back the coroutine: no extra frame per unobserved request.
        if profile or self.use_profile or self.observers.active:
            return self._run_observed(values, data_id, log_id, batch, profile or self.use_profile)
        if self._straight is not None:
            return self._run_straight(values, data_id, log_id, batch)
        return self._run(values, data_id, log_id, batch, None)

    @property
    def runs_straight(self) -> bool:
        """Whether unobserved requests run as a straight loop (every op inline, unbatched)."""
        return self._straight is not None

    async def _run_straight(self, values: Any, data_id: int, log_id: int, batch: bool) -> channel.ChannelData:
        """:meth:`_run` for a DAG whose ops all run inline one sample at a time, unobserved.

        Such a request never yields to the loop: no other request can interleave, no timeout
        can fire and nothing can queue, so the admission gate, the deadline and the per-request
        bookkeeping of :meth:`_run` have nothing to do. The ops run in topological order, each
        on its inputs' outputs; the first error ends the request, as it does there.
        """
        outputs: dict[str, Any] = {dag.REQUEST: values}
        for node, runner in self._straight or ():
            sample = stages.Sample({name: outputs[name] for name in node.inputs}, data_id, log_id, batch)
            outcome = runner.run([sample])[0]
            if isinstance(outcome, errors.PipelineError):
                return channel.ChannelData(data_id, log_id, {}, outcome, node.name)
            outputs[node.name] = outcome
        inputs = self._response.inputs
        return channel.ChannelData(data_id, log_id, {name: outputs[name] for name in inputs}, None, inputs[-1])

    async def _run_observed(
        self, values: Any, data_id: int, log_id: int, batch: bool, keep_timeline: bool
    ) -> channel.ChannelData:
        timeline: list[observe.StageTiming] | None = [] if keep_timeline else None
        start_ns = time.time_ns()
        if timeline is not None:
            self.timed_requests += 1
        try:
            result = await self._run(values, data_id, log_id, batch, timeline)
        finally:
            if timeline is not None:
                self.timed_requests -= 1
        end_ns = time.time_ns()
        if self.observers.active:
            self.observers.on_request(self.config.name or "", result.error_code, start_ns, end_ns)
        if timeline is not None:
            call = observe.StageTiming(CALL_OP, CALL_STAGE, (data_id,), (log_id,), start_ns, end_ns)
            result.timeline = [call, *timeline]
            if self.use_profile and self.profile_sink is not None:
                self.profile_sink(result)
        return result

    async def _run(
        self, values: Any, data_id: int, log_id: int, batch: bool, timeline: list[observe.StageTiming] | None
    ) -> channel.ChannelData:
        loop = asyncio.get_running_loop()
        started = loop.time()
        admission = self._admission
        if not admission.try_enter():
            try:
                await admission.wait(self._timeout_s)
            except errors.PipelineError as error:
                return channel.ChannelData(data_id, log_id, {}, error, dag.REQUEST)
        ctx = _Request(self, data_id, log_id, batch)
        ctx.timeline = timeline
        deadlines = self._deadlines
        if deadlines is not None:
            deadlines.add(ctx, started)
        try:
            self.deliver(ctx, dag.REQUEST, values)
            if ctx.result is not None:  # an all-inline DAG finished without yielding
                return ctx.result
            ctx.future = loop.create_future()
            return await ctx.future
        finally:
            ctx.done = True
            if deadlines is not None:
                deadlines.discard(ctx)
            admission.leave()
            if ctx.payload is not None:
                await self.drop_payloads(ctx)

    def deliver(self, ctx: _Request, name: str, output: Any) -> None:
        """Record ``name``'s output and start every op it completes."""
        ctx.outputs[name] = output
        for successor in self._successors[name]:
            if successor.fan_in > 1:
                left = ctx.waiting[successor.name] - 1
                ctx.waiting[successor.name] = left
                if left:
                    continue
            successor.submit(ctx)
            if ctx.done:
                return

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` as a task the executor keeps until it ends."""
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def request_payload(self, ctx: _Request) -> Any:
        """Where the request's large values go in the payload store (made on first use)."""
        if ctx.payload is None:
            from pipeserve.opservice import payloads

            store = self.payload_store
            request_id = f"{self._payload_prefix}{ctx.data_id}"
            ctx.payload = payloads.RequestPayload(
                store,
                store.keys.request_prefix(request_id),
                store.keys.request_set(request_id),
                self.config.payload.threshold_bytes,
            )
        return ctx.payload

    async def drop_payloads(self, ctx: _Request) -> None:
        """Delete every key the request wrote to the payload store."""
        try:
            await ctx.payload.store.delete_request(ctx.payload.request_set)
        except errors.PipelineError as error:
            _LOGGER.warning(
                "[data_id=%s log_id=%s] payload keys not deleted (their TTL will): %s",
                ctx.data_id, ctx.log_id, error.message,
            )  # fmt: skip

    async def resolve(self, ctx: _Request, value: Any, op_name: str) -> Any:
        """``value`` with its payload references read from the store, for an op here."""
        from pipeserve.opservice import payloads

        return await payloads.resolve(value, self.payload_store, op_name)

    def pending_ops(self, ctx: _Request) -> list[str]:
        """Ops a request has started but not finished."""
        outputs = ctx.outputs
        return [
            name
            for name, node in self.nodes.items()
            if name not in outputs and all(i in outputs for i in node.inputs)
        ]


class _Request:
    """The state of one request inside the DAG."""

    __slots__ = (
        "executor", "data_id", "log_id", "batch", "outputs", "waiting", "result", "future", "done", "payload",
        "timeline",
    )  # fmt: skip

    def __init__(self, executor: DagExecutor, data_id: int, log_id: int, batch: bool) -> None:
        self.executor = executor
        self.data_id = data_id
        self.log_id = log_id
        self.batch = batch
        self.outputs: dict[str, Any] = {}
        self.waiting = dict(executor._fan_in)  # noqa: SLF001 - the executor's own helper
        self.result: channel.ChannelData | None = None
        self.future: asyncio.Future[channel.ChannelData] | None = None
        """Made only when the request has to wait for its result (not for an all-inline DAG)."""
        self.done = False
        self.payload: Any = None
        """The request's place in the payload store, once a value went to an op service."""
        self.timeline: list[observe.StageTiming] | None = None
        """The stages the request went through, when it keeps its timeline."""

    def finish(self, result: channel.ChannelData) -> None:
        if not self.done:
            self.done = True
            self.result = result
            if self.future is not None:
                self.future.set_result(result)

    def fail(self, error: errors.PipelineError, op_name: str) -> None:
        self.finish(channel.ChannelData(self.data_id, self.log_id, {}, error, op_name))

    def time_out(self) -> None:
        pending = self.executor.pending_ops(self)
        timeout_ms = self.executor.config.dag.timeout_ms
        where = f" (still running: {', '.join(pending)})" if pending else ""
        _LOGGER.warning(
            "[data_id=%s log_id=%s] request timed out after %g ms%s", self.data_id, self.log_id, timeout_ms, where
        )
        self.fail(errors.TimeoutError_(f"request timed out after {timeout_ms:g} ms{where}"), ",".join(pending))


class _ResponseNode:
    """The end of the DAG: completes the request with the ResponseOp's inputs."""

    name = dag.RESPONSE

    def __init__(self, executor: DagExecutor, inputs: tuple[str, ...]) -> None:
        self.inputs = inputs
        self.fan_in = len(inputs)

    def submit(self, ctx: _Request) -> None:
        outputs = ctx.outputs
        dicts = {name: outputs[name] for name in self.inputs}
        if ctx.payload is not None and contains_refs(dicts):
            ctx.executor.spawn(self._resolve_then_finish(ctx, dicts))
            return
        ctx.finish(channel.ChannelData(ctx.data_id, ctx.log_id, dicts, None, self.inputs[-1]))

    async def _resolve_then_finish(self, ctx: _Request, dicts: dict[str, Any]) -> None:
        try:
            dicts = await ctx.executor.resolve(ctx, dicts, self.inputs[-1])
        except errors.PipelineError as error:
            ctx.fail(error, self.inputs[-1])
            return
        ctx.finish(channel.ChannelData(ctx.data_id, ctx.log_id, dicts, None, self.inputs[-1]))


class _Node:
    """One op of the DAG at run time: its workers and, unless it runs inline one sample at
    a time, the queue its batches form in."""

    def __init__(
        self,
        executor: DagExecutor,
        name: str,
        op: op_mod.Op,
        inputs: tuple[str, ...],
        op_config: config_mod.OpConfig,
    ) -> None:
        self.executor = executor
        self.name = name
        self.op = op
        self.inputs = inputs
        self.fan_in = len(inputs)
        self.config = op_config
        self.workers = make_workers(op, op_config, executor.config)
        self.remote = bool(op_config.server_endpoints)
        timeout_ms = op_config.timeout_ms
        self.timeout_s = timeout_ms / 1000 if timeout_ms > 0 else None
        self.fast = op_config.inline and op_config.batch_size == 1
        self.queue: batching.BatchQueue[tuple[_Request, stages.Sample]] | None = None
        if not self.fast:
            wait_s = (op_config.auto_batching_timeout_ms or 0) / 1000
            self.queue = batching.BatchQueue(op_config.batch_size, wait_s, _is_dead)
        self._purge_at = 2 * config_mod.in_flight_limit(executor.config)
        self._slots: asyncio.Semaphore | None = None
        self._running: set[asyncio.Task[None]] = set()

    def submit(self, ctx: _Request) -> None:
        outputs = ctx.outputs
        sample = stages.Sample({name: outputs[name] for name in self.inputs}, ctx.data_id, ctx.log_id, ctx.batch)
        executor = self.executor
        if executor.observers.active or executor.timed_requests:
            sample.queued_ns = time.time_ns()
        if self.remote:
            if self.executor.payload_store is not None:
                sample.payload = self.executor.request_payload(ctx)
        elif ctx.payload is not None and contains_refs(sample.input_dicts):
            self.executor.spawn(self._resolve_then_run(ctx, sample))
            return
        self._run(ctx, sample)

    async def _resolve_then_run(self, ctx: _Request, sample: stages.Sample) -> None:
        try:
            sample.input_dicts = await self.executor.resolve(ctx, sample.input_dicts, self.name)
        except errors.PipelineError as error:
            ctx.fail(error, self.name)
            return
        if not ctx.done:
            self._run(ctx, sample)

    def _run(self, ctx: _Request, sample: stages.Sample) -> None:
        if self.fast:
            assert isinstance(self.workers, workers.InlineWorkers)
            executor = self.executor
            if executor.observers.active or executor.timed_requests:
                self._run_fast_timed(ctx, sample)
                return
            self.complete(ctx, self.workers.runner.run([sample])[0])
            return
        queue = self.queue
        assert queue is not None
        if len(queue) >= self._purge_at:
            queue.purge()  # requests that ended while queued: keep the queue bounded
        queue.put((ctx, sample))

    def _run_fast_timed(self, ctx: _Request, sample: stages.Sample) -> None:
        assert isinstance(self.workers, workers.InlineWorkers)
        times: stages.StageTimes = []
        handed = time.time_ns()
        outcomes = self.workers.runner.run([sample], times)
        self.observe([ctx], [sample], times, handed, time.time_ns(), outcomes)
        self.complete(ctx, outcomes[0])

    def observe(
        self,
        ctxs: list[_Request],
        samples: list[stages.Sample],
        times: stages.StageTimes,
        handed_ns: int,
        returned_ns: int,
        outcomes: list[Any],
    ) -> None:
        """Report one run of the op over ``samples`` to the observers and the timelines.

        ``in`` runs from the earliest sample's arrival to the first local stage (to the
        hand-over when the op ran elsewhere), ``out`` from the last local stage (or the
        answer's arrival) to now, when the outputs are passed on.
        """
        name = self.name
        now = time.time_ns()
        data_ids = tuple(s.data_id for s in samples)
        log_ids = tuple(s.log_id for s in samples)
        queued = min(s.queued_ns or handed_ns for s in samples)
        local_first = bool(times) and times[0][3] == ""
        in_end = times[0][1] if local_first else handed_ns
        local_last = bool(times) and times[-1][3] == ""
        out_start = min(times[-1][2] if local_last else returned_ns, now)
        timings = [observe.StageTiming(name, "in", data_ids, log_ids, queued, max(queued, in_end))]
        timings.extend(observe.StageTiming(name, st, data_ids, log_ids, a, b, where) for st, a, b, where in times)
        timings.append(observe.StageTiming(name, "out", data_ids, log_ids, out_start, now))
        observers = self.executor.observers
        if observers.active:
            for timing in timings:
                observers.on_stage(timing)
            observers.on_batch(name, len(samples))
            for outcome in outcomes:
                if isinstance(outcome, errors.PipelineError):
                    observers.on_op_error(name, outcome.code)
        for ctx in ctxs:
            if ctx.timeline is not None:
                ctx.timeline.extend(timings)

    def complete(self, ctx: _Request, outcome: Any) -> None:
        if ctx.done:
            return
        if isinstance(outcome, errors.PipelineError):
            ctx.fail(outcome, self.name)
        else:
            self.executor.deliver(ctx, self.name, outcome)

    async def batch_loop(self) -> None:
        """Form a batch whenever a worker is free, and run it."""
        queue = self.queue
        assert queue is not None
        slots = self._slots = asyncio.Semaphore(self.workers.in_flight)
        while True:
            await slots.acquire()
            try:
                items = await queue.next_batch()
            except BaseException:
                slots.release()
                raise
            task = asyncio.create_task(self._run_batch(items, slots))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run_batch(self, items: list[tuple[_Request, stages.Sample]], slots: asyncio.Semaphore) -> None:
        samples = [sample for _, sample in items]
        executor = self.executor
        times: stages.StageTimes | None = None
        if executor.observers.active or executor.timed_requests:
            times = []
            handed = time.time_ns()
        try:
            outcomes = await self._attempts(samples, times)
        finally:
            slots.release()
        if times is not None:
            self.observe([ctx for ctx, _ in items], samples, times, handed, time.time_ns(), outcomes)
        for (ctx, _), outcome in zip(items, outcomes):
            if ctx.done and ctx.payload is not None:
                # The request ended while its batch ran: what the op service stored for it
                # came after the request's keys were deleted.
                self.executor.spawn(self.executor.drop_payloads(ctx))
            self.complete(ctx, outcome)

    async def _attempts(self, samples: list[stages.Sample], times: stages.StageTimes | None = None) -> list[Any]:
        retry = self.config.retry
        last: errors.PipelineError | None = None
        for attempt in range(1, retry + 1):
            if times:
                times.clear()  # only the last attempt's stages count
            try:
                if times is None:
                    return await self.workers.run(samples, self.timeout_s)
                return await self.workers.run(samples, self.timeout_s, times)
            except asyncio.TimeoutError:
                last = None
                _LOGGER.warning(
                    "[%s] op '%s' timed out after %g ms (attempt %d of %d)",
                    _ids(samples), self.name, self.config.timeout_ms, attempt, retry,
                )
            except errors.OpServiceError as failed:
                _LOGGER.warning("[%s] %s (attempt %d of %d)", _ids(samples), failed.message, attempt, retry)
                if not failed.retryable:
                    return [failed] * len(samples)
                last = failed
            except Exception as exc:  # noqa: BLE001 - a worker failure fails its batch only
                error = errors.to_err(exc, self.name)
                if error is exc:
                    _LOGGER.error("[%s] op '%s': %s", _ids(samples), self.name, error.message, exc_info=exc)
                else:
                    _LOGGER.error("[%s] op '%s' failed", _ids(samples), self.name, exc_info=exc)
                return [error] * len(samples)
        attempts = f" ({retry} attempts)" if retry > 1 else ""
        if last is not None:
            return [errors.OpServiceError(last.message + attempts)] * len(samples)
        timeout = errors.TimeoutError_(f"op '{self.name}' timed out after {self.config.timeout_ms:g} ms{attempts}")
        return [timeout] * len(samples)


def _is_dead(item: tuple[_Request, stages.Sample]) -> bool:
    return item[0].done


def _ids(samples: list[stages.Sample]) -> str:
    return " ".join(f"data_id={s.data_id} log_id={s.log_id}" for s in samples)


def make_workers(op: op_mod.Op, op_config: config_mod.OpConfig, config: config_mod.ServerConfig) -> workers.Workers:
    """The kind of workers an op's config asks for: remote, inline, threads or processes."""
    if op_config.server_endpoints:
        from pipeserve.opservice import remote  # the op service's client; imports grpc stubs

        return remote.RemoteWorkers(op.name, op_config, config.max_request_bytes)
    if op_config.inline:
        return workers.InlineWorkers(op)
    if config_mod.effective_is_thread_op(config, op.name):
        return workers.ThreadWorkers(op, op_config.concurrency)
    return workers.ProcessWorkers(op, op_config.concurrency)


_CONSTRUCTOR_KEYS = {
    "concurrency": "concurrency",
    "retry": "retry",
    "batch_size": "batch_size",
    "timeout": "timeout_ms",
    "auto_batching_timeout": "auto_batching_timeout_ms",
    "inline": "inline",
    "server_endpoints": "server_endpoints",
    "fetch_list": "fetch_list",
    "client_config": "client_config",
    "client_type": "client_type",
}


def resolve_op_config(op: op_mod.Op, config: config_mod.ServerConfig) -> config_mod.OpConfig:
    """The op's settings: its constructor arguments, then config.yml, then the defaults."""
    base = config.ops.get(op.name) or config_mod.OpConfig(name=op.name)
    changes: dict[str, Any] = {}
    for key, value in op.constructor_settings().items():
        _check_constructor_value(op.name, key, value)
        changes[_CONSTRUCTOR_KEYS[key]] = tuple(value) if isinstance(value, list) else value
    resolved = dataclasses.replace(base, **changes)
    where = f"op '{op.name}'"
    if resolved.batch_size > 1 and resolved.auto_batching_timeout_ms is None:
        raise errors.DagError(
            f"{where}: batch_size {resolved.batch_size} needs auto_batching_timeout (ms to wait "
            "for a full batch)"
        )
    if resolved.inline and resolved.timeout_ms > 0:
        raise errors.DagError(
            f"{where}: an inline op runs on the event loop and cannot be timed out; remove "
            "its timeout, or run it in threads (inline: false)"
        )
    if resolved.server_endpoints and resolved.inline:
        raise errors.DagError(
            f"{where}: a remote op (server_endpoints {list(resolved.server_endpoints)}) cannot "
            "be inline; remove one of the two"
        )
    return resolved


def _check_constructor_value(op_name: str, key: str, value: Any) -> None:
    if key in ("concurrency", "retry", "batch_size"):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise errors.DagError(f"op '{op_name}': {key} must be an integer >= 1, got {value!r}")
    elif key in ("timeout", "auto_batching_timeout"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise errors.DagError(f"op '{op_name}': {key} must be a number of ms, got {value!r}")
