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
    opservice = commands.add_parser("opservice", help="serve one op of a pipeline over gRPC (OpService)")
    opservice.add_argument("--config", required=True, help="path of the pipeline's config.yml")
    opservice.add_argument("--op", required=True, help="name of the op to serve (a key of op: in the config)")
    opservice.add_argument("--port", type=int, default=9000, help="gRPC port (default 9000; 0 picks a free one)")
    opservice.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    opservice.add_argument("--class", dest="op_class", help="module:Class of the op (default: the op's class: key)")
    opservice.add_argument(
        "--grace", type=float, default=20.0, help="seconds calls in flight may take to finish on SIGTERM (default 20)"
    )
    opservice.add_argument(
        "--max-connection-age", type=float, default=300.0,
        help="seconds after which connections are closed so clients re-resolve (default 300)",
    )  # fmt: skip
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
    if args.command == "opservice":
        from pipeserve.opservice import server

        settings = server.Settings(
            host=args.host, port=args.port, grace_s=args.grace, max_connection_age_s=args.max_connection_age
        )
        return server.run(args.config, args.op, settings, args.op_class)
    parser.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
