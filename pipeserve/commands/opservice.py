"""``pipeserve opservice``: serve one op of a pipeline over gRPC (OpService)."""

from __future__ import annotations

import argparse

NAME = "opservice"
HELP = "serve one op of a pipeline over gRPC (OpService)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="path of the pipeline's config.yml")
    parser.add_argument("--op", required=True, help="name of the op to serve (a key of op: in the config)")
    parser.add_argument("--port", type=int, default=9000, help="gRPC port (default 9000; 0 picks a free one)")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default 0.0.0.0)")
    parser.add_argument("--class", dest="op_class", help="module:Class of the op (default: the op's class: key)")
    parser.add_argument(
        "--grace", type=float, default=20.0, help="seconds calls in flight may take to finish on SIGTERM (default 20)"
    )
    parser.add_argument(
        "--metrics-port", type=int, default=None,
        help="serve Prometheus metrics at http://HOST:PORT/metrics (0 picks a free port; default: no metrics)",
    )  # fmt: skip
    parser.add_argument(
        "--max-connection-age", type=float, default=300.0,
        help="seconds after which connections are closed so clients re-resolve (default 300)",
    )  # fmt: skip


def run(args: argparse.Namespace) -> int:
    from pipeserve.opservice import server

    settings = server.Settings(
        host=args.host, port=args.port, grace_s=args.grace, max_connection_age_s=args.max_connection_age,
        metrics_port=args.metrics_port,
    )  # fmt: skip
    return server.run(args.config, args.op, settings, args.op_class)
