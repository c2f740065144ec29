"""The gateway's protocol-neutral core: one Request in, one Response out.

The HTTP and gRPC adapters only decode into a ``Request``, call :meth:`Gateway.infer`
and encode what it returns; everything they have in common lives here, so both answer
the same request the same way.

The default RequestOp and ResponseOp only convert between the wire's key/value strings
and tensors and a dict of values. When the user overrides neither, the HTTP adapter skips
the protobuf messages: it decodes the body into :class:`codec.RequestFields`, calls
:meth:`Gateway.run` and :meth:`Gateway.pack_json`, with the same checks and answers.
"""

from __future__ import annotations

import logging
from typing import Any

from pipeserve import codec
from pipeserve.pipeline import channel, config, errors, executor, profile
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
        self.plain_request = not op_mod.overrides(request_op, "unpack_request_package")
        """The RequestOp only turns the request into its values: run() may take RequestFields."""
        self.plain_response = not op_mod.overrides(response_op, "pack_response_package")
        """The ResponseOp only turns the output into the response: pack_json() skips it."""

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
        try:
            result = await self.run(request, request.name, request.method)
        except errors.PipelineError as error:
            return _error_response(error), error
        return self.pack(result)

    async def run(
        self, request: pb.Request | codec.RequestFields, name: str, method: str
    ) -> channel.ChannelData:
        """Run the DAG on one request (RequestFields only when ``plain_request``).

        Raises:
            errors.PipelineError: The request is refused before the DAG: unknown route, a
                server not ready, or RequestOp.unpack_request_package failed. Errors inside
                the DAG come back in the result, for the ResponseOp.
        """
        data_id = self.executor.next_data_id()
        log_id = request.logid or 0
        self.check_route(name, method)
        wants_timeline = bool(request.profile)
        keys = request.key
        if keys and keys[-1] == profile.PROFILE_KEY:  # the seeds' client asks for it so
            wants_timeline = _drop_profile_key(request)
        if not self.ready:
            raise errors.ClosedError(
                "server is shutting down; retry on another replica"
                if self.draining
                else "server is starting: ops are still running init_op; retry shortly"
            )
        if isinstance(request, codec.RequestFields):
            values: Any = codec.values_from_fields(request)
        else:
            values, log_id = self._unpack(request, data_id, log_id)
        result = await self.executor.run(values, data_id, log_id, bool(request.batch), wants_timeline)
        if not wants_timeline:
            result.timeline = None  # kept for dag.use_profile only: not for this caller
        return result

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

    def pack(self, result: channel.ChannelData) -> tuple[pb.Response, errors.PipelineError | None]:
        """The ResponseOp's answer to ``result``, and the error it carries (if any)."""
        try:
            response: pb.Response = self.response_op.pack_response_package(result)
            error = result.error
        except Exception as exc:  # noqa: BLE001 - user code
            error = self._packing_failed(result, exc)
            response = _error_response(error)
        if result.timeline is not None:
            add_timeline(response, result.timeline)
        return response, error

    def pack_json(self, result: channel.ChannelData) -> tuple[bytes, errors.PipelineError | None]:
        """:meth:`pack` as the HTTP body; straight from the output when ``plain_response``."""
        if self.plain_response and result.error is None and result.timeline is None:
            try:
                return codec.response_json_from_values(result.single_output()), None
            except Exception as exc:  # noqa: BLE001 - what the op returned
                failed = self._packing_failed(result, exc)
                return codec.response_to_json(_error_response(failed)), failed
        response, error = self.pack(result)
        return codec.response_to_json(response), error

    def _packing_failed(self, result: channel.ChannelData, exc: Exception) -> errors.PipelineError:
        if isinstance(exc, errors.PipelineError):
            _LOGGER.warning("[data_id=%s log_id=%s] %s", result.data_id, result.log_id, exc.message, exc_info=exc)
            return exc
        _LOGGER.error(
            "[data_id=%s log_id=%s] ResponseOp.pack_response_package raised",
            result.data_id, result.log_id, exc_info=exc,
        )
        return errors.to_err(exc, type(self.response_op).__name__)


def add_timeline(response: pb.Response, timeline: list[Any]) -> None:
    """Put a request's timeline (``observe.StageTiming``s) into its Response: in
    ``timeline``, and as the seeds' client reads it, a profile line under the key
    ``pipeline.profile``."""
    call = timeline[0]
    response.key.append(profile.PROFILE_KEY)
    response.value.append(profile.format_line(call.data_ids[0], call.log_ids[0], timeline))
    for timing in timeline:
        response.timeline.add(
            op=timing.op, stage=timing.stage, start_ns=timing.start_ns, end_ns=timing.end_ns,
            where=timing.where, data_ids=timing.data_ids, log_ids=timing.log_ids,
        )  # fmt: skip


def _drop_profile_key(request: pb.Request | codec.RequestFields) -> bool:
    """Remove the seeds' ``pipeline.profile`` request key (and its value) from the values."""
    keys = request.key
    del keys[-1]
    if len(request.value) > len(keys):
        del request.value[-1]
    return True


def _error_response(error: errors.PipelineError) -> pb.Response:
    return pb.Response(err_no=error.code, err_msg=error.message)
