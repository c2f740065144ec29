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
    overrides = parser.add_argument_group("over the op's section of config.yml")
    overrides.add_argument("--concurrency", type=_positive_int, help="workers of the op (op.<name>.concurrency)")
    overrides.add_argument(
        "--device-type", choices=DEVICE_TYPES, help="local_service_conf.device_type of the op"
    )
    overrides.add_argument("--precision", choices=PRECISIONS, help="local_service_conf.precision of the op")


DEVICE_TYPES = ("cpu", "gpu", "tensorrt", "arm", "xpu")
PRECISIONS = ("fp32", "fp16", "int8", "bf16")


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def op_overrides(args: argparse.Namespace) -> dict[str, object]:
    """The op config keys the command line sets."""
    overrides: dict[str, object] = {}
    if args.concurrency is not None:
        overrides["concurrency"] = args.concurrency
    runtime = {key: value for key, value in (("device_type", args.device_type), ("precision", args.precision)) if value}
    if runtime:
        overrides["local_service_conf"] = runtime
    return overrides


def run(args: argparse.Namespace) -> int:
    from pipeserve.opservice import server

    settings = server.Settings(
        host=args.host, port=args.port, grace_s=args.grace, max_connection_age_s=args.max_connection_age,
        metrics_port=args.metrics_port,
    )  # fmt: skip
    return server.run(args.config, args.op, settings, args.op_class, op_overrides(args))
