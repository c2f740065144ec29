"""The gateway's protocol-neutral core: one Request in, one Response out.

The HTTP and gRPC adapters only decode into a ``Request``, call :meth:`Gateway.infer`
and encode what it returns; everything they have in common lives here, so both answer
the same request the same way.
"""

from __future__ import annotations

import logging
from typing import Any

from pipeserve.pipeline import channel, config, errors, executor
from pipeserve.pipeline import op as op_mod
from pipeserve.proto.pipeserve.v1 import pipeline_service_pb2 as pb

_LOGGER = logging.getLogger("pipeserve.gateway")


class Gateway:
    """Checks the service name and method, runs the DAG and packs the answer."""

    def __init__(
        self,
        server_config: config.ServerConfig,
        request_op: op_mod.RequestOp,
        response_op: op_mod.ResponseOp,
        dag_executor: executor.DagExecutor,
    ) -> None:
        self.config = server_config
        self.name = server_config.name or ""
        self.methods = server_config.methods
        self.request_op = request_op
        self.response_op = response_op
        self.executor = dag_executor
        self.draining = False

    @property
    def ready(self) -> bool:
        """True once every op's init_op finished, until the server starts draining."""
        return self.executor.ready and not self.draining

    def check_route(self, name: str, method: str) -> None:
        """Raise NoServiceError unless this server serves ``/{name}/{method}``."""
        if name and name != self.name:
            raise errors.NoServiceError(
                f"unknown service name '{name}': this server serves '{self.name}' at "
                f"/{self.name}/{self.methods[0]}"
            )
        if method and method not in self.methods:
            raise errors.NoServiceError(
                f"unknown method '{method}' for service '{self.name}': use one of "
                f"{', '.join(self.methods)}"
            )

    async def infer(self, request: pb.Request) -> tuple[pb.Response, errors.PipelineError | None]:
        """Answer one request; the error (if any) tells the adapters which status to use."""
        data_id = self.executor.next_data_id()
        log_id = request.logid
        try:
            self.check_route(request.name, request.method)
            if not self.ready:
                raise errors.ClosedError(
                    "server is shutting down; retry on another replica"
                    if self.draining
                    else "server is starting: ops are still running init_op; retry shortly"
                )
            values, log_id = self._unpack(request, data_id, log_id)
        except errors.PipelineError as error:
            return _error_response(error), error
        result = await self.executor.run(values, data_id, log_id, request.batch)
        return self._pack(result)

    def _unpack(self, request: pb.Request, data_id: int, log_id: int) -> tuple[Any, int]:
        try:
            unpacked = self.request_op.unpack_request_package(request)
        except errors.PipelineError:
            raise
        except Exception as exc:  # noqa: BLE001 - user code
            _LOGGER.error(
                "[data_id=%s log_id=%s] RequestOp.unpack_request_package raised", data_id, log_id, exc_info=exc
            )
            raise errors.to_err(exc, type(self.request_op).__name__) from exc
        if isinstance(unpacked, tuple) and len(unpacked) == 4:
            values, new_log_id, prod_errcode, prod_errinfo = unpacked
            if prod_errcode is not None:
                raise errors.ProductError(prod_errcode, str(prod_errinfo or f"product error {prod_errcode}"))
            return values, log_id if new_log_id is None else int(new_log_id)
        return unpacked, log_id

    def _pack(self, result: channel.ChannelData) -> tuple[pb.Response, errors.PipelineError | None]:
        try:
            return self.response_op.pack_response_package(result), result.error
        except errors.PipelineError as error:
            _LOGGER.warning("[data_id=%s log_id=%s] %s", result.data_id, result.log_id, error.message)
            return _error_response(error), error
        except Exception as exc:  # noqa: BLE001 - user code
            _LOGGER.error(
                "[data_id=%s log_id=%s] ResponseOp.pack_response_package raised",
                result.data_id, result.log_id, exc_info=exc,
            )
            internal = errors.to_err(exc, type(self.response_op).__name__)
            return _error_response(internal), internal


def _error_response(error: errors.PipelineError) -> pb.Response:
    return pb.Response(err_no=error.code, err_msg=error.message)
