"""gRPC ceiling: a grpc.aio unary server implementing ``pipeserve.v1.PipelineService/inference``.

Mode ``w1`` does the whole W1 ensemble inline and answers ``tensors["prediction"]``; mode ``w2``
puts each request through the hand-written micro-batcher and answers ``tensors["y"]``. One
process, uvloop, the generated service code: the cheapest gRPC path a pipeline can be
compared with.

Run: ``python -m bench.ceilings.grpc_echo --port 8001 --mode w1`` from the repository root.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import grpc
import numpy as np
import uvloop

from bench import grpc_wire, workloads
from bench.ceilings import batcher
from pipeserve.proto.pipeserve.v1 import pipeline_service_pb2 as pb
from pipeserve.proto.pipeserve.v1 import pipeline_service_pb2_grpc as pb_grpc


class W1Servicer(pb_grpc.PipelineServiceServicer):
    """W1 inline: read → {bow, cnn} → combine, in the handler."""

    def __init__(self) -> None:
        self._model = workloads.W1Model()

    async def inference(self, request: pb.Request, context: grpc.aio.ServicerContext) -> pb.Response:
        try:
            words = request.value[list(request.key).index("words")]
        except (ValueError, IndexError):
            return pb.Response(err_no=1, err_msg="request must carry key 'words' with its value")
        prediction = self._model(words)
        return pb.Response(
            err_no=0, err_msg="", tensors={workloads.ANSWER_TENSOR["w1"]: grpc_wire.to_tensor(prediction)}
        )


class W2Servicer(pb_grpc.PipelineServiceServicer):
    """W2: every request goes through one micro-batcher."""

    def __init__(self, micro_batcher: batcher.MicroBatcher) -> None:
        self._batcher = micro_batcher

    async def inference(self, request: pb.Request, context: grpc.aio.ServicerContext) -> pb.Response:
        if "x" not in request.tensors:
            return pb.Response(err_no=1, err_msg="request must carry tensor 'x' (float32, shape [8])")
        x = grpc_wire.from_tensor(request.tensors["x"]).astype(np.float32, copy=False)
        y = await self._batcher.submit(x)
        return pb.Response(
            err_no=0, err_msg="", tensors={workloads.ANSWER_TENSOR["w2"]: grpc_wire.to_tensor(y)}
        )


async def serve(port: int, mode: str) -> None:
    """Serves until SIGTERM or SIGINT, then stops with a short grace period."""
    micro_batcher = batcher.MicroBatcher(workloads.W2_BATCH_SIZE, workloads.W2_BATCH_TIMEOUT_S)
    servicer = W1Servicer() if mode == "w1" else W2Servicer(micro_batcher)
    server = grpc.aio.server()
    pb_grpc.add_PipelineServiceServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    if mode == "w2":
        micro_batcher.start()
    await server.start()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await server.stop(grace=1.0)
    await micro_batcher.close()


def main() -> None:
    """Serves the mode given on the command line until SIGTERM."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    parser.add_argument("--mode", choices=("w1", "w2"), required=True, help="the workload to serve")
    args = parser.parse_args()
    uvloop.run(serve(args.port, args.mode))


if __name__ == "__main__":
    main()
