"""The ``pipeserve`` command line."""

from __future__ import annotations

import argparse
import sys

from pipeserve.pipeline import config, errors


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = argparse.ArgumentParser(prog="pipeserve", description="Serve inference pipelines.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="command")
    check = commands.add_parser("check", help="check a config.yml and print what it resolves to")
    check.add_argument("config", help="path of the config.yml")
    args = parser.parse_args(argv)
    if args.version:
        from pipeserve import __version__

        print(__version__)
        return 0
    if args.command == "check":
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
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
