"""Is a process ready? Redis answers PING, an op service reports SERVING, the gateway /readyz 200.

Each probe is one attempt with a short timeout; the supervisor repeats it until a deadline.
"""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from pipeserve.local.plan import LOOPBACK, Process

PROBE_TIMEOUT_S = 1.0


async def ready(process: Process) -> bool:
    """One readiness check of ``process``; False while it is not (yet) ready."""
    try:
        if process.kind == "redis":
            return await _redis(process.port)
        if process.kind == "op":
            return await _grpc_health(process.port)
        return await _http_ready(process.port)
    except (OSError, asyncio.TimeoutError, grpc.RpcError):
        return False


async def _redis(port: int) -> bool:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(LOOPBACK, port), PROBE_TIMEOUT_S)
    try:
        writer.write(b"PING\r\n")
        await writer.drain()
        return await asyncio.wait_for(reader.readline(), PROBE_TIMEOUT_S) == b"+PONG\r\n"
    finally:
        writer.close()


async def _grpc_health(port: int) -> bool:
    async with grpc.aio.insecure_channel(f"{LOOPBACK}:{port}") as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=PROBE_TIMEOUT_S)
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


async def _http_ready(port: int) -> bool:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(LOOPBACK, port), PROBE_TIMEOUT_S)
    try:
        writer.write(f"GET /readyz HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), PROBE_TIMEOUT_S)
        return status_line.split(b" ", 2)[1:2] == [b"200"]
    finally:
        writer.close()
