"""A pipeline answers over HTTP and gRPC."""

from __future__ import annotations

import grpc
import numpy as np

from pipeserve import Op, RequestOp, ResponseOp, codec
from pipeserve.proto.pipeserve.v1 import pipeline_service_pb2 as pb
from pipeserve.proto.pipeserve.v1 import pipeline_service_pb2_grpc as pb_grpc


class Double(Op):
    def process(self, feed_list, typical_logid):
        return [{"y": feed["x"] * 2} for feed in feed_list]


async def test_one_op_pipeline_answers_over_http_and_grpc(serve):
    read = RequestOp()
    double = Double(name="double", input_ops=[read])
    running = await serve(ResponseOp(input_ops=[double]))
    x = np.arange(4, dtype=np.float32)
    request = codec.request_from_values({"x": x})
    async with running.http() as http:
        reply = await http.post("/t/prediction", content=codec.request_to_json(request))
    assert reply.status_code == 200
    values = codec.values_from_response(codec.response_from_json(reply.content))
    np.testing.assert_array_equal(values["y"], x * 2)
    async with grpc.aio.insecure_channel(running.grpc_target) as channel:
        response = await pb_grpc.PipelineServiceStub(channel).inference(request)
    assert response.err_no == 0
    np.testing.assert_array_equal(codec.values_from_response(response)["y"], x * 2)
