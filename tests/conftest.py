"""Fixtures shared by the tests: servers on loopback with free ports, stopped afterwards."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from pipeserve import PipelineServer, ResponseOp
from pipeserve.gateway.pipeline_server import Endpoints


@dataclasses.dataclass
class Running:
    """A server started by the ``serve`` fixture."""

    server: PipelineServer
    endpoints: Endpoints
    log_dir: Path

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.endpoints.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.endpoints.rpc_port}"

    def url(self, method: str = "prediction") -> str:
        return f"{self.http_url}/{self.server.config.name}/{method}"

    def http(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.http_url, timeout=30)


Serve = Callable[..., Awaitable[Running]]


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Serve]:
    """Start a PipelineServer in the test's event loop on free loopback ports.

    ``await serve(response_op, {"op": {...}, "dag": {...}}, name="t")``; the config gets
    ``host: 127.0.0.1``, port 0 for both ports and a log directory under tmp_path unless
    the test sets them. Every server is stopped at teardown.
    """
    started: list[PipelineServer] = []

    async def start(response_op: ResponseOp, config: dict[str, Any] | None = None, name: str = "t") -> Running:
        log_dir = tmp_path / f"logs{len(started)}"
        full = {
            "host": "127.0.0.1",
            "http_port": 0,
            "rpc_port": 0,
            "worker_num": 64,
            "log_dir": str(log_dir),
            **(config or {}),
        }
        server = PipelineServer(name=name)
        server.set_response_op(response_op)
        server.prepare_server(yml_dict=full)
        endpoints = await server.start()
        started.append(server)
        return Running(server, endpoints, log_dir)

    try:
        yield start
    finally:
        for server in started:
            await server.stop(grace_s=1)
