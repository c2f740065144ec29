"""PipelineServer: the seeds' entry point, serving one DAG over HTTP and gRPC.

``run_server()`` serves until SIGINT or SIGTERM. With ``build_dag_each_worker: True`` it
starts ``worker_num`` processes, each with its own DAG and its own SO_REUSEPORT sockets
on the same ports, so the kernel spreads connections across them. Process ops are forked
before any server thread exists. ``start()``/``stop()`` run one DAG inside an existing
event loop, for embedding and tests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
from collections.abc import Mapping
from typing import Any

import uvicorn

from pipeserve.gateway import core, grpc, http, http_protocol
from pipeserve.monitor import metered_store
from pipeserve.monitor import metrics as metrics_mod
from pipeserve.monitor import tracing
from pipeserve.pipeline import config as config_mod
from pipeserve.pipeline import dag, errors, executor, logs, startup_heap
from pipeserve.pipeline import op as op_mod

_LOGGER = logging.getLogger("pipeserve.server")

DEFAULT_NAME = "pipeline"


@dataclasses.dataclass(frozen=True)
class Endpoints:
    """Where a started server listens (None for a port that is not served)."""

    host: str
    http_port: int | None
    rpc_port: int | None


class PipelineServer:
    """Serves a DAG (seed §2.1): ``set_response_op``, ``prepare_server``, ``run_server``."""

    def __init__(self, name: str | None = None) -> None:
        self.name = name
        self._graph: dag.Graph | None = None
        self._config: config_mod.ServerConfig | None = None
        self._serving: _Serving | None = None

    def set_response_op(self, response_op: op_mod.ResponseOp) -> None:
        """Build and check the DAG that ends in ``response_op``."""
        self._graph = dag.build(response_op)
        if self._config is not None:
            _check_config_ops(self._config, self._graph)

    def prepare_server(self, yml_file: str | None = None, yml_dict: Mapping[str, Any] | None = None) -> None:
        """Load config.yml (a path, or the mapping already loaded)."""
        source: Any = yml_dict if yml_dict is not None else yml_file
        if source is None:
            raise errors.ConfigError("prepare_server needs yml_file or yml_dict")
        config = config_mod.load(source, name=self.name)
        if config.name is None:
            config = dataclasses.replace(config, name=DEFAULT_NAME)
        if self._graph is not None:
            _check_config_ops(config, self._graph)
        self._config = config

    def prepare_pipeline_config(
        self, yml_file: str | None = None, yml_dict: Mapping[str, Any] | None = None
    ) -> None:
        """Load config.yml; the seeds' variant for local predictors (the same here)."""
        self.prepare_server(yml_file, yml_dict)

    @property
    def config(self) -> config_mod.ServerConfig:
        """The loaded config."""
        if self._config is None:
            raise errors.ConfigError("call prepare_server(config.yml) first")
        return self._config

    @property
    def graph(self) -> dag.Graph:
        """The checked DAG."""
        if self._graph is None:
            raise errors.DagError("call set_response_op(response_op) first")
        return self._graph

    # Serving ------------------------------------------------------------------------------

    def run_server(self) -> None:
        """Serve until SIGINT or SIGTERM, then drain and stop."""
        config, graph = self.config, self.graph
        logs.setup(config.log_dir, config.log)
        if config.build_dag_each_worker and config.worker_num > 1:
            _WorkerProcesses(graph, config).run()
            return
        serving = _Serving(graph, config)
        serving.executor.fork_workers()
        _run_loop(serving.serve_until_signal(config.http_port, config.rpc_port, reuse_port=False, announce=True))

    async def start(self) -> Endpoints:
        """Start serving in the running event loop (one DAG, ports from the config)."""
        config, graph = self.config, self.graph
        logs.setup(config.log_dir, config.log)
        self._serving = _Serving(graph, config)
        self._serving.executor.fork_workers()
        return await self._serving.start(config.http_port, config.rpc_port, reuse_port=False)

    async def stop(self, grace_s: float = 5.0) -> None:
        """Drain (readiness off, no new requests), let in-flight ones finish, stop."""
        if self._serving is not None:
            await self._serving.stop(grace_s)
            self._serving = None

    @property
    def gateway(self) -> core.Gateway:
        """The running gateway (after start())."""
        if self._serving is None:
            raise RuntimeError("the server is not started")
        return self._serving.gateway


class _Serving:
    """One DAG behind its HTTP and gRPC servers, in one event loop."""

    def __init__(self, graph: dag.Graph, config: config_mod.ServerConfig, index: int = 0, count: int = 1) -> None:
        self.config = config
        self.executor = executor.DagExecutor(graph, config, worker_index=index, worker_count=count)
        self.gateway = core.Gateway(config, graph.request_op, graph.response_op, self.executor)
        self.metrics: metrics_mod.PipelineMetrics | None = None
        if config.metrics:
            self.metrics = metrics_mod.PipelineMetrics(
                config.name or "", queue_depths=self.executor.queue_depths, in_flight=lambda: self.executor.in_flight
            )
            self.executor.observers.add(self.metrics)
        self.traced = tracing.setup(config.name or "")
        if self.traced:
            tracing.GatewayTracing(config.name or "").install(self.executor)
        self._grpc: grpc.GrpcServer | None = None
        self._http: uvicorn.Server | None = None
        self._http_loop: asyncio.Task[None] | None = None

    async def start(self, http_port: int | None, rpc_port: int | None, *, reuse_port: bool) -> Endpoints:
        host = self.config.host
        bound_rpc = bound_http = None
        if rpc_port is not None:
            self._grpc = grpc.GrpcServer(self.gateway, traced=self.traced)
            bound_rpc = self._grpc.bind(host, rpc_port)
            await self._grpc.start()
        if http_port is not None:
            sock = _http_socket(host, http_port, reuse_port)
            bound_http = sock.getsockname()[1]
            await self._start_http(sock)
        await self.executor.start()
        if self.metrics is not None:
            self.executor.payload_store = metered_store.metered(self.executor.payload_store, self.metrics)
        if self._grpc is not None:
            await self._grpc.set_serving(True)
        return Endpoints(host, bound_http, bound_rpc)

    async def _start_http(self, sock: socket.socket) -> None:
        uv_config = uvicorn.Config(
            (http.TracedHttpApp if self.traced else http.HttpApp)(self.gateway, self.metrics),
            loop="none",
            http=http_protocol.OneWriteProtocol,
            ws="none",
            lifespan="off",
            access_log=False,
            log_level="warning",
            timeout_graceful_shutdown=5,
            backlog=2048,
        )
        uv_config.load()
        server = uvicorn.Server(uv_config)
        server.lifespan = uv_config.lifespan_class(uv_config)
        await server.startup(sockets=[sock])
        self._http = server
        self._http_loop = asyncio.create_task(server.main_loop())

    async def stop(self, grace_s: float) -> None:
        self.gateway.draining = True
        stops = []
        if self._grpc is not None:
            stops.append(self._grpc.stop(grace_s))
        if self._http is not None:
            stops.append(self._stop_http(grace_s))
        await asyncio.gather(*stops)
        await self.executor.close()

    async def _stop_http(self, grace_s: float) -> None:
        server, main_loop = self._http, self._http_loop
        assert server is not None and main_loop is not None
        server.config.timeout_graceful_shutdown = max(1, int(grace_s))
        server.should_exit = True
        await main_loop
        await server.shutdown()

    async def serve_until_signal(
        self, http_port: int | None, rpc_port: int | None, *, reuse_port: bool, announce: bool, ready: Any = None
    ) -> None:
        loop = asyncio.get_running_loop()
        stopping = asyncio.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stopping.set)
        endpoints = await self.start(http_port, rpc_port, reuse_port=reuse_port)
        _LOGGER.info("%d start-up objects frozen for the garbage collector", startup_heap.freeze())
        if announce:
            print(banner(self.gateway, endpoints), flush=True)
        if ready is not None:
            ready.set()
        await stopping.wait()
        _LOGGER.info("stopping: draining in-flight requests")
        await self.stop(grace_s=5.0)


class _WorkerProcesses:
    """``worker_num`` processes, each with its own DAG, sharing the ports (SO_REUSEPORT)."""

    def __init__(self, graph: dag.Graph, config: config_mod.ServerConfig) -> None:
        self.graph = graph
        self.config = config
        self._ctx = multiprocessing.get_context("fork")
        self._stopping = False

    def run(self) -> None:
        config = self.config
        # Hold each port (bound, not listening) so that every worker binds the same one.
        held = [
            _http_socket(config.host, port, reuse_port=True) if port is not None else None
            for port in (config.http_port, config.rpc_port)
        ]
        http_port, rpc_port = (sock.getsockname()[1] if sock else None for sock in held)
        count = config.worker_num
        readies = [self._ctx.Event() for _ in range(count)]
        procs = [self._spawn(i, count, http_port, rpc_port, readies[i]) for i in range(count)]
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)
        # The banner means "serving": print it once every worker has finished its init_ops.
        while not self._stopping and not all(ready.is_set() for ready in readies):
            if any(proc.exitcode is not None for proc in procs):
                _LOGGER.error("a worker process exited while starting; stopping")
                self._stopping = True
                break
            multiprocessing.connection.wait([p.sentinel for p in procs], timeout=0.1)
        if not self._stopping:
            print(banner_for(config, Endpoints(config.host, http_port, rpc_port), workers=count), flush=True)
        while not self._stopping:
            for i, proc in enumerate(procs):
                if proc.exitcode is not None and not self._stopping:
                    _LOGGER.error("worker process %d exited with code %s; starting it again", i, proc.exitcode)
                    procs[i] = self._spawn(i, count, http_port, rpc_port, self._ctx.Event())
            multiprocessing.connection.wait([p.sentinel for p in procs], timeout=0.5)
        for proc in procs:
            if proc.is_alive() and proc.pid is not None:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in procs:
            proc.join(15)
            if proc.is_alive():
                proc.kill()
        for sock in held:
            if sock is not None:
                sock.close()

    def _on_signal(self, signum: int, frame: Any) -> None:
        self._stopping = True

    def _spawn(self, index: int, count: int, http_port: int | None, rpc_port: int | None, ready: Any) -> Any:
        proc = self._ctx.Process(
            target=self._worker_main,
            args=(index, count, http_port, rpc_port, ready),
            name=f"pipeserve-worker-{index}",
        )
        proc.start()
        return proc

    def _worker_main(self, index: int, count: int, http_port: int | None, rpc_port: int | None, ready: Any) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_DFL)
        serving = _Serving(self.graph, self.config, index, count)
        serving.executor.fork_workers()
        _run_loop(serving.serve_until_signal(http_port, rpc_port, reuse_port=True, announce=False, ready=ready))


def banner(gateway: core.Gateway, endpoints: Endpoints) -> str:
    """What a started server prints: where to send requests."""
    return banner_for(gateway.config, endpoints, workers=1)


def banner_for(config: config_mod.ServerConfig, endpoints: Endpoints, *, workers: int) -> str:
    host = "127.0.0.1" if endpoints.host in ("0.0.0.0", "::", "") else endpoints.host
    lines = [f"pipeserve: serving '{config.name}' ({workers} worker process{'es' if workers > 1 else ''}, pid {os.getpid()})"]
    if endpoints.http_port is not None:
        lines.append(f"  HTTP  http://{host}:{endpoints.http_port}/{config.name}/{config.methods[0]}")
    if endpoints.rpc_port is not None:
        lines.append(f"  gRPC  {host}:{endpoints.rpc_port}  ({grpc.SERVICE_NAME}/inference)")
    return "\n".join(lines)


def _check_config_ops(config: config_mod.ServerConfig, graph: dag.Graph) -> None:
    for name in config.ops:
        if name not in graph.ops:
            raise errors.ConfigError(
                f"{config.source}: op.{name}: no op named '{name}' in the DAG; its ops are "
                f"{', '.join(graph.ops) or 'none'}"
            )


def _http_socket(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot bind the HTTP port {host}:{port}: {exc.strerror}") from exc
    return sock


def _run_loop(main: Any) -> None:
    if sys.platform != "win32":
        import uvloop

        uvloop.run(main)
    else:  # pragma: no cover
        asyncio.run(main)
