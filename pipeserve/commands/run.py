"""``pipeserve run PIPELINESERVICE.yaml``: run a PipelineService here, as local processes."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeserve.local.supervisor import Supervisor

NAME = "run"
HELP = "run a PipelineService on this machine: Redis, op services and gateway as processes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pipelineservice", help="path of the PipelineService YAML (its folder holds the op code)")
    parser.add_argument("--workdir", help="where config, graph and logs go (default: a new temporary folder)")
    parser.add_argument("--http-port", type=int, help="the gateway's HTTP port (default: the spec's; 0: a free one)")
    parser.add_argument("--grpc-port", type=int, help="the gateway's gRPC port (default: the spec's; 0: a free one)")
    devices = parser.add_mutually_exclusive_group()
    devices.add_argument("--cpu", dest="cpu_only", action="store_true", default=None, help="run GPU ops on the CPU")
    devices.add_argument("--gpu", dest="cpu_only", action="store_false", help="use GPUs as the spec asks")


def run(args: argparse.Namespace) -> int:
    from pipeserve.local import plan, supervisor

    source = Path(args.pipelineservice).resolve()
    workdir = Path(args.workdir).resolve() if args.workdir else Path(tempfile.mkdtemp(prefix="pipeserve-run-"))
    options = plan.Options(workdir=workdir, http_port=args.http_port, grpc_port=args.grpc_port, cpu_only=args.cpu_only)
    try:
        document = plan.load_document(source)
        the_plan = plan.make_plan(document, source.parent, options)
    except plan.PlanError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for note in the_plan.notes:
        print(f"note: {note}")
    print(f"pipeserve run: {document['metadata']['name']}: {len(the_plan.processes)} processes, files in {workdir}")
    return asyncio.run(_supervise(supervisor.Supervisor(the_plan, _say)))


def _say(line: str) -> None:
    print(line, flush=True)


async def _supervise(running: Supervisor) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    status = await running.run(stop)
    print("pipeserve run: stopped", flush=True)
    return status
