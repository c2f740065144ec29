"""``pipeserve check CONFIG``: validate a config.yml and print what it resolves to."""

from __future__ import annotations

import argparse
import sys

from pipeserve.pipeline import config, errors

NAME = "check"
HELP = "check a config.yml and print what it resolves to"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="path of the config.yml")


def run(args: argparse.Namespace) -> int:
    try:
        loaded = config.load(args.config)
    except errors.ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{loaded.source}: ok")
    print(f"  http_port {loaded.http_port}, rpc_port {loaded.rpc_port}, worker_num {loaded.worker_num}")
    for op in loaded.ops.values():
        print(
            f"  op {op.name}: concurrency {op.concurrency}, batch_size {op.batch_size}, "
            f"timeout {op.timeout_ms:g} ms, device {op.runtime.device_type.name.lower()} "
            f"{list(op.runtime.devices)}, precision {op.runtime.precision}"
        )
    return 0
