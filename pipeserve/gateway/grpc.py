"""gRPC front door: ``pipeserve.v1.PipelineService/inference``, health and reflection.

Pipeline errors travel inside the Response (``err_no``/``err_msg``) with status OK, as the
seeds' clients expect; a status other than OK means the call itself failed.
"""

from __future__ import annotations

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from pipeserve.gateway import core
from pipeserve.monitor import tracing
from pipeserve.proto.pipeserve.v1 import pipeline_service_pb2 as pb
from pipeserve.proto.pipeserve.v1 import pipeline_service_pb2_grpc as pb_grpc

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["PipelineService"].full_name


class PipelineServicer(pb_grpc.PipelineServiceServicer):
    """Decodes nothing itself: gRPC hands over a parsed Request."""

    def __init__(self, gateway: core.Gateway, *, traced: bool = False) -> None:
        self.gateway = gateway
        self.traced = traced
        """Hand each call's metadata (``traceparent``) to the tracing."""

    async def inference(self, request: pb.Request, context: grpc.aio.ServicerContext) -> pb.Response:
        if not request.clientip:
            request.clientip = _peer_host(context.peer())
        if self.traced:
            token = tracing.carry({key: value for key, value in context.invocation_metadata() or ()})
            try:
                response, _ = await self.gateway.infer(request)
            finally:
                tracing.forget(token)
            return response
        response, _ = await self.gateway.infer(request)
        return response


class GrpcServer:
    """The gateway's gRPC server with its health service."""

    def __init__(self, gateway: core.Gateway, *, traced: bool = False) -> None:
        limit = gateway.config.max_request_bytes
        self.server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", limit),
                ("grpc.so_reuseport", 1),
            ]
        )
        servicer = PipelineServicer(gateway, traced=traced)
        pb_grpc.add_PipelineServiceServicer_to_server(servicer, self.server)  # type: ignore[no-untyped-call]
        self.health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server)

    def bind(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0 picks a free port); returns the bound port."""
        bound: int = self.server.add_insecure_port(f"{_bracket(host)}:{port}")
        if bound == 0:
            raise OSError(f"cannot bind the gRPC port {host}:{port}")
        return bound

    async def start(self) -> None:
        """Start serving, health NOT_SERVING until :meth:`set_serving`."""
        await self.set_serving(False)
        await self.server.start()

    async def set_serving(self, serving: bool) -> None:
        status = health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        for service in ("", SERVICE_NAME):
            await self.health.set(service, status)

    async def stop(self, grace_s: float) -> None:
        """Refuse new calls and let those in flight finish within ``grace_s``."""
        await self.set_serving(False)
        await self.server.stop(grace_s)


def _peer_host(peer: str) -> str:
    # "ipv4:127.0.0.1:5000" / "ipv6:[::1]:5000"
    kind, _, address = peer.partition(":")
    host = address.rsplit(":", 1)[0]
    return host.strip("[]") if kind in ("ipv4", "ipv6") else peer


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host
