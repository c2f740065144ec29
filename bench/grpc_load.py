"""gRPC load generator: keeps C unary calls in flight for D seconds and prints one JSON line.

The gRPC counterpart of ``wrk -c C``: C callers, each sending its next request as soon as its
last answer came back, over one channel (or ``--channels N``, each its own HTTP/2 connection).
It runs as its own process, so its CPU is not the server's event loop's.

Output: ``{"rps", "p50_ms", "p99_ms", "errors", "requests", "duration_s"}``. ``requests``
counts every answered call, as wrk does; ``errors`` counts failed RPCs and answers whose
``err_no`` is not 0.

Run: ``python -m bench.grpc_load --target 127.0.0.1:8001 --workload w1 -c 32 -d 20``
from the repository root.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import time

import grpc
import numpy as np
import uvloop

from bench import grpc_wire
from pipeserve.proto.pipeserve.v1 import pipeline_service_pb2 as pb
from pipeserve.proto.pipeserve.v1 import pipeline_service_pb2_grpc as pb_grpc

#: A call slower than this is abandoned and counted as an error (wrk's default timeout).
CALL_TIMEOUT_S = 2.0


@dataclasses.dataclass
class Tally:
    """What the callers observed; callers share one, safely, on one event loop."""

    latencies_s: list[float] = dataclasses.field(default_factory=list)
    errors: int = 0


async def _caller(
    stub: pb_grpc.PipelineServiceStub, request: pb.Request, deadline: float, tally: Tally
) -> None:
    while (started := time.perf_counter()) < deadline:
        try:
            response = await stub.inference(request, timeout=CALL_TIMEOUT_S)
        except grpc.aio.AioRpcError:
            tally.errors += 1
            continue
        tally.latencies_s.append(time.perf_counter() - started)
        if response.err_no != 0:
            tally.errors += 1


def _channel(target: str) -> grpc.aio.Channel:
    # A local subchannel pool gives each channel its own connection; by default channels
    # to the same target share one, which would make --channels meaningless.
    return grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])


async def run_load(
    target: str, workload: str, concurrency: int, duration_s: float, channels: int
) -> dict[str, float]:
    """Runs the load and returns its figures."""
    request = grpc_wire.request(workload)
    opened = [_channel(target) for _ in range(channels)]
    stubs = [pb_grpc.PipelineServiceStub(channel) for channel in opened]
    tally = Tally()
    started = time.perf_counter()
    deadline = started + duration_s
    try:
        async with asyncio.TaskGroup() as group:
            for index in range(concurrency):
                group.create_task(_caller(stubs[index % channels], request, deadline, tally))
    finally:
        for channel in opened:
            await channel.close()
    return _figures(tally, time.perf_counter() - started)


def _figures(tally: Tally, elapsed_s: float) -> dict[str, float]:
    latencies_ms = np.asarray(tally.latencies_s) * 1000
    answered = len(latencies_ms)
    p50, p99 = np.percentile(latencies_ms, [50, 99]) if answered else (float("nan"), float("nan"))
    return {
        "rps": answered / elapsed_s,
        "p50_ms": float(p50),
        "p99_ms": float(p99),
        "errors": tally.errors,
        "requests": answered,
        "duration_s": elapsed_s,
    }


def main() -> None:
    """Runs the load given on the command line and prints its figures as JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", required=True, help="host:port of the PipelineService")
    parser.add_argument("--workload", choices=("w1", "w2"), required=True)
    parser.add_argument("-c", "--concurrency", type=int, default=32, help="calls kept in flight")
    parser.add_argument("-d", "--duration", type=float, default=20.0, help="seconds of load")
    parser.add_argument("--channels", type=int, default=1, help="channels (connections) to spread calls over")
    args = parser.parse_args()
    if args.concurrency < 1 or args.channels < 1 or args.duration <= 0:
        parser.error("--concurrency and --channels must be >= 1 and --duration > 0")
    figures = uvloop.run(run_load(args.target, args.workload, args.concurrency, args.duration, args.channels))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
