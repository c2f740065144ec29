"""The gRPC front door: errors travel in the Response, the call itself stays OK.

Aspects, all over real gRPC on loopback:

- a bad tensor, unpaired key/value, an unknown service name or method each answer a
  Response with their ``err_no`` and exact ``err_msg``, with status OK, as the seeds'
  clients expect; the next call is served (STYLE R5, R6);
- the standard health service reports SERVING for the server and for the pipeline service;
- server reflection lists the pipeline service and serves its descriptors;
- a message over ``max_request_bytes`` is refused with RESOURCE_EXHAUSTED, and the server
  keeps serving (STYLE R9).
"""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest
from google.protobuf import descriptor_pool
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import proto_reflection_descriptor_database as reflection_db
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from pipeserve import Op, RequestOp, ResponseOp, codec
from pipeserve.pipeline import errors
from pipeserve.proto.pipeserve.v1 import pipeline_service_pb2 as pb
from pipeserve.proto.pipeserve.v1 import pipeline_service_pb2_grpc as pb_grpc

LIMIT = 2048
SERVICE = "pipeserve.v1.PipelineService"
ALLOWED = ", ".join(codec.ALLOWED_DTYPES)


class Echo(Op):
    """Answers the request's values as they came."""


async def start_echo(serve):
    read = RequestOp()
    echo = Echo(name="echo", input_ops=[read])
    config = {"method": ["prediction", "infer"], "max_request_bytes": LIMIT}
    return await serve(ResponseOp(input_ops=[echo]), config, name="t")


async def call(stub, request: pb.Request) -> tuple[pb.Response, grpc.StatusCode]:
    rpc = stub.inference(request, timeout=30)
    response = await rpc
    return response, await rpc.code()


async def assert_serves_next_call(stub) -> None:
    x = np.arange(3, dtype=np.int64)
    response, status = await call(stub, codec.request_from_values({"words": "still here", "x": x}))
    assert status == grpc.StatusCode.OK
    assert (response.err_no, response.err_msg) == (0, "")
    values = codec.values_from_response(response)
    assert values["words"] == "still here"
    np.testing.assert_array_equal(values["x"], x)


BAD_REQUESTS = {
    "tensor bytes that do not match dtype x shape": (
        pb.Request(tensors={"x": pb.Tensor(dtype="float32", shape=[2, 2], data=bytes(12))}),
        errors.ErrCode.INPUT_PARAMS_ERROR,
        "tensors.x: 12 bytes do not match float32 x [2, 2] (16 bytes)",
    ),
    "an unsupported dtype": (
        pb.Request(tensors={"x": pb.Tensor(dtype="complex64", shape=[1], data=bytes(8))}),
        errors.ErrCode.INPUT_PARAMS_ERROR,
        f"tensors.x.dtype: unsupported dtype 'complex64'; use one of {ALLOWED}",
    ),
    "a negative dimension": (
        pb.Request(tensors={"x": pb.Tensor(dtype="int8", shape=[-1], data=b"")}),
        errors.ErrCode.INPUT_PARAMS_ERROR,
        "tensors.x.shape[0]: must be an integer >= 0, got -1",
    ),
    "more keys than values": (
        pb.Request(key=["a", "b"], value=["1"]),
        errors.ErrCode.INPUT_PARAMS_ERROR,
        "key/value: 2 keys but 1 values",
    ),
    "a key sent twice": (
        pb.Request(key=["a", "a"], value=["1", "2"]),
        errors.ErrCode.INPUT_PARAMS_ERROR,
        "key: 'a' appears twice; send each key once",
    ),
    "an unknown service name": (
        pb.Request(name="other", key=["a"], value=["1"]),
        errors.ErrCode.NO_SERVICE,
        "unknown service name 'other': this server serves 't' at /t/prediction",
    ),
    "an unknown method": (
        pb.Request(name="t", method="nope", key=["a"], value=["1"]),
        errors.ErrCode.NO_SERVICE,
        "unknown method 'nope' for service 't': use one of prediction, infer",
    ),
}


@pytest.mark.parametrize("request_, err_no, message", BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
async def test_bad_request_answers_ok_status_with_err_no_and_the_next_call_is_served(
    serve, request_, err_no, message
):
    running = await start_echo(serve)
    async with grpc.aio.insecure_channel(running.grpc_target) as channel:
        stub = pb_grpc.PipelineServiceStub(channel)
        response, status = await call(stub, request_)
        assert status == grpc.StatusCode.OK
        assert (response.err_no, response.err_msg) == (err_no, message)
        assert list(response.key) == list(response.value) == [] and not response.tensors
        assert "Traceback" not in response.err_msg
        await assert_serves_next_call(stub)


async def test_configured_method_and_name_are_accepted_over_grpc(serve):
    running = await start_echo(serve)
    async with grpc.aio.insecure_channel(running.grpc_target) as channel:
        stub = pb_grpc.PipelineServiceStub(channel)
        response, status = await call(stub, pb.Request(name="t", method="infer", key=["a"], value=["b"]))
    assert status == grpc.StatusCode.OK
    assert (response.err_no, list(response.key), list(response.value)) == (0, ["a"], ["b"])


@pytest.mark.parametrize("service", ["", SERVICE])
async def test_health_reports_serving_once_started(serve, service):
    running = await start_echo(serve)
    async with grpc.aio.insecure_channel(running.grpc_target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=30)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_pipeline_service(serve):
    running = await start_echo(serve)
    async with grpc.aio.insecure_channel(running.grpc_target) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        names = [s.name async for reply in replies for s in reply.list_services_response.service]
    assert SERVICE in names
    assert "grpc.health.v1.Health" in names


async def test_reflection_serves_the_descriptor_of_inference(serve):
    running = await start_echo(serve)

    def describe() -> tuple[str, str]:
        # The reflection client is blocking: it runs beside the server's event loop.
        with grpc.insecure_channel(running.grpc_target) as channel:
            pool = descriptor_pool.DescriptorPool(reflection_db.ProtoReflectionDescriptorDatabase(channel))
            method = pool.FindServiceByName(SERVICE).methods_by_name["inference"]
            return method.input_type.full_name, method.output_type.full_name

    assert await asyncio.to_thread(describe) == ("pipeserve.v1.Request", "pipeserve.v1.Response")


async def test_message_over_max_request_bytes_is_refused_and_the_server_keeps_serving(serve):
    running = await start_echo(serve)
    big = pb.Request(key=["a"], value=["x" * (2 * LIMIT)])
    async with grpc.aio.insecure_channel(running.grpc_target) as channel:
        stub = pb_grpc.PipelineServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.inference(big, timeout=30)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        await assert_serves_next_call(stub)
