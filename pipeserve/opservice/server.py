"""An op service: one Op of a pipeline behind ``pipeserve.v1.OpService`` on gRPC.

``pipeserve opservice --config config.yml --op bow --port 9000`` builds the op from the
config's ``class: module:Class`` (or ``--class``) and serves it with the op's own settings:
``concurrency`` thread or process workers (process workers bound round robin to
``devices``), ``init_op`` once per worker, ``device_type`` and ``precision`` on
``op.runtime_config``. From Python: ``OpServer(op, config)`` and ``await start()``.

Health (``grpc.health.v1``) is NOT_SERVING until every worker's init_op has finished and
again from the moment draining starts. SIGTERM drains: health flips, new calls are refused
with UNAVAILABLE (the gateway retries them on another replica), calls in flight finish
within the grace period. Connections are closed after ``max_connection_age_s`` (with the
grace period to finish their calls), so gateways re-resolve DNS and find new replicas.
With ``metrics_port`` (``--metrics-port``), Prometheus metrics of the op's batches, stages
and answers are served at ``http://host:metrics_port/metrics``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Coroutine, Mapping
from typing import Any, Final

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from pipeserve.monitor import metered_store
from pipeserve.monitor import metrics as metrics_mod
from pipeserve.monitor import tracing
from pipeserve.opservice import metrics_endpoint, payloads, service
from pipeserve.pipeline import config as config_mod
from pipeserve.pipeline import config_parse as parse
from pipeserve.pipeline import classes, errors, executor, logs, startup_heap, workers
from pipeserve.pipeline import op as op_mod
from pipeserve.proto.pipeserve.v1 import op_service_pb2 as pb

_LOGGER = logging.getLogger("pipeserve.opservice")

SERVICE_NAME: Final = pb.DESCRIPTOR.services_by_name["OpService"].full_name


@dataclasses.dataclass(frozen=True)
class Settings:
    """How an op service listens and stops."""

    host: str = "0.0.0.0"
    port: int = 0
    """0 picks a free port."""
    grace_s: float = 20.0
    """How long calls in flight may take to finish when the service stops."""
    max_connection_age_s: float = 300.0
    """Connections older than this are closed (gracefully) so clients re-resolve."""
    metrics_port: int | None = None
    """Serve Prometheus metrics over HTTP on this port (0 picks a free one); None: no metrics."""


class OpServer:
    """Serves one op of ``config`` over gRPC.

    Args:
        op: The op instance; its name selects its section of ``config``.
        config: The pipeline's config (``server_endpoints`` of the op is ignored here:
            this process is the endpoint).
        settings: Address, grace period and connection age.
    """

    def __init__(self, op: op_mod.Op, config: config_mod.ServerConfig, settings: Settings = Settings()) -> None:
        self.op = op
        self.config = config
        self.settings = settings
        op_config = dataclasses.replace(executor.resolve_op_config(op, _local(config, op.name)), server_endpoints=())
        self.op_config = op_config
        op.runtime_config = op_config.runtime
        self.workers = executor.make_workers(op, op_config, config)
        self.store = payloads.open_shared_store(config)
        self.metrics: metrics_mod.PipelineMetrics | None = None
        if settings.metrics_port is not None:
            self.metrics = metrics_mod.PipelineMetrics(
                op.name, queue_depths=lambda: {op.name: self.handler.waiting}, in_flight=lambda: self.handler.running
            )
            self.store = metered_store.metered(self.store, self.metrics)
        self.handler = service.OpHandler(
            op.name, self.workers, config.max_request_bytes, self.store, config.payload.threshold_bytes
        )
        if self.metrics is not None:
            self.handler.observers.add(self.metrics)
        self.port: int | None = None
        self.metrics_port: int | None = None
        """Where the metrics are served, once started."""
        self._metrics_endpoint: metrics_endpoint.MetricsEndpoint | None = None
        self._server: grpc.aio.Server | None = None
        self._health: health.aio.HealthServicer | None = None

    def fork_workers(self) -> None:
        """Start process workers; call before anything starts a thread (gRPC does)."""
        if isinstance(self.workers, workers.ProcessWorkers):
            self.workers.fork()

    async def start(self) -> int:
        """Listen, run every worker's init_op, then report SERVING; returns the port."""
        self.fork_workers()
        limit = self.config.max_request_bytes
        age_ms = int(self.settings.max_connection_age_s * 1000)
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.max_connection_age_ms", age_ms),
                ("grpc.max_connection_age_grace_ms", int(self.settings.grace_s * 1000)),
            ]
        )
        process: tracing.ProcessFn = self.handler.process
        if tracing.setup(f"{self.config.name or 'pipeline'}-{self.op.name}"):
            process = tracing.trace_op_service(process, self.op.name)
        handler = grpc.unary_unary_rpc_method_handler(process)  # raw bytes in and out
        server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, {"Process": handler}),))
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
        host = self.settings.host
        address = f"[{host}]:{self.settings.port}" if ":" in host else f"{host}:{self.settings.port}"
        self.port = server.add_insecure_port(address)
        if not self.port:
            raise OSError(f"op service '{self.op.name}': cannot bind {address}")
        self._server = server
        if self.metrics is not None and self.settings.metrics_port is not None:
            try:
                self._metrics_endpoint = metrics_endpoint.start(self.metrics, host, self.settings.metrics_port)
            except OSError:
                await server.stop(0)
                raise
            self.metrics_port = self._metrics_endpoint.port
        await self._set_serving(False)
        await server.start()
        try:
            await self.workers.start()
        except BaseException:
            await self.stop(grace_s=0)
            raise
        self.handler.accepting = True
        self.handler.start_observing(self.config)
        await self._set_serving(True)
        _LOGGER.info("op service '%s' serving on %s:%s", self.op.name, host, self.port)
        return self.port

    async def stop(self, grace_s: float | None = None) -> None:
        """Drain: refuse new calls, let calls in flight finish within the grace period."""
        self.handler.accepting = False
        if self._server is not None:
            await self._set_serving(False)
            await self._server.stop(self.settings.grace_s if grace_s is None else grace_s)
            self._server = None
        if self._metrics_endpoint is not None:
            self._metrics_endpoint.close()
            self._metrics_endpoint = None
        await self.handler.stop_observing()
        await self.workers.close()
        if self.store is not None:
            await self.store.close()

    async def serve_until_signal(self) -> None:
        """Serve until SIGTERM or SIGINT, then drain."""
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopping.set)
        port = await self.start()
        frozen = startup_heap.freeze()
        _LOGGER.info("op service '%s': %d start-up objects frozen for the garbage collector", self.op.name, frozen)
        metrics = f", metrics at http://{self.settings.host}:{self.metrics_port}/metrics" if self.metrics_port else ""
        print(f"op service '{self.op.name}' serving on {self.settings.host}:{port}{metrics}", flush=True)
        await stopping.wait()
        _LOGGER.info("op service '%s' draining (grace %g s)", self.op.name, self.settings.grace_s)
        await self.stop()

    async def _set_serving(self, serving: bool) -> None:
        assert self._health is not None
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in ("", SERVICE_NAME):
            await self._health.set(name, status)


def _local(config: config_mod.ServerConfig, op_name: str) -> config_mod.ServerConfig:
    """The config with the hosted op's endpoints removed: here it runs locally."""
    op_config = config.ops.get(op_name)
    if op_config is None or not op_config.server_endpoints:
        return config
    ops = {**config.ops, op_name: dataclasses.replace(op_config, server_endpoints=())}
    return dataclasses.replace(config, ops=ops)


def load_op(config: config_mod.ServerConfig, op_name: str, class_path: str | None = None) -> op_mod.Op:
    """Build the op named ``op_name`` from its ``class`` (or ``class_path``).

    Raises:
        errors.ConfigError: The op is not in the config, has no class, or its class cannot
            be imported or is not an Op.
    """
    where = f"{config.source}: op.{op_name}"
    op_config = config.ops.get(op_name)
    if op_config is None:
        known = ", ".join(sorted(config.ops)) or "none"
        raise errors.ConfigError(f"{config.source}: op.{op_name}: no such op (ops: {known})")
    path = class_path or op_config.op_class
    if path is None:
        raise errors.ConfigError(f"{where}.class: required to serve the op alone, e.g. class: ops:BowOp")
    if class_path is not None:
        parse.import_path(class_path, parse.Where("command line", "--class"))
    op_type = classes.import_class(path, f"{where}.class", op_mod.Op)
    op: op_mod.Op = op_type(name=op_name)
    return op


def run(
    config_path: str,
    op_name: str,
    settings: Settings,
    class_path: str | None = None,
    op_overrides: Mapping[str, Any] | None = None,
) -> int:
    """The ``pipeserve opservice`` command: serve until signalled; returns the exit status.

    ``op_overrides`` are keys of the op's config section set from the command line
    (concurrency, device type, precision: what a Deployment sets per op).
    """
    config_dir = os.path.dirname(os.path.abspath(config_path))
    for path in (config_dir, os.getcwd()):
        if path not in sys.path:
            sys.path.insert(0, path)  # the user's op modules sit beside their config
    try:
        config = config_mod.load(config_path, op_overrides={op_name: op_overrides} if op_overrides else None)
        op = load_op(config, op_name, class_path)
        server = OpServer(op, config, settings)
    except (errors.ConfigError, errors.DagError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logs.setup(os.path.join(config.log_dir, op_name), config.log)
    server.fork_workers()
    try:
        _run_loop(server.serve_until_signal())
    except (errors.ConfigError, errors.OpError) as exc:  # a model that cannot load, a failed init_op
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _run_loop(main: Coroutine[Any, Any, None]) -> None:
    if sys.platform != "win32":
        import uvloop

        uvloop.run(main)
    else:  # pragma: no cover
        asyncio.run(main)
